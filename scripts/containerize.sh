#!/usr/bin/env bash
# `bentoml containerize` of a built Bento: scripts/containerize.sh BENTO_TAG IMAGE[:TAG]
#
# Starts the Docker engine when needed, builds with BuildKit on the host network (the image's
# package installs reach PyPI from there on these machines), and reports time and size.
set -euo pipefail

cd "$(dirname "$0")/.."
BENTOML="${BENTOML:-$PWD/.venv/bin/bentoml}"
bento="${1:?usage: $0 BENTO_TAG IMAGE[:TAG]}"
image="${2:?usage: $0 BENTO_TAG IMAGE[:TAG]}"

scripts/docker_engine.sh start >/dev/null
cli_dir="$(scripts/docker_engine.sh cli-dir)"

# BentoML 1.4.40 resolves the Bento's dockerfile_template inside a temporary copy of the Bento
# but refuses any path outside the working directory (bentoml/BentoML#5566): run it from a
# private temporary folder that is also where its copy goes.
if [ -n "${BENTOML_HOME:-}" ]; then
    BENTOML_HOME="$(cd "$BENTOML_HOME" && pwd)"
    export BENTOML_HOME
fi
work="$(mktemp -d /tmp/sentiment-containerize-XXXXXX)"
trap 'rm -rf "$work"' EXIT

started=$(date +%s)
# BentoML calls `docker` from PATH; cli-dir is the one that can build with BuildKit.
(cd "$work" && TMPDIR="$work" PATH="$cli_dir:$PATH" "$BENTOML" containerize "$bento" \
    --image-tag "$image" --network host --progress plain)
# bentoml logs a failed build and may still exit 0: the image must exist.
docker image inspect "$image" >/dev/null 2>&1 || { echo "containerize produced no image $image" >&2; exit 1; }
size=$(docker image inspect "$image" --format '{{.Size}}')
echo "built $image from $bento in $(($(date +%s) - started)) s, $((size / 1000000)) MB"
