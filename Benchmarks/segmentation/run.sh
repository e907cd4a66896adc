#!/usr/bin/env bash
# The whole MLLA-B + UperNet (random weights, batch 1, decode-head logits) in mila and in the
# PyTorch reference (eager, float32, 2 threads) in one run, then one table of both:
#
#   bash Benchmarks/segmentation/run.sh [SIZES] [RUNS]     (default 512x512,512x2048 and 3)
#
# Needs a Python with torch (PYTHON=..., default python3); mila's figures come from
# `mila-infer bench` (release build), PyTorch's from Benchmarks/segmentation/pytorch_upernet.py.
# Both run one after the other on the same machine; POCL_AFFINITY=1 pins PoCL's threads. The
# machine's float32 FMA ceiling (Benchmarks/peak/fma_peak.c, 2 threads) gives each size's floor:
# graph GFLOP / peak GFLOP/s, the time no implementation can beat.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=${1:-512x512,512x2048}
runs=${2:-3}
python=${PYTHON:-python3}
out=$(mktemp -d)
swift build -c release --product mila-infer >/dev/null
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; $(date -u +%F)"
cc -O3 -march=native -pthread Benchmarks/peak/fma_peak.c -o "$out/fma_peak"
peak=$("$out/fma_peak" 2 | cut -d' ' -f2)
POCL_AFFINITY=1 .build/release/mila-infer bench --arch mlla_b_upernet --resolutions "$sizes" --runs "$runs" --format json > "$out/mila.json"
"$python" Benchmarks/segmentation/pytorch_upernet.py --sizes "$sizes" --runs "$runs" --threads 2 > "$out/torch.jsonl"
"$python" - "$out/mila.json" "$out/torch.jsonl" "$peak" <<'PY'
import json, sys
mila = json.load(open(sys.argv[1]))
peak = float(sys.argv[3])
rows = {f"{r['height']}x{r['width']}": r for r in mila["rows"]}
print(f"device: {mila['device']} (driver {mila['driver']}), mila {mila['engine']}")
print(f"FMA peak (2 threads): {peak:.1f} GFLOP/s; floor = GFLOP / peak")
print(f"{'size':<10} {'mila ms':>10} {'PyTorch ms':>11} {'mila/PyTorch':>13} {'GFLOP':>8} {'mila GFLOP/s':>13} "
      f"{'torch GFLOP/s':>14} {'floor ms':>9} {'mila/floor':>11} {'peak MiB':>9}")
for line in open(sys.argv[2]):
    t = json.loads(line)
    r = rows.get(t["size"], {})
    ms = r.get("ms_median")
    gflop = r.get("gflops_per_s", 0) * ms / 1e3 if ms else float("nan")
    ratio = ms / t["ms_median"] if ms else float("nan")
    floor = gflop / peak * 1e3
    print(f"{t['size']:<10} {ms or float('nan'):>10.0f} {t['ms_median']:>11.0f} {ratio:>13.2f} {gflop:>8.0f} "
          f"{r.get('gflops_per_s', float('nan')):>13.1f} {gflop / t['ms_median'] * 1e3:>14.1f} {floor:>9.0f} "
          f"{(ms or float('nan')) / floor:>11.2f} {r.get('peak_mem_mb', float('nan')):>9.1f}")
PY
