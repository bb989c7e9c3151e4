"""Where the labelled sentences come from, and the pure functions that split them."""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentiment.config import PROJECT_ROOT
from sentiment.labels import LABEL_NAMES

# Checked in this order when neither the config nor SENTIMENT_DATA_DIR names a folder.
SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"


class DataUnavailableError(RuntimeError):
    """No source of SST-2 could be reached; the message says what to set."""


@dataclass(frozen=True)
class LabelledTexts:
    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> LabelledTexts:
        return LabelledTexts([self.texts[i] for i in indices], [self.labels[i] for i in indices])


def resolve_sst2_dir(data_dir: str | Path | None) -> Path | None:
    """The folder holding `train.tsv` and `validation.tsv`, accepting the data root too.

    `SENTIMENT_DATA_DIR` may name either `.../data/sst2` or its parent `.../data`.
    """
    candidates = [Path(data_dir)] if data_dir else [SHARED_DATA_DIR]
    for base in candidates:
        for folder in (base, base / "sst2"):
            if (folder / "validation.tsv").is_file():
                return folder
    if data_dir:
        raise DataUnavailableError(
            f"no validation.tsv under {data_dir} (nor {Path(data_dir) / 'sst2'}); "
            "set SENTIMENT_DATA_DIR to a folder of SST-2 TSV files"
        )
    return None


def resolve_reviews_file(data_dir: str | Path | None = None) -> Path:
    """The Amazon review sentences used as domain-shifted traffic."""
    env_dir = data_dir or os.environ.get("SENTIMENT_DATA_DIR")
    bases = [Path(env_dir)] if env_dir else []
    bases.append(SHARED_DATA_DIR)
    for base in bases:
        for candidate in (base / "reviews" / "amazon.tsv", base.parent / "reviews" / "amazon.tsv"):
            if candidate.is_file():
                return candidate
    raise DataUnavailableError(
        "reviews/amazon.tsv not found; set SENTIMENT_DATA_DIR to the shared data folder"
    )


def read_tsv(path: str | Path) -> LabelledTexts:
    """Read a `sentence<TAB>label` file (header line, no quoting)."""
    texts: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["sentence", "label"]:
            raise ValueError(f"{path}: expected the header 'sentence<TAB>label', got {header}")
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2 or row[1].strip() not in ("0", "1"):
                raise ValueError(f"{path}:{line_no}: expected 'sentence<TAB>0|1'")
            texts.append(row[0])
            labels.append(int(row[1]))
    return LabelledTexts(texts, labels)


def load_splits(
    splits: Sequence[str], data_dir: str | Path | None, dataset: str = "glue", task: str = "sst2"
) -> dict[str, LabelledTexts]:
    """Load splits with `datasets`: from a TSV folder when one is found, else from the Hub."""
    import datasets

    folder = resolve_sst2_dir(data_dir)
    if folder is not None:
        files = {split: str(folder / f"{split}.tsv") for split in splits}
        missing = [f for f in files.values() if not Path(f).is_file()]
        if missing:
            raise DataUnavailableError(f"missing data files: {', '.join(missing)}")
        # B615: "csv" is the builder packaged with `datasets`, reading the local files above;
        # nothing comes from the Hub.
        loaded = datasets.load_dataset(  # nosec B615
            "csv", data_files=files, delimiter="\t", quoting=csv.QUOTE_NONE, keep_default_na=False
        )
    else:
        try:
            # B615: the Hub fallback, used only where no SST-2 files are found (never on these
            # machines or in CI). `datasets` runs no dataset code, so a moved ref could change
            # the data, not run anything.
            loaded = datasets.load_dataset(dataset, task)  # nosec B615
        except Exception as exc:
            raise DataUnavailableError(
                f"cannot load {dataset}/{task} from the Hugging Face Hub ({type(exc).__name__}); "
                "set SENTIMENT_DATA_DIR to a folder with train.tsv and validation.tsv"
            ) from None
    return {
        split: LabelledTexts(
            [str(t) for t in loaded[split]["sentence"]], [int(v) for v in loaded[split]["label"]]
        )
        for split in splits
    }


def holdout_split(n_rows: int, holdout_size: int, seed: int) -> tuple[list[int], list[int]]:
    """Shuffle row numbers with `seed`; return (training rows, held-out rows), each sorted."""
    if holdout_size >= n_rows:
        raise ValueError(f"hold-out of {holdout_size} leaves nothing of {n_rows} rows to train on")
    order = np.random.default_rng(seed).permutation(n_rows)
    return sorted(order[holdout_size:].tolist()), sorted(order[:holdout_size].tolist())


def sample_rows(data: LabelledTexts, limit: int | None, seed: int) -> LabelledTexts:
    """A seeded random sample of `limit` rows (all of them when limit is None or larger)."""
    if limit is None or limit >= len(data):
        return data
    order = np.random.default_rng(seed).permutation(len(data))[:limit]
    return data.subset(sorted(order.tolist()))


def rows_with_min_words(data: LabelledTexts, min_words: int) -> LabelledTexts:
    """The rows of at least `min_words` whitespace-separated words, in their order."""
    if min_words <= 1:
        return data
    return data.subset([i for i, text in enumerate(data.texts) if len(text.split()) >= min_words])


def label_counts(labels: Sequence[int]) -> Mapping[str, int]:
    return {name: sum(1 for v in labels if v == i) for i, name in enumerate(LABEL_NAMES)}


def default_data_file(data_dir: str | None) -> Path:
    folder = resolve_sst2_dir(data_dir)
    if folder is None:
        raise DataUnavailableError(
            "no SST-2 validation.tsv found; set SENTIMENT_DATA_DIR, or EVAL_DATA to a labelled file"
        )
    return folder / "validation.tsv"


def read_labelled(path: str | Path) -> LabelledTexts:
    """A `sentence,label` file: tab-separated (.tsv) or a CSV with those two columns."""
    path = Path(path)
    if not path.is_file():
        raise DataUnavailableError(f"no labelled file at {path}")
    if path.suffix.lower() != ".csv":
        return read_tsv(path)
    texts: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"sentence", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected the columns 'sentence' and 'label'")
        for line_no, row in enumerate(reader, start=2):
            value = (row["label"] or "").strip()
            if value not in ("0", "1"):
                raise ValueError(f"{path}:{line_no}: label must be 0 or 1, got {value!r}")
            texts.append(row["sentence"] or "")
            labels.append(int(value))
    return LabelledTexts(texts, labels)


def dataset_slug(path: str | Path) -> str:
    """A short name for metric keys: `sst2_validation`, `reviews_amazon`."""
    path = Path(path)
    raw = f"{path.parent.name}_{path.stem}" if path.parent.name else path.stem
    return re.sub(r"[^A-Za-z0-9_]+", "_", raw).strip("_").lower() or "data"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
