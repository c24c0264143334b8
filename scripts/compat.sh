#!/usr/bin/env bash
# make compat: the exactly-once core of the e2e suite (SIGKILL mid-transaction, a zombie fenced, replicas
# rebalancing, partitions added) and the Kafka harness's own tests, on each broker line the project supports: the
# harness's default image (setup's choice, .cache/kafka-image) and the oldest line, built locally (COMPAT_OLDEST,
# default 3.9.1, a KRaft broker; the processor needs KIP-447, so 2.5 at the very least). Offline like setup.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
oldest=${COMPAT_OLDEST:-3.9.1}
log() { printf 'compat: %s\n' "$*" >&2; }

export TESTCONTAINERS_RYUK_DISABLED=${TESTCONTAINERS_RYUK_DISABLED:-true}
export TESTCONTAINERS_HOST_OVERRIDE=${TESTCONTAINERS_HOST_OVERRIDE:-localhost}
newest=$(cat .cache/kafka-image)
log "building the Kafka $oldest image (once)"
oldest_image=$(KAFKA_VERSION=$oldest scripts/kafka-image.sh)

core='^(TestKillMidTransactionLeavesNoDuplicates|TestZombieWritesStayInvisible|TestReplicasRebalanceExactlyOnce|TestAddedPartitionsAreProcessedFromTheStart)$'
mkdir -p .cache
status=0
for image in "$newest" "$oldest_image"; do
  out=.cache/compat-$(printf '%s' "$image" | tr '/:' '__').log
  log "$image: the harness's tests and the exactly-once core (log: $out)"
  if KAFKA_IMAGE=$image go test -count=1 -p 1 -timeout 30m -v ./testcontainers/... >"$out" 2>&1 \
    && KAFKA_IMAGE=$image go test -count=1 -timeout 30m -v -run "$core" ./e2e/ >>"$out" 2>&1; then
    grep -E '^--- |kafka: [0-9]+ broker' "$out" | head -40 >&2
    log "$image: passed"
  else
    grep -E '^(--- |FAIL|ok)' "$out" >&2 || true
    tail -n 40 "$out" >&2
    log "$image: FAILED"
    status=1
  fi
done
exit $status
