"""Training and evaluation of a rank-constrained adversarial autoencoder: ``xas-train rankaae``.

One run, for the simulated spectra of one element in a store (:mod:`xas_eval.inverse_data`:
post-edge-normalised spectra on the element's energy grid, descriptor labels, material
splits):

1. trains a :class:`~xas_models.rankaae.RankAAE` with
   :func:`~xas_models.rankaae.train_step` (reconstruction + pairwise rank loss aligning latent
   dims with descriptors, e.g. ``aligned: {OS: 0, CN: 1}``, + adversarial prior matching; two
   Adam optimizers), early-stopped on the validation objective
   ``w_rec * reconstruction + w_rank * rank``, keeping the best state;
2. fits a :class:`~xas_models.rankaae.LatentRegressorEnsemble` (``regressor.n_members``
   MLPs) from the training latents to every configured descriptor; its spread is the
   uncertainty;
3. evaluates on the test split: reconstruction MSE, the Spearman correlation of each aligned
   latent dim with its descriptor (trained vs the untrained initial model), accuracy / F1 of
   the regressed value rounded to the nearest training class, MAE and the 1-sigma coverage
   of the ensemble std, against random-forest baselines on the same spectra (a classifier
   for accuracy / F1, a regressor for MAE and the coverage of its per-tree spread);
4. with ``measured:`` (a store of ingested ``EXP`` spectra), maps the measured standards of
   the element onto the simulation domain with :func:`xas_models.sdm.sdm_map` (fitted on the
   training spectra), and predicts their descriptors raw and mapped, against the known OS of
   the formula (:func:`xas_eval.oxidation.known_oxidation_state`) and the descriptors of the
   linked structure;
5. writes ``report.json``, ``report.md``, plots, an MLflow run and the checkpoint ``model/``
   (one :class:`~xas_models.rankaae.RankAAEDescriber`, ``featurizer: spectrum``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from xas_train.errors import TrainError

MODEL_LABEL = "RankAAE + latent ensemble"
RF_LABEL = "RF"
TAIL = 20
"""Grid points averaged for the post-edge level (same as :mod:`xas_eval.inverse_data`)."""


class RegressorSettings(BaseModel):
    """The latent regressor ensemble (:class:`~xas_models.rankaae.LatentRegressorEnsemble`)."""

    model_config = ConfigDict(extra="forbid")

    n_members: int = Field(default=5, ge=2)
    hidden: list[int] = Field(default_factory=lambda: [32])
    steps: int = Field(default=500, gt=0)
    lr: float = Field(default=1e-2, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    bootstrap: bool = True


class SDMSettings(BaseModel):
    """Spectral domain mapping of the measured spectra (:func:`xas_models.sdm.sdm_map`)."""

    model_config = ConfigDict(extra="forbid")

    n_clusters: int = Field(default=4, ge=1)
    n_restarts: int = Field(default=10, ge=1)
    closeness: float = Field(default=0.01, ge=0)


class RankAAERunConfig(BaseModel):
    """A ``rankaae`` run (YAML). Unknown keys are refused.

    Attributes:
        dataset / fidelity / element: the simulated spectra (``default`` = shipped store).
        descriptors: descriptors regressed from the latent space (and scored).
        aligned: descriptor -> latent dim ordered like it by the rank loss.
        model: further :class:`~xas_models.rankaae.RankAAEConfig` keys (``input_dim`` comes
            from the data, ``aligned`` from the top-level key).
        weights: loss weights (``reconstruction``, ``rank``, ``adversarial``).
        lr / disc_lr / batch_size / max_epochs / patience: autoencoder training.
        measured: store of measured ``EXP`` spectra (None = skip the standards).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="rankaae", pattern=r"^[A-Za-z0-9_.-]+$")
    dataset: str = "default"
    fidelity: str = "FEFF-fast"
    element: str = "Cu"
    descriptors: list[str] = Field(default_factory=lambda: ["OS", "CN"], min_length=1)
    aligned: dict[str, int] = Field(default_factory=lambda: {"OS": 0, "CN": 1})
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str = "test"
    holdout_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    model: dict[str, Any] = Field(default_factory=dict)
    weights: dict[str, float] = Field(default_factory=dict)
    lr: float = Field(default=1e-3, gt=0)
    disc_lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=64, ge=2)
    max_epochs: int = Field(default=100, gt=0)
    patience: int = Field(default=15, gt=0)
    seed: int = 0
    regressor: RegressorSettings = Field(default_factory=RegressorSettings)
    rf_estimators: int = Field(default=100, ge=1)
    measured: str | None = None
    sdm: SDMSettings = Field(default_factory=SDMSettings)
    output_dir: str = "runs/rankaae"
    tracking_uri: str | None = None
    experiment: str = "xas-rankaae"
    mlflow: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> RankAAERunConfig:
        from xas_models.rankaae import DEFAULT_WEIGHTS, RankAAEConfig

        if not self.aligned:
            raise ValueError(
                "aligned is empty; name at least one descriptor and its latent dim, e.g. "
                "aligned: {OS: 0, CN: 1}"
            )
        if len(set(self.descriptors)) != len(self.descriptors):
            raise ValueError(f"descriptors {self.descriptors} name a descriptor twice")
        for key in ("input_dim", "aligned"):
            if key in self.model:
                raise ValueError(
                    f"model.{key} is set by the run (input_dim from the data, aligned from the "
                    f"top-level 'aligned' key); remove model.{key}"
                )
        bad = sorted(set(self.weights) - set(DEFAULT_WEIGHTS))
        if bad:
            raise ValueError(f"unknown loss weight(s) {bad}; use {sorted(DEFAULT_WEIGHTS)}")
        try:
            RankAAEConfig.model_validate({**self.model, "input_dim": 2, "aligned": self.aligned})
        except ValidationError as exc:
            msgs = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'model'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"model / aligned: {msgs}") from None
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    @property
    def label_names(self) -> list[str]:
        """Descriptors to load: the regressed ones, then aligned ones not among them."""
        return list(dict.fromkeys([*self.descriptors, *self.aligned]))


