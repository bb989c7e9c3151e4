from pathlib import Path

import pytest

from sentiment.config import (
    PACKAGED_MINILM,
    SERVING_ENV,
    TRAINING_ENV,
    ConfigError,
    ServingConfig,
    TrainingConfig,
    apply_env_overrides,
    load_access_keys,
    load_config,
    load_serving_config,
    load_training_config,
)


def test_env_override_writes_nested_value_without_touching_the_original() -> None:
    raw = {"mlflow": {"alias": "candidate"}, "model": {"max_length": 64}}
    merged = apply_env_overrides(raw, {"MODEL_ALIAS": ("mlflow", "alias")}, {"MODEL_ALIAS": "prod"})
    assert merged["mlflow"]["alias"] == "prod"
    assert raw["mlflow"]["alias"] == "candidate"
    assert merged["model"] == {"max_length": 64}


def test_empty_env_value_is_ignored() -> None:
    merged = apply_env_overrides({}, {"X": ("a", "b")}, {"X": ""})
    assert merged == {}


def test_shipped_profiles_parse() -> None:
    full = load_training_config("configs/training_config.yaml", env={})
    quick = load_training_config("configs/training_quick.yaml", env={})
    cpu = load_training_config("configs/training_cpu.yaml", env={})
    assert full.model.base_model == PACKAGED_MINILM
    assert full.training.max_train_samples is None
    assert quick.training.max_train_samples == 10000
    assert quick.training.epochs == cpu.training.epochs == 1
    # The CPU-side levers the two CPU profiles were measured with.
    for profile in (quick, cpu):
        assert profile.training.length_grouped and profile.training.freeze_embeddings
    assert cpu.training.max_train_samples is None and cpu.data.holdout_size == 2000
    assert full.mlflow.alias == "candidate"


def test_training_env_overrides_are_typed() -> None:
    cfg = load_training_config(
        "configs/training_quick.yaml",
        env={"MAX_TRAIN_SAMPLES": "500", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5003"},
    )
    assert cfg.training.max_train_samples == 500
    assert cfg.mlflow.tracking_uri == "http://127.0.0.1:5003"


def test_config_env_var_selects_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training: {epochs: 7}\n")
    assert load_training_config(env={"CONFIG": str(path)}).training.epochs == 7


def test_serving_overrides() -> None:
    cfg = load_serving_config(
        env={
            "SENTIMENT_MODEL_TAG": "sentiment:v3-abc",
            "SENTIMENT_QUANTIZE": "false",
            "PORT": "4000",
            "SENTIMENT_WORKERS": "2",
        }
    )
    assert cfg.model.tag == "sentiment:v3-abc"
    assert cfg.model.quantize is False
    assert cfg.api.port == 4000
    assert cfg.api.workers == 2
    assert load_serving_config(env={}).model.quantize is True


def test_service_options_follow_the_serving_config() -> None:
    from serving.http import service_options

    quiet = service_options(load_serving_config(env={}))
    assert quiet["logging"] == {"access": {"enabled": False}}
    assert quiet["tracing"] == {"excluded_urls": "/predict"}
    assert quiet["workers"] == 1
    assert quiet["traffic"] == {"timeout": 60.0, "max_concurrency": 128}
    env = {"SENTIMENT_ACCESS_LOG": "true", "SENTIMENT_TRACE_PREDICT": "true"}
    loud = service_options(load_serving_config(env=env))
    assert loud["logging"] == {"access": {"enabled": True}}
    assert loud["tracing"] == {"excluded_urls": ""}


def test_unknown_key_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("training: {epochz: 3}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: training.epochz: Extra inputs"):
        load_config(TrainingConfig, path, TRAINING_ENV, env={})


def test_bad_value_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("batching: {max_batch_size: 0}\n")
    with pytest.raises(ConfigError, match=r"batching\.max_batch_size"):
        load_config(ServingConfig, path, SERVING_ENV, env={})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(ServingConfig, "nope.yaml", SERVING_ENV, env={})


def test_with_model_changes_only_the_model_settings_named() -> None:
    cfg = load_serving_config(env={})
    changed = cfg.with_model(num_threads=0, processes=0)
    assert (changed.model.num_threads, changed.model.processes) == (0, 0)
    assert changed.model.quantize == cfg.model.quantize
    assert changed.batching == cfg.batching and changed.api == cfg.api
    assert (cfg.model.num_threads, cfg.model.processes) == (1, 2)


def test_access_keys_are_off_by_default() -> None:
    keys = load_access_keys({})
    assert not keys.enabled and keys.metrics_key is None


def test_access_keys_from_the_variable_and_the_file_add_up(tmp_path: Path) -> None:
    secret_file = tmp_path / "keys"
    secret_file.write_text("# rotated 2026-11\n\n" + "f" * 16 + "\n")
    keys = load_access_keys(
        {
            "SENTIMENT_API_KEYS": "a" * 16 + " , " + "b" * 16,
            "SENTIMENT_API_KEYS_FILE": str(secret_file),
            "SENTIMENT_METRICS_KEY": "m" * 16,
        }
    )
    assert [k.get_secret_value() for k in keys.api_keys] == ["a" * 16, "b" * 16, "f" * 16]
    assert keys.metrics_key is not None and keys.metrics_key.get_secret_value() == "m" * 16
    assert "aaaa" not in repr(keys) and "mmmm" not in str(keys)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SENTIMENT_API_KEYS": "k3yZ"}, "SENTIMENT_API_KEYS: a key shorter than 16"),
        ({"SENTIMENT_METRICS_KEY": "x" * 15}, "SENTIMENT_METRICS_KEY: a key shorter than 16"),
        ({"SENTIMENT_API_KEYS": "é" * 16}, "printable ASCII"),
        ({"SENTIMENT_API_KEYS_FILE": "/nonexistent/keys"}, "cannot read the file"),
    ],
)
def test_bad_keys_stop_the_start_without_showing_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_access_keys(env)
    assert "k3yZ" not in str(info.value) and "/nonexistent" not in str(info.value)


