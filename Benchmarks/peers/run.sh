#!/usr/bin/env bash
# mila against every runtime a user could pick on this machine, in one run, and against the
# machine's limit (README "Performance"):
#
#   bash Benchmarks/peers/run.sh [SIZES] [RUNS] [ROUNDS]   (default 224,512,1024, 5 and 3)
#
# One after the other, on the same machine and thread count (2): MLLA-T (random weights,
# batch 1) in mila on PoCL and on Intel's CPU runtime (`mila-infer bench`), MILA-FG-T in mila,
# the project's PyTorch reference model (Tests/PyTorchReference/mlla.py, eager), the same model
# exported to ONNX and run by ONNX Runtime and OpenVINO, OpenBLAS's SGEMM (numpy) on 1024^3 and
# on the GEMM shapes of `mila-kernel-bench` (MLLA-T at 224 and 1024, the UperNet head), and the
# kernel bench's convolution and copy figures. Then one table (Benchmarks/peers/report.py):
# the floor is graph GFLOP / the SGEMM rate (OpenBLAS's best of the rates measured), and every
# runtime's ratio to the floor and to mila.
#
# The peers are pip packages in a virtual environment of their own (MILA_PEERS_DIR, default
# ~/.cache/mila/peers), installed on first use; nothing here is needed to build or test mila.
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for the SGEMM step only, so OpenBLAS picks its
# own kernel for this CPU. Writes Benchmarks/results/peers.{md,svg,json} (OUT=DIR to write
# elsewhere) and prints the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=${1:-224,512,1024}
runs=${2:-5}
rounds=${3:-3}  # mila's runs repeated in interleaved rounds; the table takes the median of the rounds
results=${OUT:-Benchmarks/results}
peers=${MILA_PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mila/peers}
stamp="$peers/.installed-torch-2.15.0-ort-1.32.0-ov-2026.4.1-v1"
if [ ! -f "$stamp" ]; then
    echo "installing the peers (PyTorch, ONNX, ONNX Runtime, OpenVINO) into $peers" >&2
    rm -rf "$peers"
    "${PYTHON:-python3}" -m venv "$peers"
    "$peers/bin/pip" install -q --disable-pip-version-check torch==2.15.0 onnx==1.23.2 onnxruntime==1.32.0 \
        openvino==2026.4.1 'numpy<3' threadpoolctl
    touch "$stamp"
fi
python="$peers/bin/python"
work=$(mktemp -d)
mkdir -p "$results"
swift build -c release --product mila-infer >/dev/null
swift build -c release --product mila-kernel-bench >/dev/null
export POCL_AFFINITY=1
cc -O3 -march=native -pthread Benchmarks/peak/fma_peak.c -o "$work/fma_peak"
{
    echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1) (family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) cores; $(date -u +%F); commit $(git rev-parse --short HEAD)"
    echo "fma_peak at the start (threads, GFLOP/s): $("$work/fma_peak" 2)"
} > "$work/machine.txt"
cat "$work/machine.txt" >&2

bench() {  # name arch device round
    echo "mila: $2 on $3, round $4 of $rounds" >&2
    .build/release/mila-infer bench --arch "$2" --resolutions "$sizes" --runs "$runs" --device "$3" --format json > "$work/$1-r$4.json"
}
intel=$(.build/release/mila-infer devices 2>/dev/null | grep -qi intel && echo yes || true)
batched() {  # name device round: MLLA-T at 224 in batches of 8 (images/s against batch 1)
    echo "mila: mlla_t batch 8 on $2, round $3 of $rounds" >&2
    .build/release/mila-infer bench --arch mlla_t --resolutions 224 --runs "$runs" --device "$2" --batch 8 --format json > "$work/$1-r$3.json"
}
for round in $(seq 1 "$rounds"); do
    bench mila-pocl mlla_t pocl "$round"
    bench mila-fg-pocl mila_fg_t pocl "$round"
    batched mila-b8-pocl pocl "$round"
    if [ -n "$intel" ]; then
        bench mila-intel mlla_t intel "$round"
        bench mila-fg-intel mila_fg_t intel "$round"
        batched mila-b8-intel intel "$round"
    fi
done
echo "mila-kernel-bench: GEMM, convolutions, copy" >&2
.build/release/mila-kernel-bench --resolution all --runs "$runs" --only gemm --variant register > "$work/gemm.log"
.build/release/mila-kernel-bench --resolution 224 --runs 3 --only head --variant igemm,gemm_reg > "$work/head.log"
.build/release/mila-kernel-bench --resolution 224 --runs "$runs" --only square > "$work/square.log"
.build/release/mila-kernel-bench --resolution all --runs "$runs" --only conv3x3 --variant cpu > "$work/conv.log"
.build/release/mila-kernel-bench --resolution all --runs "$runs" --only dwconv3x3 --variant cpu,copy > "$work/dwconv.log"
cat "$work/gemm.log" "$work/head.log" "$work/square.log" > "$work/gemm-all.log"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$python" Benchmarks/peers/peers.py --sizes "$sizes" --runs "$runs" --threads 2 \
    --gemm-log "$work/gemm-all.log" > "$work/peers.json"
# The VM's FMA ceiling again: when it moved during the run (neighbours, throttling), the
# ratios between steps measured minutes apart move with it.
echo "fma_peak at the end: $("$work/fma_peak" 2)" >> "$work/machine.txt"
"$python" Benchmarks/peers/report.py "$work" "$results"
