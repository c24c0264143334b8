#!/usr/bin/env bash
# Builds the Kafka Streams peer of `make bench` (bench/kstreams) offline from Maven Central, installing a JDK and
# Maven from Debian when missing. Idempotent: it rebuilds only when the pom or the source changed. Prints the
# classpath to run the app with.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
app="$root/bench/kstreams"
log() { printf 'kstreams-app: %s\n' "$*" >&2; }

missing=()
command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "missing ${missing[*]}: install them (Debian: apt-get install ${missing[*]})"; exit 1; }
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="$app/target/.built"
newest=$(find "$app/pom.xml" "$app/src" -type f -newer "$stamp" 2>/dev/null | head -n 1 || true)
if [ ! -f "$stamp" ] || [ -n "$newest" ]; then
  log "building bench/kstreams with Maven"
  mvn -q -B -f "$app/pom.xml" package -DskipTests >&2
  touch "$stamp"
fi
echo "$app/target/classes:$app/target/lib/*"
