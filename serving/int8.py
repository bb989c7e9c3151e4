"""int8 Linear layers for the CPU path, with one activation scale per token.

PyTorch's dynamic int8 Linear (`quantize_dynamic`) picks one activation scale for the whole input
tensor, so a text's prediction depended on which texts shared its forward pass: over six random
batchings of SST-2 validation the quick model scored 0.8188-0.8280 against fp32's 0.8245, and the
two residual projections had to stay in fp32 (README, "Performance").

`Int8Linear` scales each token's activations to [-1, 1] before the same fbgemm int8 kernel and
scales the output back, so every token is quantised on its own range. A token's output from
each layer no longer depends on the rest of the batch (only float rounding elsewhere does: one
sentence of 872 over six batchings changed its label; attention sums in an order that follows
the padded width, and the next layer's rounding can magnify that, so 84 of 872 positive
probabilities moved by more than 1e-6 between one text per pass and batches of 32, at most by
0.018: `make engine-agreement`), accuracy stays within 0.11 points of fp32's, and every
Linear layer can be int8, which also removes the fp32 weight traffic that dominated small
batches.
"""

from __future__ import annotations

import torch

# fbgemm on AVX2 needs 7-bit activations: u8 x s8 pairs summed in int16 saturate otherwise.
REDUCE_RANGE = True


class Int8Linear(torch.nn.Module):
    """`nn.Linear` with int8 weights (one scale per output channel) and int8 activations (one
    scale per token), computed by fbgemm's dynamic int8 kernel."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        if linear.in_features < 2:
            raise ValueError("Int8Linear needs at least 2 input features")
        weight = linear.weight.detach().float()
        scales = (weight.abs().amax(dim=1).clamp(min=1e-8) / 127).double()
        qweight = torch.quantize_per_channel(
            weight, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8
        )
        self._packed = torch.ops.quantized.linear_prepack(qweight, None)
        self.bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self._anchor = torch.zeros(self.in_features)
        self._anchor[0], self._anchor[1] = 1.0, -1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12)
        # The kernel quantises its whole input on one range: every row scaled into [-1, 1] and
        # one extra row holding exactly -1 and 1 pin that range, whatever the batch holds.
        normalised = torch.empty(rows.shape[0] + 1, self.in_features)
        torch.div(rows, scale, out=normalised[:-1])
        normalised[-1].copy_(self._anchor)
        out = torch.ops.quantized.linear_dynamic(normalised, self._packed, REDUCE_RANGE)[:-1]
        out = out * scale if self.bias is None else torch.addcmul(self.bias, out, scale)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Replace every `nn.Linear` of `model` (in place) by an `Int8Linear`; returns `model`."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, Int8Linear(child))
    return model