def load_rankaae_config(path: str | Path, overrides: list[str] | None = None) -> RankAAERunConfig:
    """Read and validate a rankaae-run YAML (dotted ``key=value`` overrides allowed)."""
    from xas_train.config import read_yaml_config

    return parse_rankaae_config(read_yaml_config(path, overrides, "rankaae-run"), str(path))


def parse_rankaae_config(data: dict[str, Any], source: str = "<dict>") -> RankAAERunConfig:
    """Validate a rankaae-run config dict; ConfigError naming every bad key."""
    from xas_train.config import validate_config

    return validate_config(RankAAERunConfig, data, "rankaae", source)


# ----------------------------------------------------------------------------- data


def _load_splits(cfg: RankAAERunConfig):
    """``(data, train, val, test)``; ``val`` is held out of train when ``val_split`` is None."""
    from xas_eval.inverse_data import load_inverse_data

    wanted = [cfg.train_split, cfg.test_split] + ([cfg.val_split] if cfg.val_split else [])
    splits = list(dict.fromkeys(wanted))
    try:
        data = load_inverse_data(
            cfg.dataset, cfg.fidelity, [cfg.element], cfg.label_names, splits=splits, tail=TAIL
        )
    except ValueError as exc:
        raise TrainError(f"{exc} (config keys: dataset, fidelity, element, descriptors)") from None
    train, test = data[cfg.train_split], data[cfg.test_split]
    if cfg.val_split:
        val = data[cfg.val_split]
    else:  # hold out whole training materials for early stopping
        from xas_train.inverse import holdout_split

        train, val = holdout_split(train, cfg.holdout_fraction, cfg.seed)
    _check_labels(cfg, train)
    return data, train, val, test


def _check_labels(cfg: RankAAERunConfig, train) -> None:
    """TrainError when a descriptor cannot be learned from the training labels."""
    for name in cfg.label_names:
        y = train.labels[name]
        finite = y[np.isfinite(y)]
        if finite.size == 0:
            raise TrainError(
                f"descriptor {name!r} has no label in the {cfg.element} training spectra; "
                "remove it from descriptors/aligned"
            )
        if name in cfg.aligned and np.unique(finite).size < 2:
            raise TrainError(
                f"aligned descriptor {name!r} takes the single value {finite[0]:g} in the "
                f"{cfg.element} training spectra, so there is nothing to rank; remove it from "
                "aligned"
            )
    if len(train) < 2:
        raise TrainError(f"only {len(train)} {cfg.element} training spectra; use more data")


