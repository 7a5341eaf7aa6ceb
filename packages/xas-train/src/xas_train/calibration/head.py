"""Layer-by-layer fine-tuning of a forward model's head on measured spectra (Lin et al.).

Only the head is trained: the layers after the structure representation (XAS block: its
linear layers, on frozen transfer features; CGXAS: the MLP head after element-mask pooling;
XANE(3): the readout MLP and the Gaussian/background output layers). Stage 1 trains the last
layer, stage 2 the last two, ... each for up to ``epochs_per_stage`` epochs; the state with the
lowest validation loss over all stages (and before the first update) is kept. The model stays
in eval mode throughout, so BatchNorm statistics and dropout are frozen: a few dozen measured
spectra cannot re-estimate them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from xas_train.calibration.data import MeasuredSet, forward_average
from xas_train.errors import TrainError


def head_groups(module: nn.Module) -> list[list[nn.Parameter]]:
    """The trainable head of ``module`` as parameter groups, input side first.

    Raises:
        TrainError: for an architecture without a known head.
    """
    name = type(module).__name__
    if name == "XASBlock":
        linears = [m for m in module.net if isinstance(m, nn.Linear)]
        return [list(m.parameters()) for m in linears]
    if name == "CGXAS":
        linears = [m for m in module.head if isinstance(m, nn.Linear)]
        return [list(m.parameters()) for m in linears]
    if name == "XANE3":
        readout = [list(m.parameters()) for m in module.readout if isinstance(m, nn.Linear)]
        last = list(module.amplitudes.parameters()) + [module.centres]
        if module.background_head is not None:
            last += list(module.background_head.parameters())
        return [*readout, last]
    raise TrainError(
        f"no calibration head is defined for {name}; calibrate an xasblock, cgxas or xane3 model"
    )


def rse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean relative squared error ``sum (y - yhat)^2 / sum y^2`` over spectra."""
    return torch.mean(((pred - target) ** 2).sum(1) / (target**2).sum(1).clamp_min(1e-12))


@dataclass
class HeadFitResult:
    """Outcome of :func:`finetune_head`: best validation RSE, where it was reached (stage 0
    = the pretrained model), and the per-epoch history (stage, epoch, train, val)."""

    best_val: float
    best_stage: int
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def finetune_head(
    module: nn.Module,
    data: MeasuredSet,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    epochs_per_stage: int = 30,
    lr: float = 1e-3,
    batch_size: int = 4,
    max_stages: int | None = None,
    seed: int = 0,
) -> HeadFitResult:
    """Fine-tune the head of ``module`` in place (see the module doc); returns the history.

    The module ends with the parameters of the best validation state.
    """
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise TrainError("calibration needs at least one training and one validation spectrum")
    groups = head_groups(module)
    n_stages = len(groups) if max_stages is None else min(max_stages, len(groups))
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    x_val, a_val = data.batch(val_rows)
    y_val = torch.from_numpy(data.y[val_rows])
    y_all = torch.from_numpy(data.y)
    gen = np.random.default_rng(seed)
    torch.manual_seed(seed)

    def val_loss() -> float:
        with torch.no_grad():
            return float(rse(forward_average(module, x_val, a_val), y_val))

    best = val_loss()
    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    result = HeadFitResult(best_val=best, best_stage=0, best_epoch=0)
    result.history.append({"stage": 0, "epoch": 0, "train": float("nan"), "val": best})
    batches = {}
    for stage in range(1, n_stages + 1):
        params = [p for g in groups[-stage:] for p in g]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=lr)
        for epoch in range(1, epochs_per_stage + 1):
            order = gen.permutation(train_rows)
            total = 0.0
            for i in range(0, len(order), batch_size):
                rows = order[i : i + batch_size]
                key = tuple(int(r) for r in rows)
                if key not in batches:
                    batches[key] = data.batch(rows)
                x, a = batches[key]
                loss = rse(forward_average(module, x, a), y_all[rows])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(rows)
            v = val_loss()
            result.history.append(
                {"stage": stage, "epoch": epoch, "train": total / len(order), "val": v}
            )
            if v < best:
                best = v
                best_state = {k: t.detach().clone() for k, t in module.state_dict().items()}
                result.best_val, result.best_stage, result.best_epoch = v, stage, epoch
    module.load_state_dict(best_state)
    for p in module.parameters():
        p.requires_grad_(True)
    return result


@torch.no_grad()
def predict_measured(module: nn.Module, data: MeasuredSet, rows: np.ndarray) -> np.ndarray:
    """Site-averaged predictions ``[len(rows), K]`` of ``module`` (eval mode, no grad)."""
    was = module.training
    module.eval()
    x, a = data.batch(rows)
    out = forward_average(module, x, a).double().numpy()
    module.train(was)
    return out
