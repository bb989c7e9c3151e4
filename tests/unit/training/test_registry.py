"""training/registry.py: how MODEL= is read, and every registry call against a real MLflow
store (SQLite in a temporary folder; versions are created without weights, which the registry
never reads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.registry import ModelNotRegisteredError, ModelVersion, Registry, model_uri


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "models:/sentiment@candidate"),
        ("", "models:/sentiment@candidate"),
        ("production", "models:/sentiment@production"),
        ("3", "models:/sentiment/3"),
        ("other@champion", "models:/other@champion"),
        ("sentiment/12", "models:/sentiment/12"),
        ("models:/sentiment@production", "models:/sentiment@production"),
        ("models:/sentiment/4", "models:/sentiment/4"),
    ],
)
def test_model_uri_accepts_aliases_versions_and_uris(value: str | None, expected: str) -> None:
    assert model_uri(value, "sentiment", "candidate") == expected


@pytest.mark.parametrize("value", ["runs:/abc/model", "models:/sentiment", "a b", "models:/x/y/z"])
def test_model_uri_refuses_what_is_not_a_registry_version(value: str) -> None:
    with pytest.raises(ValueError, match="cannot read MODEL"):
        model_uri(value, "sentiment", "candidate")


# --- a real registry --------------------------------------------------------------------------


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    """Two versions of `sentiment`, the second one @candidate, each logged by its own run."""
    import mlflow

    reg = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("registry-test")
    reg.client.create_registered_model("sentiment")
    for temperature in (1.5, 0.8):
        with mlflow.start_run() as run:
            mlflow.log_metric("temperature", temperature)
            mlflow.log_metric("best_f1", 0.8)
        version = reg.client.create_model_version(
            "sentiment", f"{tmp_path}/artifacts", run_id=run.info.run_id
        )
    reg.set_alias("sentiment", "candidate", str(version.version))
    return reg


def test_resolve_by_alias_and_by_number(registry: Registry) -> None:
    by_alias = registry.resolve("models:/sentiment@candidate")
    assert (by_alias.version, by_alias.alias, by_alias.aliases) == (
        "2",
        "candidate",
        ("candidate",),
    )
    assert by_alias.version_uri == "models:/sentiment/2"
    by_number = registry.resolve("models:/sentiment/1")
    assert (by_number.version, by_number.alias, by_number.run_metrics) == ("1", None, {})
    assert by_number.label == "sentiment v1"


def test_run_metrics_only_when_asked_and_temperature_falls_back_to_them(
    registry: Registry,
) -> None:
    version = registry.resolve_alias("sentiment", "candidate", with_run_metrics=True)
    assert version.run_metrics == {"temperature": 0.8, "best_f1": 0.8}
    assert version.temperature == 0.8
    registry.set_version_tags("sentiment", "2", {"temperature": 1.25, "max_length": 64})
    tagged = registry.resolve_alias("sentiment", "candidate")
    assert (tagged.temperature, tagged.max_length) == (1.25, 64)


def test_a_missing_alias_or_version_says_how_to_get_one(registry: Registry) -> None:
    assert registry.find_alias("sentiment", "production") is None
    with pytest.raises(ModelNotRegisteredError, match="make train-quick"):
        registry.resolve("models:/sentiment@production")
    with pytest.raises(ModelNotRegisteredError, match=r"models:/sentiment/9"):
        registry.resolve("models:/sentiment/9")
    with pytest.raises(ValueError, match="not a registry URI"):
        registry.resolve("runs:/abc/model")


def test_set_alias_list_versions_and_model_tags(registry: Registry) -> None:
    registry.set_alias("sentiment", "production", "1")
    found = registry.find_alias("sentiment", "production")
    assert isinstance(found, ModelVersion) and found.version == "1"
    assert registry.list_versions("sentiment") == ["1", "2"]
    assert registry.model_tags("sentiment") == {}
    registry.set_model_tags("sentiment", {"production.history": "[]"})
    assert registry.model_tags("sentiment") == {"production.history": "[]"}


def test_downloaded_transformers_yields_weights_and_tokenizer_then_removes_them(
    registry: Registry, tmp_path: Path
) -> None:
    version = registry.resolve_alias("sentiment", "candidate")
    with (
        pytest.raises(ModelNotRegisteredError, match="holds no transformers weights"),
        registry.downloaded_transformers(version),
    ):
        pass
    (tmp_path / "artifacts" / "model").mkdir(parents=True)
    (tmp_path / "artifacts" / "model" / "config.json").write_text("{}")
    with registry.downloaded_transformers(version) as (weights, tokenizer):
        assert (weights / "config.json").read_text() == "{}"
        # No tokenizer folder: the tokenizer is read from the weights folder.
        assert tokenizer == weights
    assert not weights.exists()
    (tmp_path / "artifacts" / "components" / "tokenizer").mkdir(parents=True)
    with registry.downloaded_transformers(version) as (weights, tokenizer):
        assert (tokenizer.parts[-2:], weights.name) == (("components", "tokenizer"), "model")
