# The two commands a new machine needs are `make demo` and `make test`; both run `make setup` first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# testcontainers on these machines: no reaper container (it cannot be pulled), and brokers reached on localhost.
export TESTCONTAINERS_RYUK_DISABLED := true
export TESTCONTAINERS_HOST_OVERRIDE := localhost

KAFKA_IMAGE_FILE := .cache/kafka-image
WITH_KAFKA_IMAGE = KAFKA_IMAGE="$$(cat $(KAFKA_IMAGE_FILE))"

.PHONY: help setup build test test-unit test-e2e demo lint dedupe-restore

help:
	@echo "make demo   run the processor end to end on a real Kafka (sets up everything first)"
	@echo "make test   run every test, unit and end to end on real Kafka (sets up everything first)"
	@echo "make setup  install/start what the project needs: Docker engine, Kafka image, Go modules"
	@echo "make build  build bin/processor"

setup:
	@scripts/setup.sh

build:
	go build -o bin/processor ./cmd/processor

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	go vet ./...

# Pure packages with the race detector; tests that need Kafka skip themselves under -short.
test-unit:
	go test -race -short -count=1 ./...

# Tests against real Kafka (testcontainers) and the real processor binary, one package at a time: 2 cores.
test-e2e: setup
	$(WITH_KAFKA_IMAGE) go test -count=1 -p 1 -timeout 40m ./testcontainers/... $$(go list ./e2e/... 2>/dev/null)

test: setup lint test-unit test-e2e

demo: setup build
	$(WITH_KAFKA_IMAGE) go run ./cmd/demo

# Restore time of a 1,000,000-key de-duplication store from its changelog on a single broker.
dedupe-restore: setup
	$(WITH_KAFKA_IMAGE) go run ./bench/dedupe-restore
