"""bentofile.yaml agrees with pyproject.toml and ships everything the service imports."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]


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


def _requirement_names(dist: str) -> set[str]:
    """Non-optional requirements of an installed distribution, normalised."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        lines = requires(dist) or []
    except PackageNotFoundError:
        return set()
    return {
        re.split(r"[\s<>=!~;\[(]", line, maxsplit=1)[0].lower().replace("_", "-")
        for line in lines
        if "extra ==" not in line
    }


def test_every_third_party_module_the_bento_imports_is_installed_in_it() -> None:
    """A module imported by the shipped code but missing from the image fails only at start-up
    inside the container; catch it here."""
    import sys
    from importlib.metadata import packages_distributions

    closure = set(pins(bentofile()["python"]["packages"])) | {"bentoml"}
    todo = list(closure)
    while todo:
        for name in _requirement_names(todo.pop()) - closure:
            closure.add(name)
            todo.append(name)
    files = [ROOT / "service.py"]
    for folder in ("sentiment", "serving", "monitoring", "ui"):
        files += sorted((ROOT / folder).rglob("*.py"))
    local = {"service", "sentiment", "serving", "monitoring", "ui"}
    # Imported inside the one function that only training calls (sentiment.data.load_splits).
    build_time_only = {"datasets"}
    modules: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
    distributions = packages_distributions()
    missing = {}
    for module in sorted(modules - local - build_time_only - set(sys.stdlib_module_names)):
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not dists & closure:
            missing[module] = sorted(dists)
    assert missing == {}