def test_a_key_file_without_keys_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "keys"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="the file holds no key"):
        load_access_keys({"SENTIMENT_API_KEYS_FILE": str(empty)})


# The training config as the original project documents it, key for key.
ORIGINAL_TRAINING_CONFIG = """\
model:
  base_model: "distilbert-base-uncased"
  max_length: 512
  num_labels: 2

training:
  output_dir: "./models/sentiment"
  epochs: 3
  batch_size: 16
  learning_rate: 2e-5
  warmup_steps: 500
  weight_decay: 0.01

data:
  dataset: "glue"
  task: "sst2"
  train_split: "train"
  eval_splits: "validation"
"""


def test_the_original_training_config_loads_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "training_config.yaml"
    path.write_text(ORIGINAL_TRAINING_CONFIG)
    cfg = load_training_config(path, env={})
    assert cfg.data.eval_splits == ["validation"]
    assert cfg.model.base_model == "distilbert-base-uncased" and cfg.model.max_length == 512
    assert cfg.training.batch_size == 16 and cfg.training.learning_rate == 2e-5
    assert cfg.training.warmup_steps == 500


def test_original_only_keys_are_dropped_with_a_warning_and_others_still_fail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "training_config.yaml"
    path.write_text(
        ORIGINAL_TRAINING_CONFIG.replace(
            "  weight_decay: 0.01\n",
            "  weight_decay: 0.01\n  metric_for_best_model: f1\n  fp16: true\n",
        )
    )
    with caplog.at_level("WARNING"):
        cfg = load_training_config(path, env={})
    assert cfg.training.weight_decay == 0.01
    assert "training.fp16, training.metric_for_best_model ignored" in caplog.text
    path.write_text(ORIGINAL_TRAINING_CONFIG + "  shuffle_buffer: 3\n")
    with pytest.raises(ConfigError, match=r"data\.shuffle_buffer: Extra inputs are not permitted"):
        load_training_config(path, env={})


def test_the_original_variables_apply_unless_the_platforms_own_are_set() -> None:
    original = {"MODEL_NAME": "distilbert-base-uncased", "MAX_LENGTH": "256", "BATCH_SIZE": "16"}
    train = load_training_config(env=original)
    assert train.model.base_model == "distilbert-base-uncased"
    assert (train.model.max_length, train.training.batch_size) == (256, 16)
    serve = load_serving_config(env={**original, "METRICS_ENABLED": "false"})
    assert serve.batching.max_batch_size == 16 and serve.model.max_length == 256
    assert serve.api.metrics_enabled is False
    both = load_serving_config(
        env={
            "BATCH_SIZE": "16",
            "SENTIMENT_MAX_BATCH_SIZE": "8",
            "METRICS_ENABLED": "false",
            "SENTIMENT_METRICS_ENABLED": "true",
        }
    )
    assert both.batching.max_batch_size == 8 and both.api.metrics_enabled is True
    assert load_training_config(env={"MODEL_NAME": "x", "BASE_MODEL": "y"}).model.base_model == "y"
