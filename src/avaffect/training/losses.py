"""CCC loss on the same estimator as :func:`avaffect.metrics.ccc` (docs/design.md §3)."""

from __future__ import annotations

import torch


def masked_ccc(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """CCC of 1-D (or any-shape, flattened together) series over steps where ``mask`` is true.

    Population moments: ``2 cov / (var_p + var_t + (mean_p - mean_t)^2)``. ``eps`` in the
    denominator keeps the gradient finite for constant series. Returns 0 when no step is valid.
    """
    m = mask.to(pred.dtype)
    n = m.sum()
    if n <= 0:
        return pred.sum() * 0.0
    target = torch.where(mask, target, torch.zeros_like(target))  # NaN labels must not reach the sums
    mp = (pred * m).sum() / n
    mt = (target * m).sum() / n
    dp = (pred - mp) * m
    dt = (target - mt) * m
    vp = (dp * dp).sum() / n
    vt = (dt * dt).sum() / n
    cov = (dp * dt).sum() / n
    return 2.0 * cov / (vp + vt + (mp - mt) ** 2 + eps)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, reduction: str = "batch",
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_k w_k (1 - CCC_k)`` over targets k for ``pred, target [B, L, K]`` and ``mask [B, L]``.

    ``reduction="batch"`` computes each CCC over every valid step of the batch (the RJA code);
    ``"window"`` computes it per window and averages over windows with at least one valid step (the
    ABAW6 code). Steps where the mask is 0 or the target is NaN never contribute.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    k = pred.shape[-1]
    valid = mask.bool()[..., None].expand_as(pred) & torch.isfinite(target)
    w = weights if weights is not None else torch.ones(k, device=pred.device, dtype=pred.dtype)
    total = pred.new_zeros(())
    for j in range(k):
        if reduction == "batch":
            c = masked_ccc(pred[..., j], target[..., j], valid[..., j])
        elif reduction == "window":
            per = [masked_ccc(pred[b, :, j], target[b, :, j], valid[b, :, j])
                   for b in range(pred.shape[0]) if valid[b, :, j].any()]
            c = torch.stack(per).mean() if per else pred.sum() * 0.0 + 1.0
        else:
            raise ValueError(f"unknown CCC loss reduction {reduction!r}; use 'batch' or 'window'")
        total = total + w[j] * (1.0 - c)
    return total


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum_k mean over valid steps of (pred_k - target_k)^2`` for ``[B, L, K]`` (mask ``[B, L]``; NaN targets
    never contribute; a target with no valid step adds 0)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    valid = mask.bool()[..., None].expand_as(pred) & torch.isfinite(target)
    diff = torch.where(valid, pred - torch.where(valid, target, torch.zeros_like(target)), torch.zeros_like(pred))
    per_target = (diff * diff).flatten(0, -2).sum(0) / valid.flatten(0, -2).sum(0).clamp(min=1)
    return per_target.sum()


def regression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "ccc",
                    reduction: str = "batch", mse_weight: float = 1.0) -> torch.Tensor:
    """The training loss ``training.loss``: ``ccc`` = :func:`ccc_loss`, ``mse`` = :func:`masked_mse` (DLSTM-ATT),
    ``ccc+mse`` = ``ccc_loss + mse_weight * masked_mse``."""
    if kind == "ccc":
        return ccc_loss(pred, target, mask, reduction)
    if kind == "mse":
        return masked_mse(pred, target, mask)
    if kind == "ccc+mse":
        return ccc_loss(pred, target, mask, reduction) + mse_weight * masked_mse(pred, target, mask)
    raise ValueError(f"unknown loss {kind!r}; use ccc, mse or ccc+mse")
