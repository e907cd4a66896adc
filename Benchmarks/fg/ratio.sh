#!/usr/bin/env bash
# MILA-FG-T against MLLA-T in mila, measured back to back in interleaved rounds (the issue-14
# criterion "FG within 1.1x of MLLA-T at every size"; the peers run measures them minutes apart):
#
#   bash Benchmarks/fg/ratio.sh [SIZES] [RUNS] [ROUNDS] [DEVICES]   (default 224,512,1024, 3, 5, pocl,intel)
#
# Each round runs `mila-infer bench` for MLLA-T then MILA-FG-T on each device; prints, per
# device and size, the median over rounds of each model's time (each the median of its runs),
# their ratio, and the median and range of the per-round ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=${1:-224,512,1024}
runs=${2:-3}
rounds=${3:-5}
devices=${4:-pocl,intel}
swift build -c release --product mila-infer >/dev/null
export POCL_AFFINITY=1
work=$(mktemp -d)
for round in $(seq 1 "$rounds"); do
    for device in ${devices//,/ }; do
        for arch in mlla_t mila_fg_t; do
            echo "round $round of $rounds: $arch on $device" >&2
            .build/release/mila-infer bench --arch "$arch" --resolutions "$sizes" --runs "$runs" --device "$device" --format json \
                > "$work/$device-$arch-r$round.json"
        done
    done
done
python3 - "$work" <<'PY'
import json, pathlib, statistics, sys, collections
work = pathlib.Path(sys.argv[1])
times = collections.defaultdict(list)  # (device, arch, size) -> [ms per round]
for path in sorted(work.glob("*.json")):
    device, arch, _ = path.stem.split("-", 2)
    for row in json.loads(path.read_text())["rows"]:
        size = f"{row['width']}x{row['height']}"
        times[(device, arch, size)].append((int(path.stem.split("-r")[-1]), row["ms_median"]))
print("| device | size | MLLA-T ms | MILA-FG-T ms | FG / MLLA | per-round FG / MLLA: median (range) |")
print("|---|---|---|---|---|---|")
for (device, arch, size) in sorted((k for k in times if k[1] == "mlla_t"), key=lambda k: (k[0], int(k[2].split("x")[0]))):
    mlla = dict(times[(device, "mlla_t", size)]); fg = dict(times[(device, "mila_fg_t", size)])
    ratios = [fg[r] / mlla[r] for r in sorted(mlla) if r in fg]
    m, f = statistics.median(mlla.values()), statistics.median(fg.values())
    print(f"| {device} | {size} | {m:.1f} | {f:.1f} | {f / m:.3f}x | {statistics.median(ratios):.3f}x ({min(ratios):.3f}-{max(ratios):.3f}) |")
PY
