#!/bin/sh
# Stages the build context of the offline images (deploy/image/Dockerfile
# and Dockerfile.s3): static binaries built on this host, the CA bundle and
# examples/. Nothing is pulled from a container registry; the images start
# FROM scratch. Run from anywhere: `make docker-images` and the docker test
# call it.
#
#   VERSION=v0.1.0 deploy/image/stage.sh    # what `flowctl version` prints
#
# Needs: Go (the version go.mod names), a static busybox (Debian:
# apt-get install busybox-static) for the images' shell, health checks and
# `docker exec` debugging, and /etc/ssl/certs/ca-certificates.crt (Debian:
# ca-certificates) for TLS to cloud storage.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
VERSITYGW_VERSION=${VERSITYGW_VERSION:-v1.8.0}
BUSYBOX=${BUSYBOX:-/bin/busybox}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

mkdir -p "$here/bin"
cd "$root"
CGO_ENABLED=0 go build -trimpath -buildvcs=false \
	-ldflags "-s -w -X github.com/flowrt/flow/internal/cli.Version=${VERSION:-}" \
	-o "$here/bin/" ./cmd/jobmanager ./cmd/taskmanager ./cmd/flowctl
# The S3 server of the compose cluster, built from source like `make tools`.
CGO_ENABLED=0 GOBIN="$here/bin" go install -trimpath -ldflags "-s -w" \
	"github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}"

if [ ! -f "$BUSYBOX" ] || ! "$BUSYBOX" true 2>/dev/null; then
	echo "stage.sh: no busybox at $BUSYBOX: apt-get install -y busybox-static (or set BUSYBOX=)" >&2
	exit 1
fi
# A dynamically linked busybox would not run in a scratch image.
if command -v file >/dev/null 2>&1 && ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
	echo "stage.sh: $BUSYBOX is not statically linked: apt-get install -y busybox-static (or set BUSYBOX=)" >&2
	exit 1
fi
cp "$BUSYBOX" "$here/bin/busybox"
if [ ! -f "$CA_BUNDLE" ]; then
	echo "stage.sh: no CA bundle at $CA_BUNDLE: apt-get install -y ca-certificates (or set CA_BUNDLE=)" >&2
	exit 1
fi
cp "$CA_BUNDLE" "$here/ca-certificates.crt"
rm -rf "$here/examples"
cp -r "$root/examples" "$here/examples"
echo "staged $(ls "$here/bin" | tr '\n' ' ')in $here"
