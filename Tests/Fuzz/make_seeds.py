"""Writes the fuzzers' seed inputs, each made by the software that makes such files (run from the
repo root; needs torch, numpy, safetensors, pillow, yacs):

    python Tests/Fuzz/make_seeds.py

Seeds go to Tests/Fuzz/corpus/<target>/seed-*; a fuzzing run (Tests/Fuzz/run.sh) merges what it
finds into the same folders. The seeds are small on purpose (libFuzzer's default input length is
the longest seed's): tiny tensors, 8x8 images.
"""
import argparse
import collections
import io
import json
import os
import pickle
import zipfile

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import save as save_safetensors
from yacs.config import CfgNode as CN

ROOT = os.path.join("Tests", "Fuzz", "corpus")


def write(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


def tiny_state():
    torch.manual_seed(0)
    return collections.OrderedDict([
        ("patch_embed.conv1.conv.weight", torch.randn(2, 3, 3, 3)),
        ("layers.0.blocks.0.attn.qk.weight", torch.randn(4, 2).t()),  # a non-contiguous view
        ("norm.bias", torch.randn(3)),
        ("bn.num_batches_tracked", torch.tensor(7)),
    ])


def config():
    c = CN()
    c.MODEL = CN()
    c.MODEL.MLLA = CN()
    c.MODEL.MLLA.EMBED_DIM = 8
    c.MODEL.MLLA.DEPTHS = [1]
    c.MODEL.MLLA.NUM_HEADS = [1]
    c.MODEL.NUM_CLASSES = 3
    c.DATA = CN({"IMG_SIZE": 32})
    c.freeze()
    return c


def torch_bytes(obj, **kwargs):
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def main():
    state = tiny_state()
    training = {"model": state, "epoch": 3, "max_accuracy": 12.5, "config": config(),
                "args": argparse.Namespace(lr=0.1), "meta": {"CLASSES": ("a", "b"), "PALETTE": [[1, 2, 3]]}}
    shared = torch.arange(6, dtype=torch.float32)
    views = {"a": shared[1:3], "b": shared[2:6].view(2, 2), "c": shared.half(), "d": shared.bfloat16()}

    # zip checkpoints (torch.save) and data.pkl pickles taken out of them.
    for protocol in (2, 3, 4, 5):
        for name, obj in [("training", training), ("state", state), ("views", views),
                          ("ddp", {f"module.{k}": v for k, v in state.items()})]:
            data = torch_bytes(obj, pickle_protocol=protocol)
            write("zip", f"{name}-p{protocol}.pth", data)
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                pkl = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                write("pickle", f"{name}-p{protocol}.pkl", archive.read(pkl))
    # A zip with a comment and a second member, written by Python's zipfile (stored).
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        archive.writestr("archive/version", "3\n")
        archive.comment = b"fuzz seed"
    write("zip", "zipfile-comment.zip", buffer.getvalue())

    # The legacy format.
    for protocol in (2, 4):
        for name, obj in [("training", training), ("state", state), ("views", views)]:
            write("legacy", f"{name}-p{protocol}.pth", torch_bytes(obj, pickle_protocol=protocol, _use_new_zipfile_serialization=False))

    # Plain pickles at every protocol.
    values = collections.OrderedDict(
        i=7, big=2 ** 70, f=1.5, s="h\u00e9\n", b=b"\x00\xff", t=(1, 2), l=[1, [2]], n=None, yes=True,
        st={4}, fs=frozenset({5}), od=collections.OrderedDict(a=1), np64=np.float64(0.25), npi=np.int64(-5),
        size=torch.Size([2, 3]), ns=argparse.Namespace(lr=0.1), cfg=config(), ba=bytearray(b"xy"))
    for protocol in range(6):
        write("pickle", f"values-p{protocol}.pkl", pickle.dumps(values, protocol=protocol))

    # safetensors.
    write("safetensors", "f32.safetensors", save_safetensors({"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
                                                            metadata={"mila.config": json.dumps({"embed_dim": 8, "depths": [1], "num_heads": [1]})}))
    write("safetensors", "mixed.safetensors", save_safetensors({"a": np.ones((2, 2), np.float16), "b": np.zeros(3, np.int64),
                                                               "c": np.ones((1, 1, 2), np.float64), "d": np.zeros(0, np.float32)}))
    from safetensors.torch import save as save_torch
    write("safetensors", "bf16.safetensors", save_torch({"x": torch.ones(3, dtype=torch.bfloat16), "y": torch.zeros(2, 2)}))
    write("safetensors", "empty.safetensors", save_safetensors({}))
    write("safetensors", "metadata.safetensors", save_safetensors({"z": np.ones(1, np.float32)}, metadata={"k": "v", "mila.about": "{}"}))

    # .npy.
    for name, array in [("f4", np.arange(12, dtype=np.float32).reshape(3, 4)), ("scalar", np.float32(1.5)),
                        ("empty", np.zeros((0, 3), np.float32)), ("f8", np.ones(2)), ("fortran", np.asfortranarray(np.ones((2, 3), np.float32))),
                        ("4d", np.ones((1, 3, 2, 2), np.float32))]:
        buffer = io.BytesIO()
        np.save(buffer, array)
        write("npy", name + ".npy", buffer.getvalue())
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ones(3, np.float32), version=(2, 0))
    write("npy", "v2.npy", buffer.getvalue())

    # PNG and JPEG, 8x8, in the modes PIL writes.
    rgb = Image.frombytes("RGB", (8, 8), bytes((i * 7) % 256 for i in range(8 * 8 * 3)))
    for mode in ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"]:
        image = rgb.convert(mode) if mode != "I;16" else rgb.convert("I").point(lambda v: v * 200).convert("I;16")
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        write("png", f"{mode.replace(';', '')}.png", buffer.getvalue())
    buffer = io.BytesIO()
    rgb.save(buffer, "PNG", optimize=True)
    write("png", "optimized.png", buffer.getvalue())
    for name, image, options in [("baseline", rgb, {}), ("progressive", rgb, {"progressive": True}), ("gray", rgb.convert("L"), {}),
                                 ("cmyk", rgb.convert("CMYK"), {}), ("q10", rgb, {"quality": 10}), ("subsampling", rgb, {"subsampling": 2})]:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", **options)
        write("jpeg", name + ".jpg", buffer.getvalue())
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", exif=exif.tobytes())
    write("jpeg", "exif6.jpg", buffer.getvalue())

    # mila.config JSON.
    for name, cfg in [("digits", {"embed_dim": 32, "depths": [1, 1, 1], "num_heads": [1, 2, 4], "num_classes": 10, "image_size": [64, 64],
                                  "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop_fraction": 1, "labels": [str(i) for i in range(10)]}),
                      ("fg", {"embed_dim": 64, "depths": [2, 4, 8, 4], "num_heads": [2, 4, 8, 16], "attention": "forget_gate",
                              "scan": "causal", "normalize": False}),
                      ("minimal", {"embed_dim": 8, "depths": [1], "num_heads": [1]}),
                      ("ratio", {"embed_dim": 16, "depths": [1, 2], "num_heads": [2, 2], "mlp_ratio": 2.5}),
                      ("bad", {"embed_dim": 1.5, "depths": "x"})]:
        write("config", name + ".json", json.dumps(cfg).encode())
    print("wrote", ROOT, {t: len(os.listdir(os.path.join(ROOT, t))) for t in sorted(os.listdir(ROOT))})


if __name__ == "__main__":
    main()
