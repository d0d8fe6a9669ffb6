#!/usr/bin/env bash
# Training img/s of two builds side by side: best of three alternating rounds per row.
#
#   git worktree add ../baseline <old-commit> && (cd ../baseline && swift build -c release --product backprop)
#   swift build -c release --product backprop
#   Scripts/bench_against.sh ../baseline/.build/release/backprop .build/release/backprop
set -euo pipefail
old=${1:?usage: bench_against.sh OLD_BACKPROP NEW_BACKPROP}
new=${2:?usage: bench_against.sh OLD_BACKPROP NEW_BACKPROP}
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in 1 2 3; do
  for which in old new; do
    binary=$([ "$which" = old ] && echo "$old" || echo "$new")
    "$binary" bench --training-only --no-gemm --seconds 3 --batch-sizes 16,128 | grep " train " \
      | awk -v w="$which" '{print w, $1, $3, $5}' >> "$results"
  done
done
python3 - "$results" <<'PY'
import collections, sys
best = collections.defaultdict(float)
for line in open(sys.argv[1]):
    which, preset, batch, rate = line.split()
    best[(which, preset, batch)] = max(best[(which, preset, batch)], float(rate))
print(f"{'net':18s} {'batch':>5s} {'old img/s':>10s} {'new img/s':>10s} {'new/old':>8s}")
for (_, preset, batch) in sorted(k for k in best if k[0] == "old"):
    o, n = best[("old", preset, batch)], best[("new", preset, batch)]
    print(f"{preset:18s} {batch:>5s} {o:10.0f} {n:10.0f} {n / o:8.3f}")
PY
