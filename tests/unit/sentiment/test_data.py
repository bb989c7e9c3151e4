from pathlib import Path

import pytest

from sentiment.data import (
    DataUnavailableError,
    LabelledTexts,
    holdout_split,
    label_counts,
    load_splits,
    read_tsv,
    resolve_sst2_dir,
    sample_rows,
)


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows), "utf-8")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_tsv(tmp_path / "train.tsv", [("good film", 1), ("bad film", 0), ('it\'s "fine"', 1)])
    write_tsv(tmp_path / "validation.tsv", [("great", 1), ("awful", 0)])
    return tmp_path


def test_read_tsv_keeps_quotes_verbatim(folder: Path) -> None:
    data = read_tsv(folder / "train.tsv")
    assert data.texts == ["good film", "bad film", 'it\'s "fine"']
    assert data.labels == [1, 0, 1]


def test_read_tsv_rejects_bad_label(tmp_path: Path) -> None:
    (tmp_path / "x.tsv").write_text("sentence\tlabel\nok\t2\n")
    with pytest.raises(ValueError, match=r"x.tsv:2"):
        read_tsv(tmp_path / "x.tsv")


def test_load_splits_from_tsv_folder_with_datasets(folder: Path) -> None:
    splits = load_splits(["train", "validation"], folder)
    assert splits["train"].texts == ["good film", "bad film", 'it\'s "fine"']
    assert splits["validation"].labels == [1, 0]


def test_data_root_is_accepted_for_sst2_dir(folder: Path) -> None:
    assert resolve_sst2_dir(folder) == folder
    nested = folder / "outer"
    (nested / "sst2").mkdir(parents=True)
    write_tsv(nested / "sst2" / "validation.tsv", [("x", 1)])
    assert resolve_sst2_dir(nested) == nested / "sst2"


def test_missing_folder_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match="SENTIMENT_DATA_DIR"):
        resolve_sst2_dir(tmp_path / "none")


def test_holdout_split_is_disjoint_complete_and_seeded() -> None:
    train, held = holdout_split(10, 3, seed=1)
    assert len(held) == 3 and len(train) == 7
    assert sorted(train + held) == list(range(10))
    assert holdout_split(10, 3, seed=1) == (train, held)
    assert holdout_split(10, 3, seed=2) != (train, held)


def test_holdout_must_leave_rows() -> None:
    with pytest.raises(ValueError, match="leaves nothing"):
        holdout_split(5, 5, seed=0)


def test_sample_rows() -> None:
    data = LabelledTexts(["a", "b", "c", "d"], [0, 1, 0, 1])
    assert sample_rows(data, None, 0) is data
    assert sample_rows(data, 10, 0) is data
    picked = sample_rows(data, 2, 0)
    assert len(picked) == 2 and set(picked.texts) <= {"a", "b", "c", "d"}
    assert label_counts([0, 1, 1]) == {"negative": 1, "positive": 2}
