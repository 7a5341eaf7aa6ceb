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


def test_xane3_loss_anneals_derivatives_and_fits_e0():
    gen = torch.Generator().manual_seed(1)
    energy = torch.arange(30) * 0.5  # eV above the first grid point
    y = torch.sigmoid((energy - 6.0) / 0.7).repeat(4, 1)  # steepest rise at 6 eV
    p = y + 0.05 * torch.randn(4, 30, generator=gen)
    loss = make_loss("xane3", {"d1": 1.0, "d2": 1.0, "anneal_epochs": 4}, energy_step=0.5)
    assert loss.edge_energy(y).tolist() == pytest.approx([6.0] * 4)
    mse = ((p - y) ** 2).mean()
    g1 = (torch.diff(p - y, dim=1) ** 2).mean()
    g2 = (torch.diff(p - y, n=2, dim=1) ** 2).mean()
    # validation objective: full derivative weights, no E0 term
    assert loss(p, y).item() == pytest.approx((mse + g1 + g2).item(), rel=1e-5)
    # training: epoch 0 has no derivative terms, epoch 2 half of them, epoch >= 4 all
    assert loss.train_loss(p, y, 0).item() == pytest.approx(mse.item(), rel=1e-5)
    half = (mse + 0.5 * g1 + 0.5 * g2).item()
    assert loss.train_loss({"spectrum": p, "e0": None}, y, 2).item() == pytest.approx(
        half, rel=1e-5
    )
    # an E0 head 1 eV off adds e0_weight * 1 eV
    out = {"spectrum": p, "e0": torch.full((4,), 7.0)}
    full = (mse + g1 + g2 + 0.1 * 1.0).item()
    assert loss.train_loss(out, y, 9).item() == pytest.approx(full, rel=1e-5)
    with pytest.raises(ConfigError, match="not known for 'xane3'"):
        make_loss("xane3", {"d3": 1.0})


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
