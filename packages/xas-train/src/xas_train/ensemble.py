"""Forward deep ensembles: one run config trained ``N`` times from different seeds by the
project's trainer (:func:`xas_train.trainer.train`), stored as one
:class:`xas_models.forward_ensemble.ForwardEnsemble` checkpoint whose spread is calibrated on
the validation split.

Member ``i`` trains with ``training.seed + i`` on the same training rows (or, with
``bootstrap``, on as many rows drawn with replacement, seeded by ``i``) and the same
validation split: the data are loaded once with the config's seed, so every member early-stops
on the same held-out rows and none of them saw those rows in training. After training, the
members' spread on that validation split fixes ``sigma_scale`` (the 1-sigma interval covers
68 % of the validation points); the coverage at 1 and 2 sigma and eta are then reported on the
validation and the test split. The test split is only reported, never used for a choice.

Layout of ``<output_dir>/<name>/``: ``members/member-<i>/`` (or ``bootstrap-<i>/``) are
ordinary trainer runs (resumable; a finished member is reused when the command is run again),
``model/`` the ensemble checkpoint, ``predictions/`` its test predictions and
``ensemble.json`` the :class:`EnsembleResult`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from xas_train.config import RunConfig
from xas_train.data import SplitArrays, TrainingData, load_training_data
from xas_train.errors import TrainError

Progress = Callable[[str], None]
MEMBERS_DIR = "members"
RESULT_FILE = "ensemble.json"


@dataclass
class EnsembleResult:
    """What :func:`train_ensemble` produced.

    Attributes:
        model_dir: the ensemble checkpoint folder.
        seeds: training seed of each member.
        sigma_scale: calibrated factor on the members' standard deviation.
        member_metrics: per member, element -> test metrics of that member alone.
        splits: ``val`` / ``test`` -> ``{"n_spectra", "coverage_1sigma", "coverage_2sigma",
            "<El>/eta"}`` of the ensemble (val: the calibration split).
        seconds: wall time of the whole command.
    """

    name: str
    run_dir: str
    model_dir: str
    n_members: int
    bootstrap: bool
    seeds: list[int]
    sigma_scale: float
    member_runs: list[str]
    member_metrics: list[dict[str, dict[str, float]]]
    splits: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def member_config(config: RunConfig, index: int, bootstrap: bool) -> RunConfig:
    """The run config of member ``index``: seed ``training.seed + index``, run folder
    ``<run_dir>/members/{member,bootstrap}-<index>``."""
    training = config.training.model_copy(update={"seed": config.training.seed + index})
    return config.model_copy(
        update={
            "name": f"{'bootstrap' if bootstrap else 'member'}-{index}",
            "output_dir": str(config.run_dir / MEMBERS_DIR),
            "training": training,
        }
    )


def bootstrap_rows(split: SplitArrays, seed: int) -> SplitArrays:
    """``len(split)`` rows of ``split`` drawn with replacement (numpy generator seeded by
    ``seed``)."""
    idx = np.random.default_rng(seed).integers(0, len(split), size=len(split))
    graphs = None if split.graphs is None else [split.graphs[int(i)] for i in idx]
    return SplitArrays(split.x[idx], split.y[idx], split.element[idx], split.site_ids[idx], graphs)


def _finished(run_dir: Path, config: RunConfig) -> dict[str, Any] | None:
    """The stored TrainResult of a finished run of this very config, else None."""
    marker, result = run_dir / "run.json", run_dir / "result.json"
    if not (marker.is_file() and result.is_file() and (run_dir / "model").is_dir()):
        return None
    if json.loads(marker.read_text()).get("fingerprint") != config.fingerprint():
        return None
    return json.loads(result.read_text())


def train_members(
    config: RunConfig,
    data: TrainingData,
    n_members: int,
    *,
    bootstrap: bool = False,
    fresh: bool = False,
    progress: Progress | None = print,
) -> list[dict[str, Any]]:
    """Train (or reuse finished) members with the trainer; returns their TrainResult dicts."""
    from xas_train.trainer import train

    say = progress or (lambda _m: None)
    results = []
    for i in range(n_members):
        cfg = member_config(config, i, bootstrap)
        done = None if fresh else _finished(cfg.run_dir, cfg)
        if done is not None:
            say(f"[{config.name}] member {i}: reusing finished run {cfg.run_dir}")
            results.append(done)
            continue
        member_data = replace(data, train=bootstrap_rows(data.train, i)) if bootstrap else data
        say(f"[{config.name}] member {i + 1}/{n_members}: seed {cfg.training.seed}")
        result = train(cfg, progress=progress, fresh=fresh, data=member_data)
        results.append(asdict(result))
    return results


def member_predictions(members: list[Any], split: SplitArrays) -> np.ndarray:
    """Predictions of every member for ``split``: float64 ``[M, N, K]``."""
    import torch

    from xas_train.trainer import predict_array

    cpu = torch.device("cpu")
    return np.stack([predict_array(m, split, cpu).astype(np.float64) for m in members])


def split_report(
    outputs: np.ndarray, split: SplitArrays, data: TrainingData, scale: float
) -> dict[str, float]:
    """Coverage at 1 and 2 (calibrated) sigma and per-element eta of the ensemble mean."""
    from xas_eval.metrics import eta
    from xas_models.forward_ensemble import coverage, spread

    mean, raw = spread(outputs)
    y = split.y.astype(np.float64)
    report: dict[str, float] = {
        "n_spectra": float(len(split)),
        "coverage_1sigma": round(coverage(y, mean, raw * scale, 1.0), 4),
        "coverage_2sigma": round(coverage(y, mean, raw * scale, 2.0), 4),
    }
    for el in data.elements:
        rows = split.element == el
        if rows.any():
            base = data.train_mean(el)[None, :]
            report[f"{el}/eta"] = round(eta(y[rows], mean[rows], base), 4)
    return report


def train_ensemble(
    config: RunConfig,
    n_members: int,
    *,
    bootstrap: bool = False,
    fresh: bool = False,
    progress: Progress | None = print,
) -> EnsembleResult:
    """Train ``n_members`` members of ``config``, calibrate their spread on the validation
    split and save one ensemble checkpoint in ``<run_dir>/model``.

    Raises:
        TrainError / ConfigError: a bad config or data (before any training), ``n_members`` < 1.
    """
    import xas_models as xm
    from xas_models.forward_ensemble import ForwardEnsemble, calibrate_sigma_scale, spread
    from xas_train.trainer import _evaluate_and_save

    if n_members < 1:
        raise TrainError(f"--members must be >= 1, got {n_members}")
    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    data = load_training_data(config.data, seed=config.training.seed)  # one val split for all
    runs = train_members(
        config, data, n_members, bootstrap=bootstrap, fresh=fresh, progress=progress
    )
    loaded = [xm.load_checkpoint(r["model_dir"]) for r in runs]
    members = [m for m, _ in loaded]
    arch = str(loaded[0][1].architecture)
    ensemble = ForwardEnsemble.from_members(members, member=arch)

    val_out = member_predictions(members, data.val)
    mean, raw = spread(val_out)
    ensemble.set_sigma_scale(calibrate_sigma_scale(data.val.y, mean, raw))
    scale = ensemble.sigma_scale
    splits = {"val": split_report(val_out, data.val, data, scale)}
    if data.test is not None and len(data.test):
        splits["test"] = split_report(
            member_predictions(members, data.test), data.test, data, scale
        )
    say(
        f"[{config.name}] sigma_scale {scale:.4g}; "
        + "; ".join(f"{k}: {v}" for k, v in splits.items())
    )

    seeds = [config.training.seed + i for i in range(n_members)]
    extra = {
        "ensemble": {
            "n_members": n_members,
            "seeds": seeds,
            "bootstrap": bootstrap,
            "member_best_epochs": [int(r["best_epoch"]) for r in runs],
            "calibration": "sigma_scale = 0.68 quantile of |y - mean| / std(members) over "
            "all points of the val split",
        },
        "recipe_settings": recipe_settings(config),
        "global_batch": int(runs[0]["global_batch"]),
    }
    _evaluate_and_save(config, data, ensemble, "forward_ensemble", _cpu(), None, extra)
    _add_metrics(config.run_dir / "model", ensemble, splits, runs)
    result = EnsembleResult(
        name=config.name,
        run_dir=str(config.run_dir),
        model_dir=str(config.run_dir / "model"),
        n_members=n_members,
        bootstrap=bootstrap,
        seeds=seeds,
        sigma_scale=scale,
        member_runs=[r["run_dir"] for r in runs],
        member_metrics=[r["metrics"] for r in runs],
        splits=splits,
        seconds=time.perf_counter() - t0,
    )
    from xas_data.io_utils import atomic_write_text

    atomic_write_text(config.run_dir / RESULT_FILE, result.to_json() + "\n")
    return result


def recipe_settings(config: RunConfig) -> dict[str, Any]:
    """What a model card needs to repeat the training: model params, optimiser settings and
    which split calibrates (``val``) and which only reports (``test``)."""
    t = config.training
    return {
        "model": config.model.params(),
        "training": {
            "optimizer": t.optimizer,
            "lr": t.lr,
            "batch_size": t.batch_size,
            "max_epochs": t.max_epochs,
            "patience": t.patience,
            "loss": t.loss,
        },
        "standardize_features": config.data.standardize,
        "val_split (calibration, early stopping)": config.data.val_split
        or f"holdout {config.data.holdout_fraction} of the training materials",
        "test_split (reported only)": config.data.test_split,
    }


def _cpu():
    import torch

    return torch.device("cpu")


def _add_metrics(
    model_dir: Path, ensemble: Any, splits: dict[str, dict[str, float]], runs: list[dict]
) -> None:
    """Rewrite the checkpoint with the calibration metrics added to ``metrics``: ``sigma_scale``,
    ``<split>/coverage_{1,2}sigma``, ``<El>/val_eta`` and the members' test eta."""
    import xas_models as xm

    _, meta = xm.load_checkpoint(model_dir)
    metrics = dict(meta.metrics) | {"sigma_scale": round(ensemble.sigma_scale, 6)}
    for split, rep in splits.items():
        for key, value in rep.items():
            if key in ("coverage_1sigma", "coverage_2sigma"):
                metrics[f"{split}/{key}"] = value
            elif key.endswith("/eta") and split == "val":
                metrics[f"{key.split('/')[0]}/val_eta"] = value
    for el in meta.elements:
        etas = [round(float(r["metrics"][el]["eta"]), 4) for r in runs if el in r["metrics"]]
        if etas:
            metrics[f"{el}/member_test_etas"] = etas
    xm.save_checkpoint(
        model_dir, ensemble, meta.model_copy(update={"metrics": metrics}), overwrite=True
    )


__all__ = ["EnsembleResult", "bootstrap_rows", "member_config", "train_ensemble", "train_members"]
