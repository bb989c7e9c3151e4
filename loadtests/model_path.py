"""Variants of the served model path side by side, on one torch thread as in a model process.

Each variant is the serving config's `model` section with some settings changed. The variants
run in turn on the same random batches of SST-2 validation sentences, batch by batch, so a
drift in this machine's speed touches them all alike. Prints texts/s per variant and batch size
and writes them to --out.

    python -m loadtests.model_path --variant auto= --variant onnx=engine=onnx --batch 1 16 64 \
        --variant padded=skip_padding=false,forward_overhead_tokens=20 \
        --variant fp32=quantize=false
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from sentiment.config import ServingModelSection


def parse_variant(spec: str, base: ServingModelSection) -> tuple[str, ServingModelSection]:
    """`name=key=value,key=value` (or `name=` for the defaults) -> the name and its settings,
    validated like the config file."""
    name, _, changes = spec.partition("=")
    if not name:
        raise ValueError(f"variant {spec!r}: expected name=key=value,...")
    updates: dict[str, Any] = {}
    for change in filter(None, changes.split(",")):
        key, sep, value = change.partition("=")
        if not sep or key not in ServingModelSection.model_fields:
            raise ValueError(f"variant {spec!r}: {change!r} is not key=value of a model setting")
        updates[key] = value
    return name, ServingModelSection.model_validate({**base.model_dump(), **updates})


def main(argv: list[str] | None = None) -> int:
    import torch

    from sentiment.config import load_serving_config
    from sentiment.data import read_tsv, resolve_sst2_dir
    from serving.classifier import Classifier, serving_options
    from serving.store import get_bento_model

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", action="append", required=True, help="name=key=value,...")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--texts", type=int, default=1024, help="texts per batch size")
    parser.add_argument("--out", default="results/model_path.json")
    args = parser.parse_args(argv)

    cfg = load_serving_config()
    try:
        variants = dict(parse_variant(spec, cfg.model) for spec in args.variant)
    except ValueError as exc:
        parser.error(" ".join(str(exc).split()))
    folder = resolve_sst2_dir(os.environ.get("SENTIMENT_DATA_DIR"))
    if folder is None:
        parser.error("no SST-2 data: set SENTIMENT_DATA_DIR")
    texts = read_tsv(folder / "validation.tsv").texts
    torch.set_num_threads(1)
    bento_model = get_bento_model(cfg.model.tag)
    classifiers = {
        name: Classifier.from_bento_model(bento_model, **serving_options(section))
        for name, section in variants.items()
    }
    rng = random.Random(0)
    report: dict[str, dict[str, float]] = {}
    for size in args.batch:
        batches = [rng.sample(texts, size) for _ in range(max(12, args.texts // size))]
        seconds = dict.fromkeys(classifiers, 0.0)
        for batch in batches:
            for name, classifier in classifiers.items():
                started = time.perf_counter()
                classifier.predict(batch, with_embeddings=True)
                seconds[name] += time.perf_counter() - started
        done = len(batches) * size
        report[str(size)] = {name: round(done / s, 1) for name, s in seconds.items()}
        print(f"batch {size}: texts/s {report[str(size)]}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"variants": args.variant, "texts_per_s": report}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
