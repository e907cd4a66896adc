#!/usr/bin/env bash
# The serving load test (bounded, loopback only): for the embedded digits model and for MLLA-T
# (random weights) at 224, N clients for M seconds against `serve` with dynamic batching and with
# --max-batch 1, and, as the baseline without a server, `classify` started once per image.
#   bash Benchmarks/serve/run.sh [clients] [seconds] [all|digits|mlla_t]
# Needs a release build (swift build -c release) and the clients' venv from .ci/setup.
set -euo pipefail
cd "$(dirname "$0")/../.."
clients=${1:-4}
seconds=${2:-20}
which=${3:-all}
B=.build/release/mila-infer
PY=${PYTHON:-$HOME/.cache/mila/serve-clients/bin/python}
export POCL_AFFINITY=1
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores; device: ${MILA_DEVICE:-default}; $(date -u +%FT%TZ)"

serve_and_load() {  # label, images, serve args...
    local label=$1 images=$2
    shift 2
    "$B" serve --http-port 18100 --metrics-port 18102 "$@" 2>/tmp/mila-load-serve.log &
    local pid=$!
    local started=$SECONDS
    for _ in $(seq 1 3000); do curl -sf 127.0.0.1:18100/v2/health/ready >/dev/null && break; sleep 0.2; done
    echo "$label: ready after $((SECONDS - started)) s (warm-up)"
    local model
    model=$(curl -s 127.0.0.1:18100/v2/models/x 2>/dev/null | sed -n 's/.*this server has \([^ ]*\) .*/\1/p')
    echo "$label: $("$PY" Benchmarks/serve/load.py --url 127.0.0.1:18100 --model "$model" --images $images --clients "$clients" \
        --seconds "$seconds" --metrics 127.0.0.1:18102 --pid "$pid")"
    kill -TERM "$pid"
    wait "$pid"
}

per_process() {  # label, count, images, classify args...
    local label=$1 count=$2 images=($3)
    shift 3
    local start end
    start=$(date +%s.%N)
    for i in $(seq 0 $((count - 1))); do "$B" classify "${images[$((i % ${#images[@]}))]}" --top 1 "$@" >/dev/null; done
    end=$(date +%s.%N)
    echo "$label: {\"requests\": $count, \"seconds\": $(echo "$end - $start" | bc), \"throughput_per_s\": $(echo "scale=2; $count / ($end - $start)" | bc)}"
}

digits="Examples/digit-3.png Examples/digit-7.jpg Examples/digit-9.png Examples/digit-0.png"
photos="Tests/MilaImageTests/Fixtures/china.jpg Tests/MilaImageTests/Fixtures/china_progressive_exif6.jpg Tests/MilaImageTests/Fixtures/flower.png"
if [ "$which" != mlla_t ]; then
    serve_and_load "digits, dynamic batching (max 8, 2 ms)" "$digits" --model digits --max-batch 8
    serve_and_load "digits, --max-batch 1" "$digits" --model digits --max-batch 1
    per_process "digits, classify once per image" 20 "$digits" --model digits
fi
if [ "$which" != digits ]; then
    serve_and_load "MLLA-T 224, dynamic batching (max 8, 2 ms)" "$photos" --arch mlla_t --max-batch 8
    serve_and_load "MLLA-T 224, --max-batch 1" "$photos" --arch mlla_t --max-batch 1
    per_process "MLLA-T 224, classify once per image" 6 "$photos" --arch mlla_t
fi
