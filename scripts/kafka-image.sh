#!/usr/bin/env bash
# Builds the local Apache Kafka image without pulling anything, and prints its tag.
#
#   1. base: Debian's minimal root file system with openjdk-17-jre-headless (debootstrap --variant=minbase),
#      turned into an image with `docker import`. Built once per Debian suite.
#   2. kafka: the base plus Apache Kafka's jars resolved by Maven (testcontainers/image/pom.xml) and an entrypoint
#      with the official image's environment interface.
#
# KAFKA_VERSION picks another Kafka release than the pom's (make compat builds the oldest line it tests, 3.9):
# a 3.x broker logs through log4j 1 (reload4j, which its jars bring), so the log4j 2 jars are left out of it.
#
# Each image's tag carries a hash of its inputs, so it is rebuilt only when they change. Idempotent.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/testcontainers/image
suite=bookworm
log() { printf 'kafka-image: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

base_tag="eosproc/jre-base:$suite-openjdk17"
kafka_version=${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$src/pom.xml")}
[[ $kafka_version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "KAFKA_VERSION $kafka_version: want a release such as 3.9.1"
inputs_hash=$(cat "$src/pom.xml" "$src/Dockerfile" "$src/entrypoint.sh" "$src/kafka-run-class.sh" "$src/log4j2.yaml" \
  "$src/log4j.properties" "$0" | sha256sum | cut -c1-12)
kafka_tag="eosproc/kafka-local:$kafka_version-$inputs_hash"

if docker image inspect "$kafka_tag" >/dev/null 2>&1; then
  echo "$kafka_tag"
  exit 0
fi
# Asked only whether the image for these inputs exists (setup does, before it tries to pull the official one).
[ -z "${KAFKA_IMAGE_CHECK_ONLY:-}" ] || exit 1

# The Debian mirror this machine's apt already uses, so the image comes from the same packages.
debian_mirror() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "cannot find a Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
  echo "$uri"
}

if ! docker image inspect "$base_tag" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || die "debootstrap is missing: run 'make setup' (it installs it) or apt-get install debootstrap"
  [ "$(id -u)" = 0 ] || die "building the JRE base image needs root (debootstrap); run as root or set KAFKA_IMAGE to an existing image"
  rootfs=$(mktemp -d /var/tmp/eosproc-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap $suite with openjdk-17-jre-headless into $rootfs (a few minutes)"
  debootstrap --variant=minbase --include=openjdk-17-jre-headless,ca-certificates "$suite" "$rootfs" "$(debian_mirror)" \
    >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; die "debootstrap failed (log: $rootfs.log)"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  log "docker import $base_tag"
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' - "$base_tag" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
  trap - EXIT
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$src/Dockerfile" "$src/entrypoint.sh" "$src/kafka-run-class.sh" "$src/log4j2.yaml" "$src/log4j.properties" "$context/"
log "resolving Apache Kafka $kafka_version jars with Maven"
mvn -q -B -f "$src/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -Dkafka.version="$kafka_version" \
  -DoutputDirectory="$context/libs" >"$context/mvn.log" 2>&1 \
  || { cat "$context/mvn.log" >&2; die "Maven could not resolve Kafka's jars (log above)"; }
if [ "${kafka_version%%.*}" -lt 4 ]; then
  # Two slf4j bindings would leave the choice to the class path's order; Kafka 3 needs log4j 1's.
  rm -f "$context"/libs/log4j-slf4j-impl-*.jar "$context"/libs/log4j-core-*.jar "$context"/libs/log4j-api-*.jar
fi
log "docker build $kafka_tag"
# The classic builder uses the local base image as it is; BuildKit would try to resolve it in a registry.
DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base_tag" -t "$kafka_tag" "$context" >"$context/build.log" 2>&1 \
  || { cat "$context/build.log" >&2; die "docker build of $kafka_tag failed"; }
# Earlier builds of the same Kafka release are superseded by this one; other releases' (make compat) stay.
docker images --format '{{.Repository}}:{{.Tag}}' eosproc/kafka-local | grep -F ":$kafka_version-" | grep -vxF "$kafka_tag" \
  | xargs -r docker rmi >/dev/null 2>&1 || true
echo "$kafka_tag"
