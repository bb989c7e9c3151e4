"""bentofile.yaml agrees with pyproject.toml and ships everything the service imports."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def bentofile() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    return spec


def pins(requirements: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s]+)", line.strip())
        assert match, f"not an exact pin: {line!r}"
        out[match.group(1).lower().replace("_", "-")] = match.group(2)
    return out


def test_packages_are_pinned_like_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ours = pins(bentofile()["python"]["packages"])
    theirs = pins(project["dependencies"])
    assert "torch" in ours
    mismatched = {name: (v, theirs.get(name)) for name, v in ours.items() if theirs.get(name) != v}
    assert mismatched == {}


def test_service_and_model() -> None:
    spec = bentofile()
    module, _, attr = spec["service"].partition(":")
    tree = ast.parse((ROOT / f"{module}.py").read_text())
    assert attr in {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert "sentiment:latest" in spec["models"]


def test_every_local_package_the_service_imports_is_included() -> None:
    tree = ast.parse((ROOT / "service.py").read_text())
    imported = {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    local = {name for name in imported if (ROOT / name / "__init__.py").is_file()}
    assert local, "service.py imports no local package?"
    included = bentofile()["include"]
    for name in sorted(local):
        assert f"{name}/**/*.py" in included, f"{name} is not shipped in the Bento"
    assert "configs/*.yaml" in included


def test_dockerfile_template_adds_a_health_check() -> None:
    template = ROOT / bentofile()["docker"]["dockerfile_template"]
    text = template.read_text()
    assert text.startswith("{% extends bento_base_template %}")
    assert "HEALTHCHECK" in text and "/health" in text
