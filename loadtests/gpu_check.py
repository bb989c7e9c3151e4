"""GPU measurements on a machine with CUDA: full-profile fine-tuning and inference throughput.

Needs only torch, transformers, numpy, scipy, pydantic, PyYAML and tqdm (no MLflow, BentoML or
datasets), so it runs on a bare GPU image; it reads the SST-2 TSV files directly.
`python -m loadtests.gpu_check --data-dir ../shared/data/sst2 --out results/gpu_check.json`
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sentiment.config import load_training_config
from sentiment.data import holdout_split, read_tsv, sample_rows
from sentiment.metrics import classification_metrics
from serving.classifier import Classifier
from training.finetune import finetune, save_pretrained


def fp32_copy_of(folder: Path) -> Path:
    """A base model shipped as model.fp16.safetensors (to travel light) restored to fp32."""
    from safetensors.torch import load_file, save_file

    target = Path(tempfile.mkdtemp(prefix="base-fp32-"))
    for item in folder.iterdir():
        if item.is_file() and item.name != "model.fp16.safetensors":
            (target / item.name).write_bytes(item.read_bytes())
    state = load_file(str(folder / "model.fp16.safetensors"))
    save_file(
        {k: v.float().contiguous() for k, v in state.items()}, str(target / "model.safetensors")
    )
    return target


def throughput(classifier: Classifier, texts: list[str], batch: int) -> float:
    classifier.predict(texts[:batch])
    if classifier.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    n = 0
    for _ in range(3):
        for i in range(0, len(texts), batch):
            classifier.predict(texts[i : i + batch])
            n += len(texts[i : i + batch])
    if classifier.device.type == "cuda":
        torch.cuda.synchronize()
    return round(n / (time.perf_counter() - started), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/training_config.yaml")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--base-model", help="folder; model.fp16.safetensors is restored to fp32")
    parser.add_argument("--out", default="results/gpu_check.json")
    args = parser.parse_args()

    cfg = load_training_config(args.config, env={})
    if args.base_model:
        base = Path(args.base_model)
        if (base / "model.fp16.safetensors").is_file():
            base = fp32_copy_of(base)
        cfg.model.base_model = str(base)
    data_dir = Path(args.data_dir)
    full = read_tsv(data_dir / "train.tsv")
    rows, _ = holdout_split(len(full), cfg.data.holdout_size, cfg.training.seed)
    train = sample_rows(full.subset(rows), cfg.training.max_train_samples, 0)
    validation = read_tsv(data_dir / "validation.tsv")
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "train_sentences": len(train),
        "config": cfg.model_dump(),
    }
    result = finetune(cfg, train, validation)
    report["training"] = {
        "seconds": round(result.train_seconds, 1),
        "best_epoch": result.best_epoch,
        "validation": result.best_metrics,
        "history": [
            {"epoch": e.epoch, "seconds": round(e.seconds, 1), **e.metrics} for e in result.history
        ],
    }
    print(json.dumps(report["training"], indent=1), flush=True)

    folder = save_pretrained(result, tempfile.mkdtemp(prefix="finetuned-"))
    texts = validation.texts
    inference: dict[str, Any] = {}
    predictions: dict[str, np.ndarray] = {}
    for name, device in (("cpu_fp32", "cpu"), ("cuda", "cuda")):
        if device == "cuda" and not torch.cuda.is_available():
            continue
        classifier = Classifier(folder, max_length=cfg.model.max_length, device=device)
        preds = np.array([1 if p.label == "positive" else 0 for p in classifier.predict(texts)])
        predictions[name] = preds
        inference[name] = {
            "half_precision": classifier.half_precision,
            "accuracy": classification_metrics(validation.labels, preds.tolist())["accuracy"],
            "texts_per_s": {str(b): throughput(classifier, texts, b) for b in (1, 64, 256)}
            if device == "cuda"
            else {"64": throughput(classifier, texts[:256], 64)},
        }
    if "cuda" in predictions:
        inference["fp16_vs_fp32_agreement"] = float(
            (predictions["cuda"] == predictions["cpu_fp32"]).mean()
        )
    report["inference"] = inference
    print(json.dumps(inference, indent=1), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
