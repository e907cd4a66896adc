#!/usr/bin/env bash
# Fuzzes one parser with libFuzzer under AddressSanitizer, then merges what it found into the
# committed corpus (minimised: only inputs that add coverage are kept).
#
#   Tests/Fuzz/run.sh TARGET [SECONDS]      targets: safetensors zip pickle legacy npy png jpeg config
#
# Builds .build-fuzz/debug/mila-fuzz with `swift build --sanitize=fuzzer --sanitize=address`
# (Swift's own libFuzzer; no Python, nothing downloaded). libjpeg and libpng are Debian's
# uninstrumented builds: the fuzzer sees coverage of our code around them, not inside them. Crashes, leaks, timeouts and
# out-of-memory inputs land in Tests/Fuzz/findings/ (not committed): fix the bug, then move the
# input to Tests/Fuzz/regressions/TARGET/, which CI replays (FuzzReplayTests). The run's log is
# .build-fuzz/logs/TARGET.log; its last lines give executions, coverage and corpus size.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${1:?usage: Tests/Fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-600}
# SwiftPM's --sanitize=fuzzer alone instruments only the executable's own module on a clean build;
# -Xswiftc / -Xcc give every Swift and C target libFuzzer's coverage. (The build-tool plugins'
# helpers fail to link with libFuzzer's main; mila-fuzz does not need them.)
swift build --scratch-path .build-fuzz --product mila-fuzz --sanitize=fuzzer --sanitize=address \
    -Xswiftc -sanitize=fuzzer -Xcc -fsanitize=fuzzer-no-link -Xswiftc -DFUZZING 2>&1 | grep -E "error:|Build" | grep -v "linker command failed" >&2 || true
fuzzer=.build-fuzz/debug/mila-fuzz
corpus=Tests/Fuzz/corpus/$target
work=.build-fuzz/corpus/$target
mkdir -p "$corpus" "$work" Tests/Fuzz/findings .build-fuzz/logs
export MILA_FUZZ_TARGET=$target
# -timeout: one input may take 10 s; -rss_limit_mb / -malloc_limit_mb: 2 GB, a parser must never
# need that for inputs of a few kilobytes.
MILA_FUZZ_TARGET=$target "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -artifact_prefix="Tests/Fuzz/findings/$target-" -print_final_stats=1 "$work" "$corpus" 2>&1 | tee ".build-fuzz/logs/$target.log" | grep -E "^#[0-9]+[[:space:]]+DONE|ERROR|SUMMARY|stat::" || true
merged=$(mktemp -d)
"$fuzzer" -merge=1 "$merged" "$corpus" "$work" > ".build-fuzz/logs/$target.merge.log" 2>&1
rm -rf "$corpus" && mkdir -p "$corpus"
# The minimised set replaces the folder (inputs are named by their SHA-1, as libFuzzer names them).
cp "$merged"/* "$corpus"/ 2>/dev/null || true
rm -rf "$merged"
echo "$target: $(ls "$corpus" | wc -l) inputs in the corpus ($(du -sh "$corpus" | cut -f1))"
