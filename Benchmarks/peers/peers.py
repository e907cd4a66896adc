"""The peers of Benchmarks/peers/run.sh: times the project's PyTorch reference MLLA
(Tests/PyTorchReference/mlla.py, eager, float32, random weights, eval mode), the same model
exported to ONNX and run by ONNX Runtime and by OpenVINO (CPU plugin, f32 inference precision,
so no runtime silently drops to bf16), and OpenBLAS's SGEMM through numpy on 1024^3 and on the
GEMM shapes that `mila-kernel-bench` printed (its per-shape lines, read from --gemm-log).

Prints one JSON object: {"runtimes": {name: {size: {"ms": [...], "ms_median": m}}},
"sgemm": {"1024^3 OpenBLAS": GFLOP/s, "<set>": {"gflops": aggregate, "shapes": [[M, K, N, ms], ...]}},
"versions": {...}}. Every peer runs with the same thread count; one warm-up run before timing.
"""
import argparse
import copy
import json
import os
import re
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "PyTorchReference"))
from mlla import MLLA  # noqa: E402


class Logits(torch.nn.Module):
    """MLLA's logits alone (its forward also returns the stage outputs)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        return self.model(image)[0]


def timed(run, runs):
    run()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return {"ms": times, "ms_median": statistics.median(times)}


def rel_l2(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))


def sgemm_ms(m, k, n, runs=7):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    np.matmul(a, b, out=c)
    reps = max(1, int(2e8 / (2 * m * k * n)))  # at least ~1 ms of work per sample
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b, out=c)
        samples.append((time.perf_counter() - start) / reps * 1e3)
    return statistics.median(samples)


def gemm_sets(log):
    """Per-shape GEMM lines of mila-kernel-bench, grouped by section: {set: [(M, K, N, mila ms)]}."""
    sets, current = {}, None
    for line in open(log):
        header = re.match(r"== (.*) ==", line)
        if header:
            current = header.group(1)
            continue
        row = re.search(r"M=(\d+) K=(\d+) N=(\d+)\s+(register|gemm_reg)\s+([\d.]+)", line)
        if row and current:
            family = "UperNet head" if line.startswith("head") else "1024^3" if line.startswith("square") else "MLLA-T"
            size = re.search(r"at (\d+x\d+)", current)
            name = f"{family} {size.group(1) if size and family == 'MLLA-T' else ''}".strip()
            sets.setdefault(name, []).append(tuple(int(row.group(i)) for i in (1, 2, 3)) + (float(row.group(5)),))
    return sets


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="224,512,1024")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gemm-log", help="mila-kernel-bench output whose GEMM shapes OpenBLAS runs too")
    parser.add_argument("--skip", default="", help="comma-separated peers to leave out: torch,onnxruntime,openvino")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Logits(MLLA().eval())
    result = {"runtimes": {}, "sgemm": {}, "versions": {"torch": torch.__version__, "numpy": np.__version__}}
    openblas = [i for i in np.show_config(mode="dicts")["Build Dependencies"].values() if isinstance(i, dict)]
    result["versions"]["blas"] = next((f"{i.get('name')} {i.get('version')}" for i in openblas if i.get("name")), "unknown")
    try:
        from threadpoolctl import threadpool_info
        result["versions"]["blas_core"] = ", ".join(f"{i.get('internal_api')} {i.get('architecture')}" for i in threadpool_info())
    except ImportError:
        pass

    ort = ov = None
    if "onnxruntime" not in skip:
        import onnxruntime as ort
        result["versions"]["onnxruntime"] = ort.__version__
    if "openvino" not in skip:
        import openvino as ov
        result["versions"]["openvino"] = ov.__version__
        core = ov.Core()

    folder = tempfile.mkdtemp(prefix="mila-peers-")
    for size in (int(s) for s in args.sizes.split(",")):
        label = f"{size}x{size}"
        x = torch.rand(1, 3, size, size) * 4 - 2
        print(f"peers: {label}", file=sys.stderr)
        if "torch" not in skip:
            with torch.inference_mode():
                result["runtimes"].setdefault("PyTorch eager", {})[label] = timed(lambda: model(x), args.runs)
        if ort is None and ov is None:
            continue
        path = os.path.join(folder, f"mlla_t_{size}.onnx")
        with torch.inference_mode():
            expected = model(x).numpy()
        # The exporter runs on a copy: after exporting, the exported module's own logits had
        # changed (the ONNX graph matched the model as it was before the export, to 4e-7), so
        # the PyTorch timings of later sizes would not be of the same model. Checked below.
        with torch.no_grad():
            torch.onnx.export(copy.deepcopy(model), (x,), path, input_names=["image"], output_names=["logits"],
                              opset_version=17, dynamo=False)
        feed = x.numpy()
        agreement = result.setdefault("logits_rel_l2_to_torch", {})
        if ort is not None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            result["runtimes"].setdefault("ONNX Runtime", {})[label] = timed(lambda: session.run(None, {"image": feed}), args.runs)
            agreement.setdefault("ONNX Runtime", {})[label] = rel_l2(session.run(None, {"image": feed})[0], expected)
        if ov is not None:
            compiled = core.compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY",
                                                        "INFERENCE_PRECISION_HINT": "f32"})
            request = compiled.create_infer_request()
            result["runtimes"].setdefault("OpenVINO", {})[label] = timed(lambda: request.infer({"image": feed}), args.runs)
            agreement.setdefault("OpenVINO", {})[label] = rel_l2(request.infer({"image": feed})[0], expected)

    print("peers: SGEMM", file=sys.stderr)
    # OpenBLAS alone on 1024^3; with the kernel bench's square case in the log, the set
    # "1024^3" below has both.
    result["sgemm"]["1024^3 OpenBLAS"] = 2 * 1024 ** 3 / sgemm_ms(1024, 1024, 1024) / 1e6
    if args.gemm_log:
        for name, shapes in gemm_sets(args.gemm_log).items():
            rows = [(m, k, n, mila, sgemm_ms(m, k, n)) for m, k, n, mila in shapes]
            flops = sum(2 * m * k * n for m, k, n, _, _ in rows)
            result["sgemm"][name] = {
                "openblas_gflops": flops / sum(r[4] for r in rows) / 1e6,
                "mila_gflops": flops / sum(r[3] for r in rows) / 1e6,
                "shapes": [list(r) for r in rows],
            }
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
