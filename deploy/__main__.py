"""`python -m deploy --env staging [--canary PCT] [--rollback | --status]`.

A deploy: import the environment's MLflow alias into BentoML, build its image (unless one of
that model version exists already, or --image names one), then blue-green it (bluegreen.py);
with --canary, the new colour first gets PCT % of new connections while deploy/canary.py
watches both colours, and is promoted or rolled back by the verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from deploy.bluegreen import BlueGreen, DeployResult
from deploy.config import DeploymentConfig, load_deployment_config
from deploy.docker import DockerCli, DockerError
from deploy.monitor import watch
from deploy.smoke import run_smoke
from sentiment.config import (
    PROJECT_ROOT,
    ConfigError,
    load_serving_config,
    load_training_config,
)


def image_name(repository: str, bento_tag: str) -> str:
    """`sentiment:v3-1a2b3c4d` -> `sentiment-api:v3-1a2b3c4d`: one image per model version."""
    return f"{repository}:{bento_tag.partition(':')[2]}"


def bentofile_for(spec: dict[str, Any], model_tag: str, base_image: str | None) -> dict[str, Any]:
    """bentofile.yaml with the one model to ship, and the local base image when one is named."""
    out = {**spec, "models": [model_tag]}
    if base_image:
        docker = dict(out.get("docker") or {})
        # BentoML ignores these beside a base image and warns about each.
        for key in ("distro", "python_version", "system_packages"):
            docker.pop(key, None)
        docker["base_image"] = base_image
        out["docker"] = docker
    return out


def build_bento(model_tag: str, base_image: str | None) -> str:
    """`bentoml build` of bentofile.yaml with its model pinned to `model_tag`; the Bento tag."""
    import yaml

    spec = yaml.safe_load((PROJECT_ROOT / "bentofile.yaml").read_text(encoding="utf-8"))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="bentofile-") as handle:
        yaml.safe_dump(bentofile_for(spec, model_tag, base_image), handle, sort_keys=False)
        handle.flush()
        done = subprocess.run(
            [bentoml_cli(), "build", "-f", handle.name, "--output", "tag", "."],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    tags = [
        line.removeprefix("__tag__:") for line in done.stdout.splitlines() if "__tag__:" in line
    ]
    if done.returncode != 0 or not tags:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise DockerError(f"bentoml build failed: {reason[-1] if reason else done.returncode}")
    return tags[-1]


def bentoml_cli() -> str:
    return str(Path(sys.executable).with_name("bentoml"))


def build_image(cfg: DeploymentConfig, alias: str) -> tuple[str, dict[str, str]]:
    """Import `alias`, build a Bento of it and containerize it (the ship step's scripts)."""
    # Here, not at the top: the import step loads torch, which --status and --down never need.
    from training.import_model import import_alias

    # As `make import-model` does: the drift reference travels inside the Bento model.
    imported = import_alias(load_training_config(), load_serving_config(), alias)
    tag = imported.tag
    image = image_name(cfg.image.repository, tag)
    labels = {
        "sentiment.model_tag": tag,
        "sentiment.model_version": imported.version.version,
        "sentiment.mlflow_alias": alias,
    }
    docker = DockerCli()
    if docker.image_exists(image):
        print(f"image {image} exists: reusing it")
        return image, labels
    base_image = os.environ.get("BASE_IMAGE") or None
    if base_image and not docker.image_exists(base_image):
        print(f"building the base image {base_image}")
        run_script(["scripts/build_base_image.sh"], {"BASE_IMAGE": base_image})
    bento = build_bento(tag, base_image)
    print(f"containerizing {bento} as {image}")
    run_script(["scripts/containerize.sh", bento, image], {"BENTOML": bentoml_cli()})
    if not docker.image_exists(image):
        raise DockerError(f"containerize produced no image {image}")
    return image, labels


def run_script(cmd: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env={**os.environ, **env}, check=False)
    if done.returncode != 0:
        raise DockerError(f"{cmd[0]} failed (exit {done.returncode})")


def push_image(registry: str, image: str) -> str:
    remote = f"{registry.rstrip('/')}/{image}"
    for args in (["tag", image, remote], ["push", remote]):
        subprocess.run(["docker", *args], check=True)
    return remote


def report(result: DeployResult) -> int:
    print(result.message)
    if result.logs:
        print("--- last lines of the failed container's log ---")
        print(result.logs)
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=os.environ.get("ENV") or "staging")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--rollback", action="store_true", help="switch back to the old colour")
    action.add_argument("--status", action="store_true", help="print what runs where")
    action.add_argument(
        "--smoke", action="store_true", help="smoke-test what the stable port serves now"
    )
    action.add_argument("--down", action="store_true", help="remove the environment's containers")
    action.add_argument(
        "--monitor",
        type=int,
        metavar="ROUNDS",
        help="print status, then health and monitoring of the stable port ROUNDS times",
    )
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    action.add_argument(
        "--build-only", action="store_true", help="build (and push) the image, deploy nothing"
    )
    parser.add_argument("--image", help="deploy this image instead of building the alias's")
    parser.add_argument(
        "--canary",
        type=float,
        metavar="PCT",
        help="canary release: PCT %% of new connections to the new colour while the controller "
        "watches both (configs/deployment_config.yaml, canary:), then 100 %% or rollback",
    )
    args = parser.parse_args(argv)
    if args.canary is not None and not 0 <= args.canary < 100:
        parser.error("--canary must be a percentage in [0, 100): 0 is a plain switch")
    try:
        cfg = load_deployment_config()
        env_cfg = cfg.environment(args.env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    docker = DockerCli()
    why_not = docker.available()
    if why_not:
        print(f"error: {why_not}", file=sys.stderr)
        return 2
    bluegreen = BlueGreen(docker, args.env, env_cfg, cfg.smoke, canary_cfg=cfg.canary)
    try:
        if args.status:
            print(json.dumps(bluegreen.status(), indent=2))
            return 0
        if args.rollback:
            return report(bluegreen.rollback())
        if args.down:
            removed = bluegreen.teardown()
            print(f"removed {', '.join(removed)}" if removed else f"{args.env}: nothing runs")
            return 0
        if args.monitor is not None:
            print(json.dumps(bluegreen.status(), indent=2))
            healthy = True
            with httpx.Client(timeout=10) as client:
                for ok, line in watch(bluegreen.stable_url, args.monitor, args.interval, client):
                    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
                    healthy = healthy and ok
            return 0 if healthy else 1
        if args.smoke:
            smoke = run_smoke(bluegreen.stable_url, cfg.smoke)
            for check in smoke.checks:
                print(f"  {'PASS' if check.passed else 'FAIL'} {check.name}: {check.detail}")
            return 0 if smoke.passed else 1
        if args.image:
            image, labels = (
                args.image,
                {"sentiment.mlflow_alias": "", "sentiment.model_version": ""},
            )
        else:
            image, labels = build_image(cfg, env_cfg.alias)
        if cfg.image.registry:
            print(f"pushed {push_image(cfg.image.registry, image)}")
        if args.build_only:
            print(f"image={image}")
            return 0
        return report(bluegreen.deploy(image, labels, canary=args.canary or None))
    except (DockerError, LookupError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
