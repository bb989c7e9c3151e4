"""The architecture is checked by a tool: `lint-imports` keeps every contract in pyproject.toml,
each contract breaks when a forbidden import is added, and service.py, which grimp cannot
take as a root package, is checked here by reading its imports."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ui", "serving", "monitoring", "sentiment", "training", "evaluation", "deploy")
OFFLINE = ("training", "evaluation", "deploy", "loadtests")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_every_contract_is_kept() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


# One forbidden import per contract: (contract id, module file to edit, line to add).
BREAKS = [
    ("layers", "sentiment/data.py", "import serving.batching"),
    ("layers", "training/train.py", "import evaluation.scoring"),
    ("bento-ships-no-offline-code", "monitoring/drift.py", "import training.registry"),
    ("bento-ships-no-offline-code", "ui/charts.py", "import evaluation.report"),
    ("monitoring-not-http", "monitoring/metrics.py", "import serving.http"),
    ("evaluation-one-way", "evaluation/scoring.py", "import evaluation.report"),
    ("serving-one-way", "serving/classifier.py", "import serving.replicas"),
    ("no-cycles", "loadtests/servers.py", "import loadtests.benchmark"),
]


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and pyproject.toml, copied once: each case edits one file and restores it."""
    copy = tmp_path_factory.mktemp("architecture")
    for name in (*PACKAGES, "loadtests"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


@pytest.mark.parametrize(("contract", "module", "line"), BREAKS)
def test_a_forbidden_import_breaks_its_contract(
    tree_copy: Path, contract: str, module: str, line: str
) -> None:
    target = tree_copy / module
    original = target.read_text(encoding="utf-8")
    try:
        target.write_text(original + f"\n{line}  # noqa\n", encoding="utf-8")
        done = lint_imports(tree_copy, "--contract", contract)
    finally:
        target.write_text(original, encoding="utf-8")
    assert done.returncode == 1, done.stdout[-2000:]
    assert "BROKEN" in done.stdout
    assert lint_imports(tree_copy, "--contract", contract).returncode == 0


def test_service_imports_only_what_the_bento_ships() -> None:
    local = {m.split(".")[0] for m in imported_modules(ROOT / "service.py")} & {
        *PACKAGES,
        "loadtests",
    }
    assert local == {"ui", "serving", "monitoring", "sentiment"}


def test_nothing_imports_service() -> None:
    importers = [
        str(path.relative_to(ROOT))
        for name in (*PACKAGES, "loadtests")
        for path in (ROOT / name).rglob("*.py")
        if any(m == "service" or m.startswith("service.") for m in imported_modules(path))
    ]
    assert importers == []


def test_only_the_registry_module_builds_a_registry_client() -> None:
    users = [
        str(path.relative_to(ROOT))
        for name in (*PACKAGES, "loadtests")
        for path in (ROOT / name).rglob("*.py")
        if "MlflowClient" in path.read_text(encoding="utf-8")
    ]
    assert users == ["training/registry.py"]


def test_bentofile_includes_exactly_the_serving_side_packages() -> None:
    import yaml

    spec = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    shipped = {entry.split("/")[0] for entry in spec["include"] if entry.endswith(".py")}
    assert shipped == {"service.py", "ui", "serving", "monitoring", "sentiment"}
    assert not shipped & set(OFFLINE)
