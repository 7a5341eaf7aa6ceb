"""Learning-rate range test (Smith 2017): train a copy of the model for a few hundred steps
while the learning rate grows exponentially, and suggest a learning rate from the loss curve.

The suggestion is one tenth of the learning rate at the minimum of the smoothed loss, a
conservative rule that works well for Adam on small MLPs. The original model is not changed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from xas_train.losses import LossFn


@dataclass
class LRFinderResult:
    """``lrs`` and smoothed ``losses`` of the sweep (same length) and the suggested lr."""

    lrs: list[float]
    losses: list[float]
    suggestion: float

    def table(self, every: int = 10) -> str:
        rows = [f"{'lr':>10}  {'loss':>10}"]
        rows += [
            f"{lr:>10.3g}  {loss:>10.4g}" for lr, loss in zip(self.lrs, self.losses, strict=True)
        ][::every]
        return "\n".join(rows)


def find_lr(
    model: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    loss_fn: LossFn,
    batch_size: int,
    start_lr: float = 1e-6,
    end_lr: float = 1.0,
    n_steps: int = 120,
    seed: int = 0,
    smoothing: float = 0.9,
) -> LRFinderResult:
    """Run the range test on ``x`` [N, D] -> ``y`` [N, K]; returns the sweep and a suggestion.

    The sweep stops early once the smoothed loss exceeds 4x its minimum (divergence).
    """
    work = copy.deepcopy(model).train()
    opt = torch.optim.Adam(work.parameters(), lr=start_lr)
    gamma = (end_lr / start_lr) ** (1.0 / max(n_steps - 1, 1))
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    batch = max(2, min(batch_size, len(xt)))
    lrs: list[float] = []
    losses: list[float] = []
    avg, best = 0.0, math.inf
    lr = start_lr
    for i in range(n_steps):
        rows = torch.randperm(len(xt), generator=gen)[:batch]
        for group in opt.param_groups:
            group["lr"] = lr
        loss = loss_fn(work(xt[rows]), yt[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        avg = smoothing * avg + (1 - smoothing) * value
        smooth = avg / (1 - smoothing ** (i + 1))
        lrs.append(lr)
        losses.append(smooth)
        best = min(best, smooth)
        if smooth > 4 * best and i > 10:
            break
        lr *= gamma
    if not losses:
        return LRFinderResult([], [], start_lr)
    at_min = lrs[int(np.argmin(losses))]
    return LRFinderResult(lrs, losses, max(start_lr, at_min / 10))
