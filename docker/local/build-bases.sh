#!/usr/bin/env bash
# Build the images that a machine without access to container registries cannot pull, from
# Debian packages alone (Debian's archive is the only source it needs):
#
#   local/bookworm:12          debootstrap --variant=minbase bookworm, imported as an image
#   local/python:3.11-bookworm bookworm's python3.11 + venv   (PYTHON_IMAGE for our Dockerfiles)
#   local/redis:7-bookworm     bookworm's redis-server        (docker/compose.local.yaml)
#   local/s3:moto              moto's S3 server on port 9000   (docker/compose.local.yaml)
#   local/flower:2.0.1         Flower from PyPI                (docker/compose.local.yaml)
#
# Each image is built once: an existing tag is kept (REBUILD=1 builds them all again).
# Needs root for debootstrap. Installs docker.io and debootstrap and starts dockerd when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
# The mirror apt already uses on this machine (debootstrap needs one spelled out).
mirror="${DEBIAN_MIRROR:-$(grep -hoE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}' || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"

need=""
command -v dockerd >/dev/null || need="$need docker.io"
command -v debootstrap >/dev/null || need="$need debootstrap"
if [ -n "$need" ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $need
fi
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (log: /tmp/dockerd.log)"
  $sudo sh -c 'nohup dockerd >/tmp/dockerd.log 2>&1 &'
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null
fi

have() { [ -z "${REBUILD:-}" ] && docker image inspect "$1" >/dev/null 2>&1; }

if ! have local/bookworm:12; then
  root="$(mktemp -d /tmp/bookworm-root.XXXXXX)"
  trap '$sudo rm -rf "$root"' EXIT
  echo "debootstrap bookworm from $mirror"
  $sudo debootstrap --variant=minbase bookworm "$root" "$mirror" >/tmp/debootstrap.log 2>&1 \
    || { tail -n 20 /tmp/debootstrap.log; exit 1; }
  # The same suites as Debian's official images: point releases and security fixes.
  $sudo sh -c "printf '%s\n' 'deb $mirror bookworm main' 'deb $mirror bookworm-updates main' \
    'deb ${mirror%/debian*}/debian-security bookworm-security main' > '$root/etc/apt/sources.list'"
  $sudo rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  $sudo tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - local/bookworm:12
fi
if ! have local/python:3.11-bookworm; then
  context="$(mktemp -d /tmp/python-base.XXXXXX)"
  mkdir "$context/ca"
  cp /usr/local/share/ca-certificates/*.crt "$context/ca/" 2>/dev/null || true
  docker build --network host -t local/python:3.11-bookworm -f "$here/python.Dockerfile" "$context"
  rm -rf "$context"
fi
have local/redis:7-bookworm \
  || docker build --network host -t local/redis:7-bookworm -f "$here/redis.Dockerfile" "$here"
have local/s3:moto \
  || docker build --network host -t local/s3:moto -f "$here/s3.Dockerfile" "$here"
have local/flower:2.0.1 \
  || docker build --network host -t local/flower:2.0.1 -f "$here/flower.Dockerfile" "$here"
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep '^local/'
