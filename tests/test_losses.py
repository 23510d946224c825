import numpy as np
import pytest
import torch

from avaffect import metrics
from avaffect.training.losses import ccc_loss, masked_ccc


def test_masked_ccc_matches_metric():
    rng = np.random.default_rng(0)
    y = rng.uniform(-1, 1, size=(4, 30, 2))
    p = y * 0.7 + rng.normal(scale=0.3, size=y.shape)
    mask = rng.uniform(size=(4, 30)) > 0.2
    y[0, :3, 1] = np.nan
    loss = ccc_loss(torch.tensor(p), torch.tensor(y), torch.tensor(mask), reduction="batch")
    keep = mask[..., None] & np.isfinite(y)
    expected = sum(1 - metrics.ccc(p[..., k][keep[..., k]], y[..., k][keep[..., k]]) for k in range(2))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    win = ccc_loss(torch.tensor(p), torch.tensor(y), torch.tensor(mask), reduction="window")
    expected_w = sum(np.mean([1 - metrics.ccc(p[b, :, k], y[b, :, k], mask[b]) for b in range(4)])
                     for k in range(2))
    assert win.item() == pytest.approx(expected_w, abs=1e-6)


def test_padded_steps_do_not_change_loss_and_grad_is_finite():
    rng = np.random.default_rng(1)
    y = torch.tensor(rng.uniform(-1, 1, size=(2, 20, 2)))
    p = torch.tensor(rng.normal(size=(2, 20, 2)), requires_grad=True)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 15:] = False
    l1 = ccc_loss(p, y, mask)
    y2 = y.clone()
    y2[1, 15:] = 123.0
    p2 = p.detach().clone()
    p2[1, 15:] = -50.0
    assert ccc_loss(p2, y2, mask).item() == pytest.approx(l1.item())
    l1.backward()
    assert torch.isfinite(p.grad).all() and (p.grad[1, 15:] == 0).all()
    # constant prediction: finite gradient thanks to eps
    pc = torch.zeros(1, 5, 1, requires_grad=True)
    ccc_loss(pc, torch.zeros(1, 5, 1), torch.ones(1, 5, dtype=torch.bool)).backward()
    assert torch.isfinite(pc.grad).all()
    assert masked_ccc(torch.ones(3), torch.ones(3), torch.zeros(3, dtype=torch.bool)).item() == 0.0
