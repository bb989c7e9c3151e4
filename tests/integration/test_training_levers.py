"""The fine-tuning loop with the CPU profiles' levers on, on a tiny slice of real SST-2: it runs
end to end with a logistic-regression head, the frozen word embeddings come out bit-identical
and the encoder's weights moved."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sentiment.config import TrainingConfig, load_training_config
from training.finetune import finetune, resolve_base_model
from training.levers import with_overrides
from training.train import prepare_data

pytestmark = pytest.mark.integration

TINY = {
    "training": {"max_train_samples": 96, "max_eval_samples": 64, "eval_batch_size": 64},
}


def quick_profile(sst2_dir: Path, **training: object) -> TrainingConfig:
    cfg = load_training_config("configs/training_quick.yaml", env={})
    return with_overrides(cfg, TINY, {"training": training, "data": {"data_dir": str(sst2_dir)}})


def test_quick_profile_levers_train_and_leave_the_embeddings_alone(sst2_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    cfg = quick_profile(sst2_dir, head_init="logistic", head_init_rows=96)
    assert cfg.training.length_grouped and cfg.training.freeze_embeddings
    train, evaluation = prepare_data(cfg)
    result = finetune(cfg, train, evaluation)

    base = AutoModelForSequenceClassification.from_pretrained(
        resolve_base_model(cfg.model.base_model), num_labels=2
    )
    before, after = base.state_dict(), result.model.state_dict()
    embeddings = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(before[embeddings], after[embeddings])
    moved = "bert.encoder.layer.5.output.dense.weight"
    assert not torch.equal(before[moved], after[moved])
    assert len(result.history) == 1 and result.best_metrics["accuracy"] > 0.5
    assert result.train_seconds > 0
