#!/usr/bin/env bash
# Runs the fault scenarios where a rare race shows (a processor frozen past its transaction timeout, one frozen
# inside a transaction, brokers SIGKILLed) STRESS_RUNS times each at CHAOS_RECORDS records, then prints how many
# runs of each passed. A failed run's output explains each duplicate or missing record from the processors' debug
# logs (the batches that committed it, the partition's assignments and rewinds). The whole output is kept in
# .cache/stress.log.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${STRESS_RUNS:-30}"
pattern="${STRESS_SCENARIOS:-TestChaosMatrix/(processor_frozen|hard_bounce_brokers)}"
mkdir -p .cache
log=.cache/stress.log
echo "stress: $runs runs of $pattern at ${CHAOS_RECORDS:-20000} records; output in $log"
status=0
CHAOS_RECORDS="${CHAOS_RECORDS:-20000}" go test -count="$runs" -timeout 0 -v -run "$pattern" ./e2e/ >"$log" 2>&1 || status=$?
awk '/^    --- (PASS|FAIL): TestChaosMatrix\// {
        name = $3; sub(/^TestChaosMatrix\//, "", name); runs[name]++; if ($2 == "FAIL:") failed[name]++
     }
     END {
        for (n in runs) printf "%-55s %3d runs, %3d failed\n", n, runs[n], failed[n] + 0
     }' "$log" | sort
if [ "$status" -ne 0 ]; then
  echo "stress: failures; their verdicts and explanations:"
  grep -E "VIOLATED|where the records|committed by|^\s+\S+/[0-9]+/[0-9]+:" "$log" | head -200 || true
fi
exit "$status"
