#!/usr/bin/env bash
# Build the local base image that `make containerize` uses where Docker Hub cannot be reached.
#
# Debian bookworm from debootstrap, Debian's python3.11, uv (BentoML's Dockerfile installs
# Python packages with it) and the CPU torch wheel, turned into an image with `docker import`.
# `bentoml containerize` then installs the Bento's packages from PyPI on top: uv's find-links
# points at the wheel, so torch is the CPU build and not PyPI's multi-GB CUDA one.
#
# Idempotent: an existing image is kept (FORCE=1 rebuilds), and the debootstrap root file system
# is cached as a tarball, so a rebuild after `docker image rm` takes seconds.
#
# Settings (environment): BASE_IMAGE, DEBIAN_MIRROR, BASE_IMAGE_CACHE, TORCH_WHEEL, CA_BUNDLE,
# UV_VERSION, PY (a python with pip, used to download uv and, if needed, torch), FORCE.
set -euo pipefail

cd "$(dirname "$0")/.."
IMAGE="${BASE_IMAGE:-sentiment-base:bookworm-py3.11}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE_DIR="${BASE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sentiment-platform}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
# BentoML 1.4.40's Dockerfile accepts an installed uv >= 0.13.4 and otherwise pip-installs it,
# which Debian's externally-managed python refuses.
UV_VERSION="${UV_VERSION:-0.13.4}"
PY="${PY:-.venv/bin/python}"
FORCE="${FORCE:-0}"
# The torch pin the Bento asks for; its CPU wheel must be in the image.
TORCH_VERSION="$(sed -n 's/^ *- *"\{0,1\}torch==\([0-9.]*\).*/\1/p' bentofile.yaml | head -n 1)"
# Packages beyond debootstrap's minbase: the Python runtime and what torch's wheel links to.
PACKAGES="python3.11,ca-certificates,libgomp1"
ROOTFS_TAR="$CACHE_DIR/bookworm-minbase-py3.11.tar"

say() { echo "[base-image] $*"; }
fail() {
    echo "[base-image] $*" >&2
    exit 1
}

[ -n "$TORCH_VERSION" ] || fail "no torch==X pin found in bentofile.yaml"
scripts/docker_engine.sh start >/dev/null || fail "no Docker engine (scripts/docker_engine.sh start says why)"
if docker image inspect "$IMAGE" >/dev/null 2>&1 && [ "$FORCE" != 1 ]; then
    say "$IMAGE already exists (FORCE=1 rebuilds it)"
    exit 0
fi

started=$(date +%s)
work="$(mktemp -d "${TMPDIR:-/tmp}/sentiment-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$CACHE_DIR"

# --- 1. the Debian root file system (cached) -----------------------------------------------
if [ ! -s "$ROOTFS_TAR" ] || [ "$FORCE" = 1 ]; then
    command -v debootstrap >/dev/null || fail "debootstrap is missing: apt-get install -y debootstrap"
    [ "$(id -u)" = 0 ] || fail "debootstrap needs root"
    root="$work/rootfs"
    say "debootstrap bookworm (minbase + $PACKAGES) from $MIRROR"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" \
        >"$work/debootstrap.log" 2>&1 || fail "debootstrap failed: $(tail -n 1 "$work/debootstrap.log")"
    cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
    say "applying bookworm-updates and security updates"
    chroot "$root" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -qq -y upgrade' \
        >"$work/upgrade.log" 2>&1 || fail "apt-get upgrade in the root file system failed: $(tail -n 1 "$work/upgrade.log")"
    # Nothing in the image runs apt: drop its caches, and docs nobody reads in a container.
    rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*
    tar -C "$root" --numeric-owner -cf "$ROOTFS_TAR.part" .
    mv "$ROOTFS_TAR.part" "$ROOTFS_TAR"
    rm -rf "$root"
else
    say "reusing the cached root file system $ROOTFS_TAR"
fi

# --- 2. uv, the CPU torch wheel and the CA bundle, added to the tarball ---------------------
extra="$work/extra"
mkdir -p "$extra/usr/local/bin" "$extra/opt/wheels" "$extra/etc/ssl/certs"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: "uv==$UV_VERSION" -d "$work/uv" 2>/dev/null \
    || fail "could not download uv==$UV_VERSION from PyPI"
"$PY" - "$work"/uv/uv-*.whl "$extra/usr/local/bin/uv" <<'PYCODE'
import sys
import zipfile

wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/uv"))
    with open(target, "wb") as out:
        out.write(z.read(name))
PYCODE
chmod 755 "$extra/usr/local/bin/uv"

wheel="${TORCH_WHEEL:-}"
if [ -z "$wheel" ]; then
    # pip's own find-links folders (pip config / PIP_FIND_LINKS) hold the CPU build on these machines.
    links="$("$PY" -m pip config get global.find-links 2>/dev/null || true) ${PIP_FIND_LINKS:-}"
    for dir in $links; do
        for f in "${dir#file://}"/torch-"$TORCH_VERSION"+cpu-cp311-*linux*_x86_64.whl; do
            [ -f "$f" ] && wheel="$f" && break 2
        done
    done
fi
if [ -z "$wheel" ]; then
    say "no local torch $TORCH_VERSION CPU wheel; trying PyTorch's CPU index"
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: "torch==$TORCH_VERSION" \
        --index-url https://download.pytorch.org/whl/cpu -d "$work/torch" 2>/dev/null \
        || fail "no CPU wheel of torch==$TORCH_VERSION: set TORCH_WHEEL=/path/to/torch-$TORCH_VERSION+cpu-cp311-...whl"
    wheel="$(ls "$work"/torch/torch-*.whl)"
fi
say "torch wheel: $wheel"
cp "$wheel" "$extra/opt/wheels/"
# Trusting the host's bundle is what lets uv reach PyPI from inside a build on these machines.
cp "$CA_BUNDLE" "$extra/etc/ssl/certs/ca-certificates.crt"

# Appended as files only: docker import refuses a tarball that names a path twice, and the
# root file system already has these directories and its own CA bundle.
cp "$ROOTFS_TAR" "$work/image.tar"
tar --delete -f "$work/image.tar" ./etc/ssl/certs/ca-certificates.crt
tar -C "$extra" --numeric-owner --owner=0 --group=0 --no-recursion -rf "$work/image.tar" \
    ./usr/local/bin/uv ./opt/wheels "./opt/wheels/$(basename "$wheel")" ./etc/ssl/certs/ca-certificates.crt

# --- 3. docker import ----------------------------------------------------------------------
say "docker import -> $IMAGE"
docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV UV_FIND_LINKS=/opt/wheels' \
    --change 'ENV UV_PYTHON_DOWNLOADS=never' \
    --change 'CMD ["/bin/bash"]' \
    --message "Debian bookworm + python3.11 + uv $UV_VERSION + torch $TORCH_VERSION CPU wheel" \
    "$work/image.tar" "$IMAGE" >/dev/null
size=$(docker image inspect "$IMAGE" --format '{{.Size}}')
say "built $IMAGE in $(($(date +%s) - started))s, $((size / 1000000)) MB"
