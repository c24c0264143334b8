#!/bin/bash
# Runs one of Kafka's Java tools the way the official image's bin/kafka-run-class.sh does, so tests and benchmarks
# can call e.g. `kafka-run-class.sh org.apache.kafka.tools.ProducerPerformance ...` in either image.
exec java ${KAFKA_HEAP_OPTS:--Xmx512M} -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.yaml \
  -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties -cp '/opt/kafka/libs/*' "$@"
