"""The stock Triton HTTP client (tritonclient[http], its defaults) against `mila-infer serve`.

Usage: python triton_compliance.py URL MODEL IMAGE [IMAGE...]

The server must serve the embedded `digits` classifier (10 classes). Checks metadata, health,
binary and JSON inference on pixel_values and on encoded images, the classification extension,
batches, and the errors a client sees. Prints one line per check and exits non-zero on the
first failure. Installed by .ci/setup into a virtual environment; run by CLITests.
"""
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

url, model, images = sys.argv[1], sys.argv[2], sys.argv[3:]
client = httpclient.InferenceServerClient(url=url)
checks = 0


def check(condition, what):
    global checks
    if not condition:
        print(f"FAIL: {what}")
        sys.exit(1)
    checks += 1
    print(f"ok: {what}")


check(client.is_server_live(), "server live")
check(client.is_server_ready(), "server ready")
check(client.is_model_ready(model), "model ready")
check(not client.is_model_ready("no-such-model"), "unknown model is not ready")

meta = client.get_server_metadata()
check(meta["name"] == "mila" and {"binary_tensor_data", "classification"} <= set(meta["extensions"]),
      f"server metadata {meta}")
mm = client.get_model_metadata(model)
inputs = {t["name"]: t for t in mm["inputs"]}
outputs = {t["name"]: t for t in mm["outputs"]}
check(inputs["pixel_values"]["datatype"] == "FP32" and inputs["pixel_values"]["shape"] == [-1, 3, -1, -1],
      "metadata: pixel_values FP32 [-1,3,-1,-1]")
check(inputs["image"]["datatype"] == "BYTES" and outputs["logits"]["shape"] == [-1, 10], "metadata: image BYTES, logits [-1,10]")

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)


def infer_pixels(binary_in, binary_out, batch=x, outputs=None):
    inp = httpclient.InferInput("pixel_values", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch, binary_data=binary_in)
    outs = outputs or [httpclient.InferRequestedOutput("logits", binary_data=binary_out)]
    return client.infer(model, [inp], outputs=outs, request_id="req-7")


binary = infer_pixels(True, True)
logits = binary.as_numpy("logits")
check(logits.shape == (2, 10) and logits.dtype == np.float32 and np.isfinite(logits).all(), "binary in, binary out: logits (2, 10)")
check(binary.get_response()["id"] == "req-7", "the request id comes back")
as_json = infer_pixels(False, False).as_numpy("logits")
check(np.allclose(as_json, logits, rtol=1e-6, atol=1e-6), "JSON in, JSON out: the same logits")
mixed = infer_pixels(True, False).as_numpy("logits")
check(np.array_equal(mixed, logits), "binary in, JSON out: the same logits")

# Defaults of the stock client: no outputs named -> every output, binary.
inp = httpclient.InferInput("pixel_values", list(x.shape), "FP32")
inp.set_data_from_numpy(x)
everything = client.infer(model, [inp])
probabilities = everything.as_numpy("probabilities")
check(probabilities is not None and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5), "default outputs: probabilities sum to 1")

# Batch rows are independent: row 1 alone equals row 1 of the batch.
alone = infer_pixels(True, True, batch=x[1:2]).as_numpy("logits")
check(np.allclose(alone[0], logits[1], rtol=1e-5, atol=1e-5), "row 1 alone equals row 1 of the batch of 2")

# Classification extension, binary and JSON.
for binary_out in (True, False):
    cls = infer_pixels(True, binary_out, outputs=[httpclient.InferRequestedOutput("logits", binary_data=binary_out, class_count=3)])
    top = cls.as_numpy("logits")
    check(top.shape == (2, 3), f"classification: shape (2, 3) (binary={binary_out})")
    first = top[0][0].decode() if isinstance(top[0][0], bytes) else str(top[0][0])
    value, index, label = first.split(":")
    check(int(index) == int(np.argmax(logits[0])) and abs(float(value) - logits[0].max()) < 1e-4,
          f"classification: '{first}' is the arg max (binary={binary_out})")

# Encoded images (BYTES), decoded and preprocessed by the server.
if images:
    data = np.array([open(p, "rb").read() for p in images], dtype=np.object_)
    inp = httpclient.InferInput("image", [len(images)], "BYTES")
    inp.set_data_from_numpy(data)
    result = client.infer(model, [inp], outputs=[httpclient.InferRequestedOutput("probabilities", class_count=1)])
    labels = [e.decode().split(":")[2] for e in result.as_numpy("probabilities")[:, 0]]
    expected = [p.split("digit-")[1][0] for p in images]
    check(labels == expected, f"images classified {labels}, file names say {expected}")


def expect_error(status, fragment, call):
    try:
        call()
    except InferenceServerException as e:
        check(str(e.status()) == str(status) and fragment in e.message(), f"error {status}: {e.message()}")
        return
    check(False, f"expected an error {status} containing '{fragment}'")


expect_error(404, "unknown model", lambda: client.infer("no-such-model", [httpclient.InferInput("pixel_values", [1, 3, 8, 8], "FP32")
                                                                           .set_data_from_numpy(x[:1, :, :8, :8])]))
bad = httpclient.InferInput("pixel_values", [1, 4, 8, 8], "FP32")
bad.set_data_from_numpy(np.zeros((1, 4, 8, 8), np.float32))
expect_error(400, "[N, 3, H, W]", lambda: client.infer(model, [bad]))
wrong_type = httpclient.InferInput("pixel_values", [1, 3, 8, 8], "FP64")
wrong_type.set_data_from_numpy(np.zeros((1, 3, 8, 8), np.float64))
expect_error(400, "must be FP32", lambda: client.infer(model, [wrong_type]))
expect_error(400, "unknown output", lambda: infer_pixels(True, True, outputs=[httpclient.InferRequestedOutput("nope")]))
garbage = httpclient.InferInput("image", [1], "BYTES")
garbage.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
expect_error(400, "not a JPEG or PNG", lambda: client.infer(model, [garbage]))
too_many = httpclient.InferInput("pixel_values", [9, 3, 8, 8], "FP32")
too_many.set_data_from_numpy(np.zeros((9, 3, 8, 8), np.float32))
expect_error(400, "images per request", lambda: client.infer(model, [too_many]))

print(f"{checks} passed, 0 failed")
