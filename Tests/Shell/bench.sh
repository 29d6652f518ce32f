#!/usr/bin/env bash
# The benchmarks' own logic on small or recorded inputs (their timings are BENCHMARKS.md's, never a test's):
# bench scale's model against the committed cluster-box runs, and bench convert end to end on a small CSV.
# shellcheck source=Tests/Shell/lib.sh
source "$(dirname "$0")/lib.sh"

# Issue 15's acceptance from the recorded runs: the model within 15% of every measured point at p = 2.
for runs in "$ROOT"/Benchmarks/scale-*-runs.jsonl; do
  out=$("$SERTRAIN" bench scale --analyse-only --results "$runs" --svg "$WORK/scale.svg")
  errors=$(awk '/(block|MiB) / { print $NF }' <<<"$out" | tr -d '%')
  [ -n "$errors" ] || fail "bench scale --analyse-only $runs: no measured points in its output"
  worst=$(awk '{ e = $1 < 0 ? -$1 : $1; if (e > m) m = e } END { print m + 0 }' <<<"$errors")
  awk -v w="$worst" 'BEGIN { exit !(w <= 15) }' || fail "$(basename "$runs"): the model misses a point by $worst%"
  grep -q '<svg' "$WORK/scale.svg" || fail "bench scale drew no SVG"
  pass "bench scale's model within 15% of every measured point of $(basename "$runs") (worst $worst%)"
done

out=$("$SERTRAIN" bench convert --rows 64 --repeats 1 --no-peer --work-dir "$WORK/convert")
grep -q 'sertrain convert: median' <<<"$out" || fail "bench convert printed no median: $out"
pass "bench convert on a 64-row seed-shaped CSV"
