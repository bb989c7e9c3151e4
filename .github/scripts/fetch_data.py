"""Write the data sets the project reads as TSV files (`sentence<TAB>label`) into a folder.

For CI runners that reach the Hugging Face Hub and the UCI archive (the project's own machines
use the shared copies instead): sst2/train.tsv and sst2/validation.tsv from GLUE SST-2, and
reviews/amazon.tsv from the UCI "Sentiment Labelled Sentences" set.

    python .github/scripts/fetch_data.py DEST
"""

from __future__ import annotations

import io
import sys
import urllib.request
import zipfile
from pathlib import Path

UCI_ZIP = "https://archive.ics.uci.edu/static/public/331/sentiment+labelled+sentences.zip"


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        out.write("sentence\tlabel\n")
        for text, label in rows:
            out.write(f"{' '.join(text.split())}\t{label}\n")
    print(f"wrote {path} ({len(rows)} rows)")


def main(dest: str) -> int:
    import datasets

    root = Path(dest)
    sst2 = datasets.load_dataset("glue", "sst2")
    for split in ("train", "validation"):
        rows = [(r["sentence"], int(r["label"])) for r in sst2[split]]
        write_tsv(root / "sst2" / f"{split}.tsv", rows)
    with urllib.request.urlopen(UCI_ZIP, timeout=120) as response:
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    name = next(n for n in archive.namelist() if n.endswith("amazon_cells_labelled.txt"))
    rows = []
    for line in archive.read(name).decode("utf-8").splitlines():
        text, _, label = line.rpartition("\t")
        if text and label.strip() in ("0", "1"):
            rows.append((text, int(label)))
    write_tsv(root / "reviews" / "amazon.tsv", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
