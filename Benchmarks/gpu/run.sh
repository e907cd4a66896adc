#!/usr/bin/env bash
# The run on a lent GPU machine (../shared/notes/gpu-device.md): from the repository root there,
# with .build/gpu-bundle.tar.xz carried (made here by Benchmarks/gpu/bundle.sh; unpacked to /tmp). Each step has its own
# time limit so one slow step cannot use up the lease; a failing step is logged and the rest go
# on. Writes under $OUT (default ./gpu-out), few files as the tool allows:
#   devices.txt   nvidia-smi, glibc, `mila-infer devices`
#   check.txt     `check` (GPU against the CPU reference, op by op) at 224 and 198x150, and at 224
#                 with fp16 weights (against the half-rounded and the fp32 reference)
#   kernels.txt   mila-kernel-bench at 224 (every kernel and variant, checked against the reference)
#   sweep.csv     whole-model bench, MLLA-T, 224..2048 at batch 1 and 224..1024 at batch 32,
#                 fp32 and fp16 weights (the precision column)
#   run.log       what ran, how long each step took, exit statuses
#
# Rehearse it here with MILA_GPU_REHEARSAL=1 (small sizes, longer limits) against Intel's CPU
# runtime (MILA_DEVICE=intel: it has cl_khr_fp16; on PoCL the fp16 steps exit 1 with the refusal).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
log="$out/run.log"
bundle=$PWD/.build/gpu-bundle
if [ -f .build/gpu-bundle.tar.xz ]; then
    bundle=/tmp/mila-gpu/gpu-bundle
    rm -rf /tmp/mila-gpu && mkdir -p /tmp/mila-gpu
    tar -C /tmp/mila-gpu -xJf .build/gpu-bundle.tar.xz 2>/dev/null ||
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' .build/gpu-bundle.tar.xz /tmp/mila-gpu
fi
export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MILA_CACHE_DIR=${MILA_CACHE_DIR:-/tmp/mila-gpu-cache}
rehearsal=${MILA_GPU_REHEARSAL:-0}
# Limits per step: the whole script must end inside one device command (600 s) and the lease;
# worst case 5 x 45 + 90 + 2 x 75 + 2 x 60 = 585 s.
if [ "$rehearsal" = 1 ]; then
    sizes1=224,320; sizes32=224; batch_big=4; check_sizes="64x64 66x50"; check_limit=300; kernel_limit=300; sweep_limit=300; sweep16_limit=300
    kernel_only=(--only gemm)
else
    sizes1=224,384,512,768,1024,1536,2048; sizes32=224,384,512,768,1024; batch_big=32; check_sizes="224x224 198x150"
    check_limit=45; kernel_limit=90; sweep_limit=75; sweep16_limit=60
    kernel_only=()
fi

step() {  # name seconds command...: run with a limit, log duration and status
    local name=$1 seconds=$2 start status
    shift 2
    start=$(date +%s)
    timeout "$seconds" "$@"
    status=$?
    echo "$name: exit $status after $(( $(date +%s) - start )) s (limit $seconds s)" >> "$log"
    return 0
}

echo "mila GPU run, $(date -u +%FT%TZ), bundle $(tail -1 "$bundle/BUILT" 2>/dev/null), rehearsal $rehearsal" > "$log"
[ -x "$bundle/mila-infer" ] || { echo "no bundle at $bundle: run Benchmarks/gpu/bundle.sh and carry .build/gpu-bundle.tar.xz" >> "$log"; exit 1; }

# NVIDIA's OpenCL driver: used through the vendors file that names it, or one written here.
if ! grep -qsi nvidia /etc/OpenCL/vendors/*.icd; then
    nvidia=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1/ {print $NF; exit}')
    [ -n "$nvidia" ] || nvidia=$(find /usr /lib /opt -name 'libnvidia-opencl.so.1*' 2>/dev/null | head -1)
    if [ -n "$nvidia" ]; then
        vendors=$(mktemp -d)
        echo "$nvidia" > "$vendors/nvidia.icd"
        export OCL_ICD_VENDORS=$vendors
        echo "wrote $vendors/nvidia.icd -> $nvidia" >> "$log"
    else
        echo "no libnvidia-opencl.so.1 found; running on whatever OpenCL device is here" >> "$log"
    fi
fi

B="$bundle/mila-infer"
{
    nvidia-smi 2>&1 || echo "(no nvidia-smi)"
    echo "glibc: $(ldd --version 2>&1 | head -1)"
    echo "bundle built with: $(head -1 "$bundle/BUILT" 2>/dev/null)"
    "$B" devices
} > "$out/devices.txt" 2>&1
echo "devices: exit $? (see devices.txt)" >> "$log"

: > "$out/check.txt"
for size in $check_sizes; do
    for variant in gpu cpu; do
        echo "== check --arch mlla_t --size $size, kernel variant $variant" >> "$out/check.txt"
        MILA_KERNEL_VARIANT=$variant step "check $size $variant" "$check_limit" "$B" check --arch mlla_t --size "$size" >> "$out/check.txt" 2>&1
    done
done
first_size=${check_sizes%% *}
echo "== check --arch mlla_t --size $first_size --precision fp16, default kernel variant" >> "$out/check.txt"
step "check $first_size fp16" "$check_limit" "$B" check --arch mlla_t --size "$first_size" --precision fp16 >> "$out/check.txt" 2>&1

step "kernel bench" "$kernel_limit" "$bundle/mila-kernel-bench" --resolution 224 --runs 5 "${kernel_only[@]}" > "$out/kernels.txt" 2>&1

: > "$out/sweep.csv"
step "sweep batch 1" "$sweep_limit" "$B" bench --arch mlla_t --resolutions "$sizes1" --batch 1 --runs 5 --format csv >> "$out/sweep.csv" 2>>"$log"
step "sweep batch $batch_big" "$sweep_limit" "$B" bench --arch mlla_t --resolutions "$sizes32" --batch "$batch_big" --runs 3 --format csv >> "$out/sweep.csv" 2>>"$log"
step "sweep batch 1 fp16" "$sweep16_limit" "$B" bench --arch mlla_t --resolutions "$sizes1" --batch 1 --runs 5 --precision fp16 --format csv >> "$out/sweep.csv" 2>>"$log"
step "sweep batch $batch_big fp16" "$sweep16_limit" "$B" bench --arch mlla_t --resolutions "$sizes32" --batch "$batch_big" --runs 3 --precision fp16 --format csv >> "$out/sweep.csv" 2>>"$log"
# One CSV header for the four sweeps.
awk 'NR == 1 || !/^backend,/' "$out/sweep.csv" > "$out/sweep.tmp" && mv "$out/sweep.tmp" "$out/sweep.csv"
echo "done $(date -u +%FT%TZ)" >> "$log"
