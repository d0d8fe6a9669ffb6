#!/usr/bin/env bash
# Runs the libFuzzer targets of Fuzz/ (coverage-guided, on the readers of untrusted input).
#
#   Scripts/fuzz.sh [--debug] SECONDS [TARGET...]
#
# Builds Fuzz/ with -sanitize=fuzzer (release, or debug with --debug: a faster build for short
# runs), then runs each TARGET (default: all) for SECONDS, starting from its seed corpus in
# Fuzz/Corpus/TARGET and growing a working corpus in Fuzz/.build/corpus/TARGET. A crash, a
# timeout (10 s for one input) or more than 3 GB of memory stops the target, writes the input to
# Fuzz/.build/artifacts/, and makes the script exit non-zero. Prints each target's executions.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
configuration=release
if [ "${1:-}" = "--debug" ]; then configuration=debug; shift; fi
seconds="${1:?usage: Scripts/fuzz.sh [--debug] SECONDS [TARGET...]}"
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx gzip tar cifar safetensors model spec onnx)

(cd Fuzz && swift build -c "$configuration" -Xswiftc -enable-testing \
    -Xswiftc -sanitize=fuzzer -Xswiftc -parse-as-library --product BackpropFuzz 2>&1 | tail -3)
binary="Fuzz/.build/$configuration/BackpropFuzz"
mkdir -p Fuzz/.build/artifacts
status=0
for target in "${targets[@]}"; do
    corpus="Fuzz/.build/corpus/$target"
    mkdir -p "$corpus"
    log="Fuzz/.build/fuzz-$target.log"
    if BACKPROP_FUZZ_TARGET="$target" "$binary" "$corpus" "Fuzz/Corpus/$target" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=3072 -max_len=65536 \
        -artifact_prefix="Fuzz/.build/artifacts/$target-" -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
        grep -E "ERROR|Fatal|panic|SUMMARY|Test unit written" "$log" | head -5 || true
    fi
    runs=$(grep -E "stat::number_of_executed_units" "$log" | awk '{print $2}')
    coverage=$(grep -E "^#[0-9]+.*cov:" "$log" | tail -1 | sed -E 's/.*cov: ([0-9]+).*/\1/')
    echo "fuzz $target: $result, ${runs:-?} executions in ${seconds} s, coverage ${coverage:-?} edges (log: $log)"
done
rm -rf /dev/shm/backprop-fuzz-* 2>/dev/null || true
exit $status
