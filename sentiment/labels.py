"""The class names, in the order of the model's logits: the one definition every part uses."""

from __future__ import annotations

LABEL_NAMES: tuple[str, ...] = ("negative", "positive")
