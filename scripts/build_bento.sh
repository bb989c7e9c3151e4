#!/usr/bin/env bash
# `bentoml build` of bentofile.yaml; prints the Bento tag on its last line.
#
# BASE_IMAGE (environment) replaces BentoML's default base image (python:3.11-slim from Docker
# Hub): the build then uses a copy of bentofile.yaml with `docker.base_image` set, because the
# Dockerfile is generated from the options stored in the Bento. Empty: bentofile.yaml as it is.
set -euo pipefail

cd "$(dirname "$0")/.."
BENTOML="${BENTOML:-.venv/bin/bentoml}"
PY="${PY:-.venv/bin/python}"
BENTOFILE=bentofile.yaml
tmp=""
trap '[ -z "$tmp" ] || rm -f "$tmp"' EXIT

if [ -n "${BASE_IMAGE:-}" ]; then
    tmp="$(mktemp "${TMPDIR:-/tmp}/bentofile.XXXXXX.yaml")"
    "$PY" - "$BENTOFILE" "$tmp" "$BASE_IMAGE" <<'PYCODE'
import sys

import yaml

source, target, image = sys.argv[1:]
with open(source) as f:
    spec = yaml.safe_load(f)
docker = spec.setdefault("docker", {})
# BentoML ignores these with a base image, and warns about each.
for key in ("distro", "python_version", "system_packages"):
    docker.pop(key, None)
docker["base_image"] = image
with open(target, "w") as f:
    yaml.safe_dump(spec, f, sort_keys=False)
PYCODE
    BENTOFILE="$tmp"
    echo "building with base image $BASE_IMAGE" >&2
fi

out="$("$BENTOML" build -f "$BENTOFILE" --output tag .)" || exit 1
# `-o tag` prints `__tag__:<name>:<version>`.
tag="$(printf '%s\n' "$out" | sed -n 's/^__tag__://p' | tail -n 1)"
[ -n "$tag" ] || { echo "bentoml build printed no tag: $out" >&2; exit 1; }
echo "$tag"
