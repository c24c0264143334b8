#!/usr/bin/env bash
# Everything the project needs on a fresh machine, idempotent, run by `make test`, `make demo` and `make bench`:
#   - a Docker engine: when none answers and we are root, Debian's docker.io is installed and dockerd started in the
#     background;
#   - a Kafka image: the official one when it is present or can be pulled, else the local build
#     (scripts/kafka-image.sh, offline); its name is written to .cache/kafka-image for the Makefile;
#   - Go modules and the tools the builds use (musl-tools for the static binary).
# Anything it cannot do ends in a message saying what to do, and a non-zero exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
official_image=$(sed -n 's/^const DefaultImage = "\(.*\)"$/\1/p' "$root/testcontainers/kafka.go")
log() { printf 'setup: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_updated=""
apt_install() {
  is_root || die "missing $*: install them (Debian: apt-get install $*) or run 'make setup' as root"
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || die "apt-get update failed"
    apt_updated=yes
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

command -v go >/dev/null || die "Go is missing: install Go 1.26 or newer"

# --- Docker engine ---------------------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || apt_install docker.io
  command -v docker >/dev/null || apt_install docker.io
  is_root || die "no Docker engine answers and we are not root: start Docker, or run 'make setup' as root"
  log "starting dockerd in the background (log: /var/log/eosproc-dockerd.log)"
  nohup dockerd >/var/log/eosproc-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -n 20 /var/log/eosproc-dockerd.log >&2; die "dockerd did not answer within 60 s (log above)"; }
fi

# --- build tools -----------------------------------------------------------------------------------------------
missing=()
command -v musl-gcc >/dev/null || missing+=(musl-tools)
# The offline image (make image) copies the host's CA bundle, for TLS to the brokers from inside the container.
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
command -v gcc >/dev/null || missing+=(gcc)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# --- Kafka image ---------------------------------------------------------------------------------------------------
mkdir -p "$root/.cache"
choose_image() {
  if [ -n "${KAFKA_IMAGE:-}" ]; then
    docker image inspect "$KAFKA_IMAGE" >/dev/null 2>&1 || timeout 300 docker pull -q "$KAFKA_IMAGE" >/dev/null 2>&1 \
      || die "KAFKA_IMAGE=$KAFKA_IMAGE is neither present nor pullable: unset it to use $official_image or the local build"
    echo "$KAFKA_IMAGE"
    return
  fi
  if docker image inspect "$official_image" >/dev/null 2>&1; then
    echo "$official_image"
    return
  fi
  local local_image
  if local_image=$(KAFKA_IMAGE_CHECK_ONLY=1 "$root/scripts/kafka-image.sh" 2>/dev/null); then
    echo "$local_image"
    return
  fi
  if timeout 300 docker pull -q "$official_image" >/dev/null 2>&1; then
    echo "$official_image"
    return
  fi
  log "$official_image cannot be pulled here: building the local image instead"
  command -v debootstrap >/dev/null || apt_install debootstrap
  command -v mvn >/dev/null || apt_install maven
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  "$root/scripts/kafka-image.sh" || die "building the local Kafka image failed (see above)"
}
image=$(choose_image)
echo "$image" >"$root/.cache/kafka-image"
log "Kafka image: $image"

# --- Go modules ----------------------------------------------------------------------------------------------------
(cd "$root" && go mod download) || die "go mod download failed: is the Go module proxy reachable?"
log "ready"
