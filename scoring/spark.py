"""`python -m scoring.spark`: score a CSV, TSV or Parquet file of texts on Spark with a
registered MLflow model (`make batch-score INPUT=... OUTPUT=...`).

The model is the registry's version behind MODEL (an alias, a version number or a
`models:/` URI; default: the training config's alias), loaded on the executors through
`mlflow.pyfunc.spark_udf`: the transformers pipeline that training logged, truncating to the
max length the version was trained with, as the service does. Confidences are calibrated with
the version's temperature like the service's (for two classes the top probability p becomes
p^(1/T) / (p^(1/T) + (1 - p)^(1/T)), the softmax of the logits divided by T).

Spark runs on SPARK_MASTER (default `local[2]`); with `spark://host:7077`, YARN or Kubernetes
the same command scores at cluster scale (the executors then need this package's Python
environment and access to the MLflow tracking server). The output is Spark's: a folder of part
files, Parquet or CSV by OUTPUT's suffix, holding every input column plus `sentiment`,
`confidence` and `model_version`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiment.config import ConfigError, load_training_config
from training.registry import ModelNotRegisteredError, ModelVersion, Registry, model_uri

DEFAULT_MASTER = "local[2]"
TEXT_COLUMNS = ("sentence", "text", "review", "content")
# Texts per pipeline call on an executor (one forward pass each).
PIPELINE_BATCH_SIZE = 64


@dataclass
class ScoringOutcome:
    rows: int
    seconds: float
    model_uri: str
    model_version: str
    master: str
    output: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def file_format(path: str) -> str:
    """parquet, csv or tsv, from the suffix (a Spark output folder may end in .parquet)."""
    suffix = Path(path.rstrip("/")).suffix.lower()
    if suffix in {".parquet", ".pq"}:
        return "parquet"
    if suffix in {".csv", ".tsv"}:
        return suffix[1:]
    raise ValueError(f"{path}: use a .csv, .tsv or .parquet file")


def pick_text_column(columns: list[str], requested: str | None) -> str:
    if requested:
        if requested not in columns:
            raise ValueError(f"no column {requested!r}; the file has {columns}")
        return requested
    for name in TEXT_COLUMNS:
        if name in columns:
            return name
    raise ValueError(f"no text column among {columns}: pass --text-column")


def udf_model_config(version: ModelVersion) -> dict[str, Any]:
    """How the pipeline is called on the executors: truncated as the service truncates. MLflow
    lets a load override only the keys the model was logged with (training.train logs these)."""
    return {"truncation": True, "max_length": version.max_length, "batch_size": PIPELINE_BATCH_SIZE}


def logged_inference_config(version: ModelVersion) -> dict[str, Any] | None:
    """The pipeline call settings the version was logged with (None: an older version)."""
    from mlflow.models import get_model_info

    flavor = get_model_info(version.version_uri).flavors.get("python_function", {})
    config = flavor.get("config")  # MLmodel keeps a pyfunc model_config under `config`
    return dict(config) if config else None


def spark_session(master: str, app_name: str = "sentiment-batch-score") -> Any:
    from pyspark.sql import SparkSession

    # The executors' Python is this one (same packages, same model code).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # One torch thread per task: Spark already runs one task per core (local[N] or a cluster's
    # executor cores), and torch's own threads on top of that oversubscribe the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.executorEnv.OMP_NUM_THREADS", "1")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # Keep each Arrow batch to one pipeline-sized multiple: steady memory per executor.
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(PIPELINE_BATCH_SIZE * 32))
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )


def read_table(spark: Any, path: str) -> Any:
    kind = file_format(path)
    if kind == "parquet":
        return spark.read.parquet(path)
    reader = spark.read.option("header", "true").option("multiLine", "true")
    reader = reader.option("escape", '"')
    if kind == "tsv":
        reader = reader.option("sep", "\t").option("quote", "")
    return reader.csv(path)


def write_table(frame: Any, path: str) -> None:
    kind = file_format(path)
    writer = frame.write.mode("overwrite")
    if kind == "parquet":
        writer.parquet(path)
    else:
        writer.option("header", "true").option("sep", "\t" if kind == "tsv" else ",").csv(path)


def score_frame(spark: Any, frame: Any, text_column: str, version: ModelVersion) -> Any:
    """`frame` with sentiment, confidence (calibrated) and model_version columns added."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    model_config: dict[str, Any] | None = udf_model_config(version)
    if logged_inference_config(version) is None:
        print(
            f"warning: {version.version_uri} was logged without an inference config: its "
            "pipeline runs one text at a time without truncation (retrain to get both)",
            file=sys.stderr,
        )
        model_config = None
    predict = mlflow.pyfunc.spark_udf(
        spark,
        version.version_uri,
        result_type="label string, score double",
        env_manager="local",
        model_config=model_config,
    )
    parallelism = spark.sparkContext.defaultParallelism
    if frame.rdd.getNumPartitions() < parallelism:
        frame = frame.repartition(parallelism)
    text = F.coalesce(F.col(text_column).cast("string"), F.lit(""))
    # Texts of similar length side by side, as the service sorts a batch by token count: each
    # pipeline call pads to its longest text, so a sorted partition pads far less.
    frame = frame.sortWithinPartitions(F.length(text))
    scored = frame.withColumn("_prediction", predict(text))
    p = F.col("_prediction.score")
    inverse_t = 1.0 / version.temperature
    calibrated = F.pow(p, inverse_t) / (F.pow(p, inverse_t) + F.pow(1.0 - p, inverse_t))
    return (
        scored.withColumn("sentiment", F.lower(F.col("_prediction.label")))
        .withColumn("confidence", calibrated)
        .withColumn("model_version", F.lit(f"{version.name}/{version.version}"))
        .drop("_prediction")
    )