def _check_measured(cfg: RankAAERunConfig) -> None:
    """Fail before training when ``measured`` lacks EXP spectra of the element."""
    if cfg.measured is None:
        return
    from xas_data.store import XASDataset

    try:
        groups = XASDataset.open(cfg.measured).groups()
    except Exception as exc:
        raise TrainError(
            f"cannot open the measured store {cfg.measured!r} ({exc}); ingest measured spectra "
            "with xas-data ingest-measured or set measured: null"
        ) from None
    if (cfg.element, "EXP") not in groups:
        have = sorted(e for e, f in groups if f == "EXP")
        raise TrainError(
            f"{cfg.measured} holds no EXP spectra of {cfg.element} (EXP elements: {have}); "
            "ingest them, choose one of those elements, or set measured: null"
        )


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _labels(split, names) -> dict[str, torch.Tensor]:
    return {n: _tensor(split.labels[n]) for n in names}


# ----------------------------------------------------------------------------- training


def _objective(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> float:
    """Early-stopping objective ``w_rec * reconstruction + w_rank * rank``."""
    return float(
        weights["reconstruction"] * losses["reconstruction"] + weights["rank"] * losses["rank"]
    )


def train_autoencoder(
    model,
    train,
    val,
    cfg: RankAAERunConfig,
    progress: Callable[[str], None],
) -> tuple[Any, dict[str, Any]]:
    """Train ``model`` (a RankAAE) on ``train`` with early stopping on ``val``.

    Mini-batches of ``batch_size`` spectra ``[B, K]`` go through
    :func:`~xas_models.rankaae.train_step`; after every epoch the validation objective
    (full batch) decides early stopping. Returns the model at its best epoch (eval mode) and
    ``{"best_epoch", "best_val_objective", "epochs", "history"}``.
    """
    from xas_models.rankaae import DEFAULT_WEIGHTS, rankaae_losses, train_step

    weights = {**DEFAULT_WEIGHTS, **cfg.weights}
    aligned = list(cfg.aligned)
    x, y = _tensor(train.spectra), _labels(train, aligned)
    xv, yv = _tensor(val.spectra), _labels(val, aligned)
    opt_ae = torch.optim.Adam(
        model.autoencoder_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    opt_disc = torch.optim.Adam(model.discriminator_parameters(), lr=cfg.disc_lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    best, best_state, best_epoch, bad = math.inf, None, 0, 0
    history: list[dict[str, float]] = []
    n = len(x)
    for epoch in range(1, cfg.max_epochs + 1):
        perm = rng.permutation(n)
        sums: dict[str, float] = {}
        batches = 0
        for i in range(0, n, cfg.batch_size):
            rows = torch.from_numpy(perm[i : i + cfg.batch_size])
            if len(rows) < 2 and batches:  # a single spectrum has no pair to rank
                continue
            out = train_step(
                model, opt_ae, opt_disc, x[rows], {k: v[rows] for k, v in y.items()},
                weights, generator=gen,
            )  # fmt: skip
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v
            batches += 1
        model.eval()
        with torch.no_grad():
            val_losses = rankaae_losses(
                model, xv, yv, generator=torch.Generator().manual_seed(cfg.seed)
            )
        objective = _objective(val_losses, weights)
        row = {"epoch": epoch, **{f"train_{k}": v / batches for k, v in sums.items()}}
        row.update(
            val_reconstruction=float(val_losses["reconstruction"]),
            val_rank=float(val_losses["rank"]),
            val_objective=objective,
        )
        history.append(row)
        if objective < best - 1e-7:
            best, best_epoch, bad = objective, epoch, 0
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        else:
            bad += 1
        if bad >= cfg.patience:
            break
    if best_state is None:
        raise TrainError(
            "the validation objective was never finite; lower lr or check the spectra for NaN"
        )
    model.load_state_dict(best_state)
    progress(
        f"[{cfg.name}] autoencoder: best val objective {best:.5f} at epoch {best_epoch} "
        f"of {len(history)}"
    )
    info = {
        "best_epoch": best_epoch,
        "best_val_objective": best,
        "epochs": len(history),
        "history": history,
    }
    return model.eval(), info


def fit_regressor(model, train, cfg: RankAAERunConfig):
    """A :class:`~xas_models.rankaae.LatentRegressorEnsemble` fitted on the training latents
    ``[N, n_latent]`` -> descriptors ``[N, len(cfg.descriptors)]`` (NaN labels ignored)."""
    from xas_models.rankaae import LatentRegressorEnsemble

    r = cfg.regressor
    with torch.no_grad():
        z = model.encode(_tensor(train.spectra))
    y = np.stack([train.labels[n] for n in cfg.descriptors], axis=1)
    ensemble = LatentRegressorEnsemble(
        r.n_members, model.config.n_latent, len(cfg.descriptors), tuple(r.hidden)
    )
    history = ensemble.fit(
        z, y, steps=r.steps, lr=r.lr, weight_decay=r.weight_decay,
        bootstrap=r.bootstrap, seed=cfg.seed,
    )  # fmt: skip
    return ensemble, {"final_loss": history[-1], "first_loss": history[0]}


# ----------------------------------------------------------------------------- evaluation


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of ``a [N]`` and ``b [N]`` over the pairs where both are
    finite (ties get average ranks); NaN with fewer than 3 pairs or a constant side."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    return float(spearmanr(a[ok], b[ok]).statistic)


def alignment_scores(z: np.ndarray, labels: dict[str, np.ndarray], aligned: dict[str, int]):
    """Spearman of latent dim ``aligned[name]`` of ``z [N, n_latent]`` with each descriptor."""
    return {name: spearman(z[:, dim], labels[name]) for name, dim in aligned.items()}


def descriptor_rows(
    label: str,
    y: dict[str, np.ndarray],
    value: dict[str, np.ndarray],
    kinds: dict[str, str],
    classes: dict[str, list[float]],
    std: dict[str, np.ndarray] | None = None,
    hard: dict[str, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """One score row per descriptor for a predictor named ``label``.

    ``value`` [N] is the point prediction (MAE, R^2); for a classification descriptor the
    class prediction ``hard`` [N] (default: ``value`` rounded to the nearest training class)
    gives accuracy and F1; ``std`` [N] gives the 1-sigma coverage of ``value``.
    """
    from xas_eval.inverse_metrics import (
        classification_scores,
        interval_coverage,
        regression_scores,
    )
    from xas_models.rankaae import nearest_class

    rows = []
    for name, truth in y.items():
        row: dict[str, Any] = {"model": label, "descriptor": name, "kind": kinds[name]}
        reg = regression_scores(truth, value[name])
        row.update(n=reg["n"], mae=reg["mae"], r2=reg["r2"])
        if kinds[name] == "classification":
            cls = hard[name] if hard and name in hard else nearest_class(value[name], classes[name])
            c = classification_scores(truth, cls)
            row.update(accuracy=c["accuracy"], f1_macro=c["f1_macro"], f1_weighted=c["f1_weighted"])
        row["coverage_1sigma"] = (
            interval_coverage(truth, value[name], std[name]) if std and name in std else math.nan
        )
        rows.append(row)
    return rows


def _describer_predict(describer, spectra: np.ndarray) -> tuple[dict, dict]:
    out = describer.predict(_tensor(spectra))
    return (
        {k: v["value"].numpy().astype(np.float64) for k, v in out.items()},
        {k: v["std"].numpy().astype(np.float64) for k, v in out.items()},
    )


def _baseline_rows(cfg, train, test, kinds, classes) -> list[dict[str, Any]]:
    """Random forests on the same spectra: a classifier per classification descriptor
    (accuracy, F1, MAE of the class) and a regressor per descriptor (MAE, coverage of the
    per-tree spread), plus the majority / mean prediction."""
    from xas_eval.inverse_baselines import TreeBaseline, majority_baseline

    names = cfg.descriptors
    y_train = {n: train.labels[n] for n in names}
    y_test = {n: test.labels[n] for n in names}
    clf = TreeBaseline("rf", seed=cfg.seed, n_estimators=cfg.rf_estimators)
    clf.fit(train.spectra, y_train, kinds)
    pred = clf.predict(test.spectra)
    rows = descriptor_rows(f"{RF_LABEL} (classifier)", y_test, pred, kinds, classes, hard=pred)
    reg_kinds = dict.fromkeys(names, "regression")
    reg = TreeBaseline("rf", seed=cfg.seed, n_estimators=cfg.rf_estimators)
    reg.fit(train.spectra, y_train, reg_kinds)
    rows += descriptor_rows(
        f"{RF_LABEL} (regressor)", y_test, reg.predict(test.spectra), kinds, classes,
        std=reg.predict_std(test.spectra),
    )  # fmt: skip
    majority = majority_baseline(y_train, kinds, len(test))
    rows += descriptor_rows("majority / mean", y_test, majority, kinds, classes, hard=majority)
    return rows


def _reconstruction_mse(model, spectra: np.ndarray) -> float:
    x = _tensor(spectra)
    with torch.no_grad():
        return float(torch.mean((model(x)[0] - x) ** 2))


# ----------------------------------------------------------------------------- measured


def measured_standards(
    describer, sim_spectra: np.ndarray, energy: np.ndarray, cfg: RankAAERunConfig, classes
) -> dict[str, Any]:
    """Descriptors of the measured standards of ``cfg.element`` raw and after SDM.

    SDM is fitted on ``sim_spectra`` ``[Ns, K]`` (post-edge-normalised training spectra on
    ``energy``, eV). Returns ``rows`` (per spectrum: known values, predicted mean / std /
    nearest class raw and SDM), ``summary`` (per descriptor: accuracy over the spectra whose
    known value is a training class, MAE over those with a known value, mean prediction),
    ``latent`` (``raw`` / ``sdm`` ``[Nm, n_latent]``) and ``sdm`` diagnostics.
    """
    from xas_eval.measured_descriptors import load_standards
    from xas_models.rankaae import nearest_class
    from xas_models.sdm import sdm_map

    try:
        spectra, rows = load_standards(cfg.measured, cfg.element, energy, cfg.descriptors, TAIL)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    s = cfg.sdm
    result = sdm_map(
        sim_spectra.astype(np.float64), spectra, n_clusters=s.n_clusters,
        n_restarts=s.n_restarts, closeness=s.closeness, seed=cfg.seed,
    )  # fmt: skip
    domains = {"raw": spectra, "sdm": result.mapped}
    latent = {}
    for key, x in domains.items():
        value, std = _describer_predict(describer, x)
        latent[key] = describer.encode(_tensor(x)).numpy()
        for name in cfg.descriptors:
            hard = nearest_class(value[name], classes[name]) if name in classes else None
            for i, row in enumerate(rows):
                row[f"{name}_{key}"] = float(value[name][i])
                row[f"{name}_{key}_std"] = float(std[name][i])
                if hard is not None:
                    row[f"{name}_{key}_class"] = float(hard[i])
    return {
        "rows": rows,
        "summary": _measured_summary(rows, cfg.descriptors, classes),
        "latent": latent,
        "sdm": {
            "n_clusters": s.n_clusters,
            "mean_reconstruction_error": float(np.mean(result.reconstruction_error)),
            "permutation_consistent": bool(result.permutation_consistent),
        },
        "n": len(rows),
    }


def _measured_summary(rows, descriptors, classes) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in descriptors:
        known = [r for r in rows if r.get(f"known_{name}") is not None]
        scorable = [r for r in known if name in classes and r[f"known_{name}"] in classes[name]]
        entry: dict[str, Any] = {"n": len(rows), "n_known": len(known), "n_scorable": len(scorable)}
        for key in ("raw", "sdm"):
            entry[f"mean_{key}"] = float(np.mean([r[f"{name}_{key}"] for r in rows]))
            if scorable:
                entry[f"accuracy_{key}"] = float(
                    np.mean([r[f"{name}_{key}_class"] == r[f"known_{name}"] for r in scorable])
                )
            if known:
                entry[f"mae_{key}"] = float(
                    np.mean([abs(r[f"{name}_{key}"] - r[f"known_{name}"]) for r in known])
                )
                entry[f"coverage_{key}"] = float(
                    np.mean(
                        [
                            abs(r[f"{name}_{key}"] - r[f"known_{name}"]) <= r[f"{name}_{key}_std"]
                            for r in known
                        ]
                    )
                )
        if known:
            entry["mean_known"] = float(np.mean([r[f"known_{name}"] for r in known]))
        summary[name] = entry
    return summary


# ----------------------------------------------------------------------------- outputs


def render_report(report: dict[str, Any]) -> str:
    """Markdown: data, alignment, test scores vs baselines, measured standards."""
    from xas_eval.inverse_metrics import format_cell, render_table

    n = report["n"]
    lines = [
        f"# RankAAE run `{report['name']}`: {report['element']} {report['fidelity']}",
        "",
        f"{n['train']} train / {n['val']} val / {n['test']} test spectra "
        f"({report['dataset']}); best epoch {report['training']['best_epoch']} of "
        f"{report['training']['epochs']}; {report['seconds']:.0f} s.",
        "",
        "## Latent alignment (test split, Spearman)",
        "",
        "| descriptor | latent dim | trained | untrained |",
        "|---|---:|---:|---:|",
    ]
    for name, dim in report["aligned"].items():
        lines.append(
            f"| {name} | {dim} | {format_cell(report['spearman'][name])} | "
            f"{format_cell(report['spearman_untrained'][name])} |"
        )
    rec = report["reconstruction_mse"]
    lines += [
        "",
        f"Reconstruction MSE (post-edge-normalised units): test {rec['test']:.3g}, "
        f"val {rec['val']:.3g}, train {rec['train']:.3g}; predicting the mean training "
        f"spectrum gives {rec['test_mean_spectrum']:.3g} on the test split.",
        "",
        "## Descriptors on the test split",
        "",
        render_table(
            report["scores"],
            ["model", "descriptor", "n", "accuracy", "f1_macro", "mae", "r2", "coverage_1sigma"],
        ),
    ]
    if report.get("std_scale"):
        raw = report.get("coverage_1sigma_raw", {})
        lines += [
            "",
            "Ensemble spread rescaled on the val split (68 % 1-sigma coverage there): "
            + ", ".join(
                f"{k} x{v:.2f} (test coverage before: {format_cell(raw.get(k, math.nan))})"
                for k, v in report["std_scale"].items()
            )
            + ".",
        ]
    if report.get("measured"):
        lines += ["", _measured_markdown(report["measured"], report["descriptors"])]
    return "\n".join(lines) + "\n"


def _measured_markdown(measured: dict[str, Any], descriptors: list[str]) -> str:
    from xas_eval.inverse_metrics import format_cell

    head = ["sample"]
    for name in descriptors:
        head += [f"known {name}", f"{name} raw", f"{name} SDM"]
    lines = [
        "## Measured standards (raw vs SDM; mean +- ensemble std)",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    for r in measured["rows"]:
        cells = [r["sample"]]
        for name in descriptors:
            cells.append(format_cell(r.get(f"known_{name}"), 0))
            for key in ("raw", "sdm"):
                cells.append(f"{r[f'{name}_{key}']:.2f} +- {r[f'{name}_{key}_std']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| descriptor | n known | n scorable | accuracy raw | accuracy SDM | MAE raw | "
        "MAE SDM | mean pred raw | mean pred SDM | mean known |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in measured["summary"].items():
        lines.append(
            f"| {name} | {s['n_known']} | {s['n_scorable']} | {format_cell(s.get('accuracy_raw'), 2)} | "
            f"{format_cell(s.get('accuracy_sdm'), 2)} | {format_cell(s.get('mae_raw'), 2)} | "
            f"{format_cell(s.get('mae_sdm'), 2)} | {format_cell(s['mean_raw'], 2)} | "
            f"{format_cell(s['mean_sdm'], 2)} | {format_cell(s.get('mean_known'), 2)} |"
        )
    sdm = measured["sdm"]
    lines += [
        "",
        f"SDM: {sdm['n_clusters']} clusters, mean reconstruction RMS "
        f"{sdm['mean_reconstruction_error']:.3g}, restarts consistent: "
        f"{sdm['permutation_consistent']}. Accuracy counts the spectra whose known value is a "
        "training class (prediction rounded to the nearest class).",
    ]
    return "\n".join(lines)


def _plane_dims(aligned: dict[str, int], n_latent: int) -> tuple[int, int]:
    """The latent plane of the measured-standards plot: the first two aligned dims, else
    the aligned dim and the first other one (the same dim twice for a 1-D latent space)."""
    dims = list(aligned.values())[:2]
    others = [d for d in range(n_latent) if d not in dims]
    dims += (others or dims)[: 2 - len(dims)]
    return dims[0], dims[1]


def _plots(run_dir: Path, cfg, z_train, z_test, train, test, pred, std, measured, history):
    from xas_eval.inverse_plots import plot_parity
    from xas_eval.latent_plots import plot_latent_alignment, plot_latent_measured, plot_losses

    colour = "OS" if "OS" in cfg.label_names else next(iter(cfg.aligned))
    plot_latent_alignment(
        z_test, {n: test.labels[n] for n in cfg.aligned}, cfg.aligned,
        test.labels[colour], run_dir / "latent-alignment.png",
        title=f"{cfg.element} test split", colour_label=colour,
        background=(z_train, {n: train.labels[n] for n in cfg.aligned}),
    )  # fmt: skip
    for name in cfg.descriptors:
        y = test.labels[name]
        ok = np.isfinite(y)
        if ok.any():
            plot_parity(
                y[ok], pred[name][ok], run_dir / f"parity-{name}.png",
                f"{MODEL_LABEL}, {name} (test)", std=std[name][ok],
            )  # fmt: skip
    plot_losses(history, run_dir / "losses.png", title=f"{cfg.name}")
    if measured:
        dims = _plane_dims(cfg.aligned, z_train.shape[1])
        names = {d: n for n, d in cfg.aligned.items()}
        plot_latent_measured(
            z_train, train.labels[colour], measured["latent"]["raw"],
            measured["latent"]["sdm"], [r["sample"] for r in measured["rows"]],
            run_dir / "latent-measured.png", dims=(dims[0], dims[1]),
            axis_labels=tuple(f"z{d}" + (f" ({names[d]})" if d in names else "") for d in dims),
            colour_label=colour, title=f"{cfg.element} measured standards, raw vs SDM",
        )  # fmt: skip


def _save_model(run_dir, describer, cfg, data, train, val, test, metrics) -> Path:
    from xas_models.checkpoint import CheckpointMeta, EnergyGrid, FeaturizerInfo, save_checkpoint
    from xas_models.inverse import INVERSE_FEATURIZER

    energy = np.asarray(train.energy[cfg.element], dtype=np.float64)
    grid = EnergyGrid(
        start=float(energy[0]), step=float(energy[1] - energy[0]), n_points=int(energy.size)
    )
    meta = CheckpointMeta(
        energy_grid=grid,
        elements=[cfg.element],
        fidelity=cfg.fidelity,
        featurizer=FeaturizerInfo(name=INVERSE_FEATURIZER, version="post-edge-normalised", key=""),
        training_data={
            "task": "inverse",
            "model": "rankaae",
            "dataset": data.dataset_name or cfg.dataset,
            "license": data.license,
            "descriptor_feature": data.feature_key,
            "normalisation": {"kind": "post-edge level", "tail": TAIL},
            "aligned": dict(cfg.aligned),
            "n_train": len(train),
            "n_val": len(val),
            "n_test": len(test),
        },
        metrics={k: round(v, 6) for k, v in metrics.items() if math.isfinite(v)},
    )
    path = run_dir / "model"
    save_checkpoint(path, describer, meta, overwrite=True)
    return path


def _headline_metrics(report: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {f"spearman_{k}": v for k, v in report["spearman"].items()}
    out["reconstruction_mse_test"] = report["reconstruction_mse"]["test"]
    for r in report["scores"]:
        if r["model"] != MODEL_LABEL:
            continue
        for key in ("accuracy", "f1_macro", "mae", "coverage_1sigma"):
            if key in r:
                out[f"{r['descriptor']}_{key}"] = float(r[key])
    for name, s in (report.get("measured") or {}).get("summary", {}).items():
        for key in ("accuracy_raw", "accuracy_sdm", "mean_raw", "mean_sdm"):
            if key in s:
                out[f"measured_{name}_{key}"] = float(s[key])
    return {k: v for k, v in out.items() if math.isfinite(v)}


# ----------------------------------------------------------------------------- run


def run_rankaae(cfg: RankAAERunConfig, progress: Callable[[str], None] | None = print) -> dict:
    """Train and evaluate (module doc); writes report.json/report.md, plots and ``model/``."""
    from xas_data.io_utils import atomic_write_text
    from xas_eval.inverse_metrics import interval_coverage
    from xas_models.rankaae import RankAAE, RankAAEDescriber

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    _check_measured(cfg)
    data, train, val, test = _load_splits(cfg)
    kinds = {n: data.kinds[n] for n in cfg.label_names}
    classes = {n: list(data.classes[n]) for n in cfg.descriptors if n in data.classes}
    say(
        f"[{cfg.name}] {cfg.element} {cfg.fidelity}: {len(train)} train / {len(val)} val / "
        f"{len(test)} test spectra, aligned {cfg.aligned}, regressed {cfg.descriptors}"
    )
    torch.manual_seed(cfg.seed)
    ae_config = {
        **cfg.model, "input_dim": int(train.spectra.shape[1]), "aligned": dict(cfg.aligned),
    }  # fmt: skip
    model = RankAAE.from_config(ae_config)
    untrained = RankAAE.from_config(ae_config).eval()
    untrained.load_state_dict(model.state_dict())
    model, train_info = train_autoencoder(model, train, val, cfg, say)
    regressor, reg_info = fit_regressor(model, train, cfg)
    describer = RankAAEDescriber.from_parts(model, regressor, cfg.descriptors, classes)
    raw_pred, raw_std = _describer_predict(describer, test.spectra)
    from xas_train.inverse import calibrate_spread

    std_scale = calibrate_spread(describer, val, list(cfg.descriptors))
    t_train = time.perf_counter() - t0

    with torch.no_grad():
        z_test = model.encode(_tensor(test.spectra)).numpy()
        z_train = model.encode(_tensor(train.spectra)).numpy()
        z_untrained = untrained.encode(_tensor(test.spectra)).numpy()
    test_labels = {n: test.labels[n] for n in cfg.label_names}
    pred, std = _describer_predict(describer, test.spectra)
    y_test = {n: test.labels[n] for n in cfg.descriptors}
    scores = descriptor_rows(MODEL_LABEL, y_test, pred, kinds, classes, std=std)
    scores += _baseline_rows(cfg, train, test, kinds, classes)
    measured = None
    if cfg.measured:
        energy = np.asarray(train.energy[cfg.element], dtype=np.float64)
        measured = measured_standards(describer, train.spectra, energy, cfg, classes)
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    _plots(run_dir, cfg, z_train, z_test, train, test, pred, std, measured, train_info["history"])
    report: dict[str, Any] = {
        "name": cfg.name,
        "config": cfg.model_dump(mode="json"),
        "dataset": str(data.store),
        "fidelity": cfg.fidelity,
        "element": cfg.element,
        "descriptors": list(cfg.descriptors),
        "aligned": dict(cfg.aligned),
        "kinds": kinds,
        "classes": classes,
        "n": {"train": len(train), "val": len(val), "test": len(test)},
        "training": {k: v for k, v in train_info.items() if k != "history"},
        "history": train_info["history"],
        "regressor": reg_info,
        "reconstruction_mse": {
            "train": _reconstruction_mse(model, train.spectra),
            "val": _reconstruction_mse(model, val.spectra),
            "test": _reconstruction_mse(model, test.spectra),
            "test_mean_spectrum": float(np.mean((test.spectra - train.spectra.mean(0)) ** 2)),
        },
        "spearman": alignment_scores(z_test, test_labels, cfg.aligned),
        "spearman_untrained": alignment_scores(z_untrained, test_labels, cfg.aligned),
        "scores": scores,
        "std_scale": std_scale,
        "coverage_1sigma_raw": {
            n: interval_coverage(y_test[n], raw_pred[n], raw_std[n]) for n in cfg.descriptors
        },
        "train_seconds": t_train,
    }
    if measured is not None:
        report["measured"] = {k: v for k, v in measured.items() if k != "latent"}
        report["measured"]["latent"] = {k: v.tolist() for k, v in measured["latent"].items()}
    metrics = _headline_metrics(report)
    report["model_dir"] = str(_save_model(run_dir, describer, cfg, data, train, val, test, metrics))
    report["seconds"] = time.perf_counter() - t0
    atomic_write_text(run_dir / "report.md", render_report(report))
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=float))
    if cfg.mlflow:
        from xas_train.tracking import log_report_run

        tags = {"recipe": "rankaae", "task": "inverse", "elements": cfg.element,
                "fidelity": cfg.fidelity}  # fmt: skip
        report["mlflow_run_id"] = log_report_run(cfg, run_dir, tags, metrics, "rankaae")
        atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=float))
    say(render_report(report))
    return report
