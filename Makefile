# The two commands a new machine needs are `make demo` and `make test`; both run `make setup` first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# testcontainers on these machines: no reaper container (it cannot be pulled), and brokers reached on localhost.
export TESTCONTAINERS_RYUK_DISABLED := true
export TESTCONTAINERS_HOST_OVERRIDE := localhost

KAFKA_IMAGE_FILE := .cache/kafka-image
WITH_KAFKA_IMAGE = KAFKA_IMAGE="$$(cat $(KAFKA_IMAGE_FILE))"

.PHONY: help setup build build-static image docs test test-unit test-e2e demo demo-short lint dedupe-restore chaos stress bench compat soak soak-quick

help:
	@echo "make demo   run the processor end to end on a real Kafka (sets up everything first)"
	@echo "make test   run every test, unit and end to end on real Kafka (sets up everything first)"
	@echo "make setup  install/start what the project needs: Docker engine, Kafka image, Go modules"
	@echo "make build  build bin/processor"
	@echo "make build-static  build bin/processor-static: fully static, librdkafka inside"
	@echo "make image  build the container image $(IMAGE) from scratch with the static binary (offline)"

setup:
	@scripts/setup.sh

build:
	go build -o bin/processor ./cmd/processor

# A fully static binary: confluent-kafka-go's bundled librdkafka built for musl, linked statically with musl-gcc
# (Debian's musl-tools, installed by setup when missing). It runs on any Linux x86-64, with no librdkafka or libc.
IMAGE ?= eosproc/processor:dev
export EOSPROC_IMAGE := $(IMAGE)
build-static:
	@command -v musl-gcc >/dev/null || scripts/setup.sh
	CC=musl-gcc CGO_ENABLED=1 go build -tags musl -trimpath \
	  -ldflags '-s -w -linkmode external -extldflags "-static"' -o bin/processor-static ./cmd/processor
	@if command -v file >/dev/null; then file bin/processor-static | grep -q 'statically linked' \
	  || { file bin/processor-static; echo "bin/processor-static is not statically linked"; exit 1; }; fi
	@echo "bin/processor-static: $$(du -h bin/processor-static | cut -f1), statically linked"

# The image of Dockerfile, built without pulling anything: FROM scratch, the classic builder (BuildKit would ask
# a registry about the base), the host's CA bundle staged into the build context.
image: build-static
	@mkdir -p .cache/image
	@test -f /etc/ssl/certs/ca-certificates.crt || { echo "no CA bundle at /etc/ssl/certs/ca-certificates.crt: run make setup"; exit 1; }
	@cp /etc/ssl/certs/ca-certificates.crt .cache/image/ca-certificates.crt
	DOCKER_BUILDKIT=0 docker build -q -t $(IMAGE) . >/dev/null
	@echo "$(IMAGE): $$(docker image inspect -f '{{.Size}}' $(IMAGE) | awk '{printf "%.1f MB", $$1/1e6}')"

# Regenerates docs/configuration.md from the Config struct (a test fails while it is stale).
docs:
	go test ./processor -run TestConfigurationReferenceIsCurrent -update

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	go vet ./...

# Pure packages with the race detector; tests that need Kafka skip themselves under -short.
test-unit:
	go test -race -short -count=1 ./...

# Tests against real Kafka (testcontainers) and the real processor binary, one package at a time: 2 cores. The
# packages listed here hold the tests that -short skips.
test-e2e: setup image
	$(WITH_KAFKA_IMAGE) go test -count=1 -p 1 -timeout 40m ./testcontainers/... ./consume/ ./internal/librdkafka/ $$(go list ./e2e/... 2>/dev/null)

test: setup lint test-unit test-e2e

demo: setup build
	$(WITH_KAFKA_IMAGE) go run ./cmd/demo

# A short demo (50,000 records, one SIGKILL), as CI runs it after the tests: it fails unless the verdict is
# exactly once.
demo-short: setup build
	$(WITH_KAFKA_IMAGE) go run ./cmd/demo -records 50000 -kills 1

# Restore time of a 1,000,000-key de-duplication store from its changelog on a single broker.
dedupe-restore: setup
	$(WITH_KAFKA_IMAGE) go run ./bench/dedupe-restore

# Throughput, latency, CPU and memory of the processor beside Kafka Streams exactly_once_v2 and the broker's own
# ceiling, in one run on a single broker, 3 alternating repeats (about 10 minutes on 2 cores, more under load);
# the table goes to stdout, docs/benchmarks.json and docs/benchmarks.svg.
bench: setup
	$(WITH_KAFKA_IMAGE) go run ./bench/processor

# The scenarios where a rare race shows, 30 times each at 20,000 records (STRESS_RUNS, STRESS_SCENARIOS,
# CHAOS_RECORDS change that): a processor frozen past its transaction timeout, one frozen inside a transaction,
# brokers SIGKILLed. Hours on 2 cores; a failure explains each duplicate or lost record from the debug logs.
stress: setup
	$(WITH_KAFKA_IMAGE) scripts/stress.sh

# The full fault matrix on 3 brokers, 100,000 records per scenario; the results table goes to docs/chaos.md.
# The exactly-once core and the harness's tests on the newest and the oldest supported broker lines (about 15 min).
compat: setup
	scripts/compat.sh

chaos: setup
	$(WITH_KAFKA_IMAGE) CHAOS_RECORDS=100000 CHAOS_REPORT=$(CURDIR)/docs/chaos.md \
	  go test -count=1 -timeout 80m -v -run TestChaosMatrix ./e2e/

# A soak under a random fault every 30 s: 3 brokers, 3 supervised replicas, a generator at half the replicas'
# fault-free rate, checks every 5 minutes (SOAK_DURATION, default 1h). The report goes to docs/soak.md;
# `make soak-quick` runs 10 minutes and writes docs/soak-quick.md.
SOAK_DURATION ?= 1h
SOAK_REPORT ?= $(CURDIR)/docs/soak.md
soak: setup
	$(WITH_KAFKA_IMAGE) SOAK_DURATION=$(SOAK_DURATION) SOAK_REPORT=$(SOAK_REPORT) \
	  go test -tags soak -count=1 -timeout 4h -v -run TestSoak ./e2e/

soak-quick:
	$(MAKE) soak SOAK_DURATION=10m SOAK_REPORT=$(CURDIR)/docs/soak-quick.md