def batch_score(
    input_path: str,
    output_path: str,
    *,
    model: str | None = None,
    text_column: str | None = None,
    master: str | None = None,
    tracking_uri: str | None = None,
    limit: int | None = None,
) -> ScoringOutcome:
    cfg = load_training_config(env={**os.environ, "CONFIG": os.environ.get("CONFIG", "")})
    tracking_uri = tracking_uri or cfg.mlflow.tracking_uri
    uri = model_uri(model, cfg.mlflow.registered_model_name, cfg.mlflow.alias)
    registry = Registry(tracking_uri)
    version = registry.resolve(uri)
    # The executors read the model from the same tracking server.
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    master = master or os.environ.get("SPARK_MASTER") or DEFAULT_MASTER
    spark = spark_session(master)
    try:
        frame = read_table(spark, input_path)
        column = pick_text_column(frame.columns, text_column)
        if limit:
            frame = frame.limit(limit)
        scored = score_frame(spark, frame, column, version)
        started = time.perf_counter()
        write_table(scored, output_path)
        seconds = time.perf_counter() - started
        rows = read_table(spark, output_path).count()
    finally:
        spark.stop()
    return ScoringOutcome(rows, seconds, uri, version.version, master, output_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True, help="a .csv, .tsv or .parquet file or folder")
    parser.add_argument("--output", required=True, help="a .parquet, .csv or .tsv folder")
    parser.add_argument("--model", help="alias, version number or models:/ URI")
    parser.add_argument("--text-column", help=f"default: the first of {', '.join(TEXT_COLUMNS)}")
    parser.add_argument(
        "--master", help=f"Spark master (default: $SPARK_MASTER or {DEFAULT_MASTER})"
    )
    parser.add_argument("--limit", type=int, help="score only the first N rows")
    args = parser.parse_args(argv)
    try:
        outcome = batch_score(
            args.input,
            args.output,
            model=args.model,
            text_column=args.text_column,
            master=args.master,
            limit=args.limit,
        )
    except (ConfigError, ModelNotRegisteredError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"scored {outcome.rows} rows with {outcome.model_uri} (version {outcome.model_version}) "
        f"on {outcome.master} in {outcome.seconds:.1f} s: {outcome.rows_per_second:.1f} rows/s "
        f"-> {outcome.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
