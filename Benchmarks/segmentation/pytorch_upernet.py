"""Times the PyTorch reference of MLLA-B + UperNet (Tests/PyTorchReference/upernet.py, eager, float32,
random weights, eval mode) on the decode head's logits, batch 1, for the sizes given; one JSON line per
size: {"size": "HxW", "ms": [...], "ms_median": ...}. Run by Benchmarks/segmentation/run.sh."""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "PyTorchReference"))
from upernet import EncoderDecoder, head_logits, mlla_b_upernet  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="512x512,512x2048")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = EncoderDecoder(**mlla_b_upernet()).eval()
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        x = torch.rand(1, 3, h, w) * 4 - 2
        head_logits(model, x)  # warm-up
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            head_logits(model, x)
            times.append((time.perf_counter() - start) * 1e3)
        print(json.dumps({"size": size, "threads": args.threads, "torch": torch.__version__, "ms": times,
                          "ms_median": statistics.median(times)}), flush=True)


if __name__ == "__main__":
    main()
