"""Losses by name and the learning-rate finder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xas_train.errors import ConfigError
from xas_train.losses import make_loss
from xas_train.lr_finder import find_lr


def test_losses_match_their_formulas():
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(5, 20, generator=gen) + 0.5
    p = y + 0.1 * torch.randn(5, 20, generator=gen)
    assert make_loss("mse")(p, y).item() == pytest.approx(((p - y) ** 2).mean().item())
    rse = (((p - y) ** 2).sum(1) / (y**2).sum(1)).mean()
    assert make_loss("rse")(p, y).item() == pytest.approx(rse.item())
    d = make_loss("derivative", {"d1": 0.0, "d2": 0.0})
    assert d(p, y).item() == pytest.approx(make_loss("mse")(p, y).item())
    d1 = make_loss("derivative", {"d1": 1.0, "d2": 0.0})(p, y).item()
    expected = ((p - y) ** 2).mean() + (torch.diff(p - y, dim=1) ** 2).mean()
    assert d1 == pytest.approx(expected.item())
    # a constant offset has no derivative error
    off = make_loss("derivative", {"d1": 5.0, "d2": 5.0})(y + 0.1, y).item()
    assert off == pytest.approx(0.01, rel=1e-4)


def test_unknown_loss_and_params_are_refused():
    with pytest.raises(ConfigError, match="unknown training.loss 'mae'"):
        make_loss("mae")
    with pytest.raises(ConfigError, match="d3"):
        make_loss("derivative", {"d3": 1.0})
    with pytest.raises(ConfigError, match="takes no"):
        make_loss("mse", {"d1": 1.0})


def test_lr_finder_suggests_a_learning_rate_below_divergence():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6)).astype(np.float32)
    y = (x @ rng.normal(size=(6, 10))).astype(np.float32)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.SiLU(), torch.nn.Linear(32, 10))
    before = [p.detach().clone() for p in model.parameters()]
    result = find_lr(model, x, y, make_loss("mse"), batch_size=32)
    assert 1e-5 < result.suggestion < 0.3
    assert min(result.losses) < 0.5 * result.losses[0]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
