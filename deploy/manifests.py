"""The Kubernetes manifests in deploy/k8s/: render an overlay, and keep the PrometheusRule equal
to docker/alerts.yml.

    python -m deploy.manifests render production     # what `kubectl kustomize` would print
    python -m deploy.manifests write-rule            # regenerate base/prometheusrule.yaml
    python -m deploy.manifests check-rule            # exit 1 when it differs from alerts.yml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from deploy.kustomize import render

PROJECT_ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = Path(__file__).resolve().parent / "k8s"
ALERTS_FILE = PROJECT_ROOT / "docker" / "alerts.yml"
RULE_FILE = K8S_DIR / "base" / "prometheusrule.yaml"
OVERLAYS = ("staging", "production")

RULE_HEADER = """\
# Generated from docker/alerts.yml by `python -m deploy.manifests write-rule`: the same alert
# rules, as the Prometheus Operator's PrometheusRule (tests/unit/deploy/test_k8s.py checks that
# they are equal). Edit docker/alerts.yml (and its promtool tests), then regenerate.
"""


def prometheus_rule(alerts: dict[str, Any]) -> dict[str, Any]:
    """docker/alerts.yml's groups wrapped as a PrometheusRule object."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "sentiment-api",
            "labels": {"app.kubernetes.io/name": "sentiment-api"},
        },
        "spec": {"groups": alerts["groups"]},
    }


def rule_text(alerts_file: Path = ALERTS_FILE) -> str:
    alerts = yaml.safe_load(alerts_file.read_text(encoding="utf-8"))
    body = yaml.safe_dump(prometheus_rule(alerts), sort_keys=False, width=100)
    return RULE_HEADER + body


def render_overlay(name: str) -> list[dict[str, Any]]:
    return render(K8S_DIR / "overlays" / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    render_cmd = sub.add_parser("render", help="print an overlay's resources as YAML")
    render_cmd.add_argument("overlay", choices=OVERLAYS)
    sub.add_parser("write-rule", help="regenerate base/prometheusrule.yaml from alerts.yml")
    sub.add_parser("check-rule", help="exit 1 when base/prometheusrule.yaml is stale")
    args = parser.parse_args(argv)
    if args.command == "render":
        print(yaml.safe_dump_all(render_overlay(args.overlay), sort_keys=False), end="")
    elif args.command == "write-rule":
        RULE_FILE.write_text(rule_text(), encoding="utf-8")
        print(f"wrote {RULE_FILE.relative_to(PROJECT_ROOT)}")
    elif RULE_FILE.read_text(encoding="utf-8") != rule_text():
        stale = RULE_FILE.relative_to(PROJECT_ROOT)
        print(f"{stale} differs from docker/alerts.yml: run write-rule", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
