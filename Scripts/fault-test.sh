#!/usr/bin/env bash
# Fault injection for `backprop train`: kills it at varied points (SIGKILL, often inside a save,
# and SIGTERM), fills the disk under it (a small tmpfs, where `mount` is allowed), and checks
# every resulting run folder:
#   - no partial model: each *.safetensors present loads (`backprop summary FILE`),
#   - the folder is usable or cleanly refused: `train --resume` either continues to the end or
#     fails with one `Error:` line and a normal exit (never a signal, never a hang),
#   - no temporary file blocks it.
#
#   Scripts/fault-test.sh [KILLS]     (default 12 kills; needs a release build and ../shared/data)
set -uo pipefail
cd "$(dirname "$0")/.."
backprop="${BACKPROP_CLI:-.build/release/backprop}"
data="${BACKPROP_TEST_DATA:-../shared/data}"
kills="${1:-12}"
[ -x "$backprop" ] || { echo "no $backprop; build with: swift build -c release" >&2; exit 2; }
work=$(mktemp -d)
trap 'umount "$work/small" 2>/dev/null; rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# A short run that saves often: a checkpoint every 2 iterations (each a full save).
train=(train mnist --iterations 60 --train-size 2000 --validation-size 200 --validation-interval 10
       --checkpoint-interval 2 --save-best --no-test --data-dir "$data")

# Checks one folder after a kill: every model file loads; resume ends cleanly one way or the other.
check_folder() {
    local run=$1 label=$2 file
    for file in "$run"/model.safetensors "$run"/best.safetensors; do
        [ -e "$file" ] || continue
        if ! "$backprop" summary "$file" >/dev/null 2>"$work/err"; then
            fail "$label: $(basename "$file") does not load: $(head -1 "$work/err")"
        fi
    done
    ls -a "$run" | grep -q '\.tmp$' && echo "  $label: a save was killed midway (a temporary file is left)"
    if [ -f "$run/experiment.json" ]; then
        timeout 300 "$backprop" train --resume "$run" --data-dir "$data" --no-test >"$work/out" 2>"$work/err"
        local status=$?
        if [ $status -eq 0 ]; then
            "$backprop" summary "$run/model.safetensors" >/dev/null 2>&1 || fail "$label: resumed, but the model does not load"
            ls -a "$run" | grep -q '\.tmp$' && fail "$label: a temporary file survived the resumed run"
            echo "  $label: resumed to the end"
        elif [ $status -ge 124 ] || [ "$(wc -l <"$work/err")" -ne 1 ] || ! grep -q '^Error: ' "$work/err"; then
            fail "$label: resume ended with status $status: $(head -3 "$work/err")"
        else
            echo "  $label: resume refused cleanly: $(cat "$work/err")"
        fi
    else
        # Killed before the folder had its experiment: a new run may reuse it, or it is refused cleanly.
        "$backprop" "${train[@]}" --iterations 2 --out "$run" >/dev/null 2>"$work/err" \
            || grep -q '^Error: ' "$work/err" || fail "$label: reusing the folder: $(head -3 "$work/err")"
        echo "  $label: no experiment.json yet; reuse: $(head -1 "$work/err" | cut -c1-100)"
    fi
}

echo "SIGKILL at $kills points:"
for i in $(seq 1 "$kills"); do
    run="$work/kill-$i"
    "$backprop" "${train[@]}" --out "$run" >/dev/null 2>&1 &
    pid=$!
    # Kill 1 lands while the data loads (before the folder exists); the others from the moment
    # the folder is made to late in the run, in 0.3 s steps (saves every 2 iterations).
    if [ "$i" -gt 1 ]; then
        while kill -0 $pid 2>/dev/null && [ ! -e "$run/experiment.json" ]; do sleep 0.02; done
        sleep "$(awk -v i="$i" 'BEGIN { printf "%.2f", 0.3 * (i - 2) }')"
    fi
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    [ -d "$run" ] || { echo "  kill $i: killed before the folder was made"; continue; }
    check_folder "$run" "kill $i"
done

echo "SIGTERM (status 130, model and checkpoint saved):"
run="$work/term"
"$backprop" "${train[@]}" --out "$run" >/dev/null 2>"$work/term-err" &
pid=$!
# Once training runs (SIGTERM while the data loads ends the process before it has a folder).
while kill -0 $pid 2>/dev/null && [ ! -s "$run/metrics.jsonl" ]; do sleep 0.02; done
sleep 0.5
kill -TERM $pid
wait $pid
status=$?
if [ $status -eq 130 ]; then check_folder "$run" "SIGTERM"
elif [ $status -eq 0 ]; then echo "  SIGTERM: the run had already finished"
else fail "SIGTERM: status $status: $(cat "$work/term-err")"; fi

echo "Full disk (a 400 KB tmpfs):"
mkdir -p "$work/small"
if mount -t tmpfs -o size=400k tmpfs "$work/small" 2>/dev/null; then
    run="$work/small/run"
    "$backprop" "${train[@]}" --iterations 400 --out "$run" >"$work/out" 2>"$work/err"
    status=$?
    echo "  status $status: $(cat "$work/err")"
    [ $status -ne 0 ] || fail "full disk: train exited 0"
    { [ "$(wc -l <"$work/err")" -eq 1 ] && grep -q '^Error: ' "$work/err"; } || fail "full disk: not one Error: line"
    grep -q 'NSCocoaErrorDomain\|Error Domain=' "$work/err" && fail "full disk: a raw Foundation error"
    for file in "$run"/model.safetensors "$run"/best.safetensors; do
        [ -e "$file" ] || continue
        "$backprop" summary "$file" >/dev/null 2>&1 || fail "full disk: $(basename "$file") does not load"
    done
    if [ -e "$run/checkpoint.safetensors" ]; then
        # Room again (a bigger tmpfs is not needed: drop best.safetensors) and resume.
        rm -f "$run/best.safetensors"
        "$backprop" train --resume "$run" --data-dir "$data" --no-test >/dev/null 2>"$work/err"
        status=$?
        if [ $status -eq 0 ]; then echo "  resumed after freeing space: finished"
        elif [ "$(wc -l <"$work/err")" -eq 1 ] && grep -q '^Error: ' "$work/err"; then echo "  resume refused cleanly: $(cat "$work/err")"
        else fail "full disk: resume ended with status $status: $(head -3 "$work/err")"; fi
    fi
    echo "  left: $(ls -a "$run" | tr '\n' ' ')"
    [ -s "$run/metrics.jsonl" ] && echo "  metrics.jsonl: $(wc -l <"$run/metrics.jsonl") lines kept"
    umount "$work/small"
else
    echo "  skipped: mount -t tmpfs is not allowed here"
fi

if [ $failures -eq 0 ]; then echo "fault test: all folders usable or cleanly refused"; else echo "fault test: $failures failures"; exit 1; fi
