#!/usr/bin/env bash
# `make security-scan`: bandit, pip-audit and the image's user (deploy/security_scan.py says
# what each check does). Arguments go to it: --only bandit|pip-audit|image, --image NAME, --out.
#
#   SECURITY_SCAN_OFFLINE_OK=1     the advisory service being unreachable is a pass (one line)
#   SECURITY_SCAN_REQUIRE_IMAGE=1  no Docker engine or no image to inspect is a failure
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
exec "$PY" -m deploy.security_scan "$@"
