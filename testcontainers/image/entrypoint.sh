#!/bin/bash
# Entrypoint of the local Kafka image. It offers the environment interface of the official apache/kafka image,
# so the harness configures either image the same way: every KAFKA_FOO_BAR variable becomes the broker property
# foo.bar (___ becomes -, __ becomes _, _ becomes .), CLUSTER_ID names the cluster when the log directory is first
# formatted, and KAFKA_HEAP_OPTS / KAFKA_OPTS pass through to the JVM. With no KAFKA_ variable at all it starts the
# same single combined broker+controller on localhost:9092 as the official image.
set -euo pipefail

kafka_home=/opt/kafka
props=$kafka_home/config/server.properties
classpath="$kafka_home/libs/*"
cluster_id=${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}

# JVM and logging settings the official image reads from KAFKA_* variables; they are not broker properties.
not_properties='^KAFKA_(VERSION|HEAP_OPTS|LOG4J_OPTS|OPTS|JMX_OPTS|JVM_PERFORMANCE_OPTS|GC_LOG_OPTS|LOG4J_ROOT_LOGLEVEL|LOG4J_LOGGERS|TOOLS_LOG4J_LOGLEVEL|JMX_HOSTNAME)='

broker_vars=$(env | grep -E '^KAFKA_[A-Z0-9_]+=' | grep -Ev "$not_properties" || true)
if [ -z "$broker_vars" ]; then
  broker_vars='KAFKA_NODE_ID=1
KAFKA_PROCESS_ROLES=broker,controller
KAFKA_LISTENERS=PLAINTEXT://:9092,CONTROLLER://:9093
KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://localhost:9092
KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER
KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
KAFKA_CONTROLLER_QUORUM_VOTERS=1@localhost:9093
KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1
KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1
KAFKA_TRANSACTION_STATE_LOG_MIN_ISR=1
KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS=0
KAFKA_LOG_DIRS=/tmp/kraft-combined-logs'
fi

: >"$props"
while IFS= read -r line; do
  name=${line%%=*}
  value=${line#*=}
  key=${name#KAFKA_}
  key=$(printf '%s' "$key" | tr 'A-Z' 'a-z' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')
  printf '%s=%s\n' "$key" "$value" >>"$props"
done <<<"$broker_vars"

jvm_opts=(${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
  -Dlog4j2.configurationFile=$kafka_home/config/log4j2.yaml -Dlog4j.configuration=file:$kafka_home/config/log4j.properties
  ${KAFKA_OPTS:-})

java "${jvm_opts[@]}" -cp "$classpath" kafka.tools.StorageTool format --ignore-formatted \
  --cluster-id "$cluster_id" --config "$props" >/dev/null
exec java "${jvm_opts[@]}" -cp "$classpath" kafka.Kafka "$props"
