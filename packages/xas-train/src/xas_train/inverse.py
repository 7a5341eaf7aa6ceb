"""Training and evaluation of inverse models (spectrum -> descriptors): ``xas-train inverse``.

One run trains a deep ensemble of SPT models (``n_members`` seeds; Adam, early stopping on the
validation loss of the masked multi-task objective) on the post-edge-normalised spectra and
descriptor labels of a store (see :mod:`xas_eval.inverse_data`), and in the same run the
scikit-learn baselines (random forest, extra trees, gradient boosting, one model per
descriptor). It reports on the test split: F1 macro / weighted (classification) and R^2 / MAE
(regression) per descriptor and per element, robustness curves (Gaussian noise of increasing
amplitude, and random +-1 eV shifts), and the 1-sigma coverage of the ensemble's regression
uncertainty; writes confusion matrices, parity plots and robustness curves; and saves the
ensemble as a checkpoint (``featurizer: spectrum``) for ``xas-train publish --task inverse``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from xas_eval.inverse_metrics import add_noise, shift_energy
from xas_train.errors import TrainError

NOISE_LEVELS = (0.0, 0.01, 0.02, 0.05, 0.1)


class InverseConfig(BaseModel):
    """An ``inverse`` run (YAML). Unknown keys are refused.

    Attributes:
        dataset: xas-data store with descriptors, or ``default``.
        fidelity / elements / descriptors: what to train on (None = all).
        model: SPT config keys (``tasks`` and ``input_dim`` come from the data).
        n_members: deep-ensemble size; lr / batch_size / max_epochs / patience: training.
        lr_schedule: ``cosine`` (linear warm-up over ``warmup_epochs``, then cosine decay to 0
            at ``max_epochs``) or ``constant``.
        class_weighting: cross-entropy class weights from the training counts n_c:
            ``sqrt`` (``(n / n_c)^0.5``), ``balanced`` (``n / n_c``) or ``none``; rare
            oxidation states and coordination numbers otherwise barely count (macro F1).
        standardise_input: standardise each energy point with the training mean / std.
        augment_noise: training spectra get Gaussian noise of a relative amplitude drawn
            uniformly in ``[0, augment_noise]`` per spectrum (0: none).
        augment_shift_ev: and a random energy shift uniform in ``+-augment_shift_ev`` eV.
        bootstrap: each member trains on its own bootstrap resample of the training materials
            (bagging; all sites of a drawn material, drawn materials repeated), for more
            diverse members; default False (every member sees all training spectra).
        calibrate_std: rescale the ensemble spread so its 1-sigma interval covers 68 % of the
            validation split (needs ``n_members`` >= 2).
        baselines: scikit-learn baselines trained in the same run.
        noise_levels: Gaussian noise amplitudes (relative to the post-edge level).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="inverse", pattern=r"^[A-Za-z0-9_.-]+$")
    dataset: str = "default"
    fidelity: str = "FEFF-fast"
    elements: list[str] | None = None
    descriptors: list[str] | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str = "test"
    holdout_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    model: dict[str, Any] = Field(default_factory=dict)
    n_members: int = Field(default=5, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    batch_size: int = Field(default=32, gt=0)
    max_epochs: int = Field(default=200, gt=0)
    patience: int = Field(default=30, gt=0)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = Field(default=3, ge=0)
    class_weighting: Literal["sqrt", "balanced", "none"] = "sqrt"
    standardise_input: bool = True
    augment_noise: float = Field(default=0.0, ge=0.0)
    augment_shift_ev: float = Field(default=0.0, ge=0.0)
    calibrate_std: bool = True
    bootstrap: bool = False
    seed: int = 0
    baselines: list[str] = Field(default_factory=lambda: ["rf", "et", "gb"])
    noise_levels: list[float] = Field(default_factory=lambda: list(NOISE_LEVELS))
    shift_ev: float = 1.0
    output_dir: str = "runs/inverse"
    tracking_uri: str | None = None
    experiment: str = "xas-inverse"
    mlflow: bool = True

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def load_inverse_config(path: str | Path, overrides: list[str] | None = None) -> InverseConfig:
    """Read and validate an inverse-run YAML (dotted ``key=value`` overrides allowed)."""
    from xas_train.config import read_yaml_config, validate_config

    data = read_yaml_config(path, overrides, "inverse-run")
    return validate_config(InverseConfig, data, "inverse", str(path))


def _tasks(data) -> list[dict[str, Any]]:
    """SPT tasks from the data: class lists from all splits (a class seen only in val/test
    still gets an output; it is never predicted correctly unless trained on)."""
    tasks = []
    for name in data.names:
        kind = data.kinds[name]
        if kind == "classification":
            values = set()
            for split in data.values():
                lab = split.labels[name]
                values |= {int(v) for v in lab[np.isfinite(lab)]}
            if len(values) < 2:
                continue
            tasks.append({"name": name, "kind": kind, "classes": sorted(values)})
        else:
            tasks.append({"name": name, "kind": kind})
    return tasks


def class_weights(train, model, scheme: str) -> dict[str, torch.Tensor]:
    """Cross-entropy weights ``[n_classes]`` per classification task from the training counts
    (``InverseConfig.class_weighting``); classes absent from training get weight 1. Weights
    are normalised to a count-weighted mean of 1."""
    if scheme == "none":
        return {}
    power = 0.5 if scheme == "sqrt" else 1.0
    out = {}
    for name, task in model.tasks.items():
        if task.kind != "classification":
            continue
        idx, valid = model.class_indices(name, torch.from_numpy(train.labels[name]))
        counts = torch.bincount(idx[valid], minlength=len(task.classes)).double()
        if counts.sum() == 0:
            continue
        w = torch.where(counts > 0, (counts.sum() / counts.clamp_min(1)) ** power, 1.0)
        w = w / ((w * counts).sum() / counts.sum())
        out[name] = w.float()
    return out


def holdout_split(train, fraction: float, seed: int):
    """``(train, val)``: ``fraction`` of the training materials (whole materials, seeded, as
    :func:`xas_train.data.material_holdout`) moved to a validation split."""
    from xas_train.data import material_holdout

    mask = material_holdout(train.materials, fraction, seed)
    return train.subset(~mask), train.subset(mask)


def bootstrap_materials(data, seed: int):
    """A bootstrap resample of ``data`` by material: as many materials as it holds, drawn with
    replacement, each contributing all its sites (site ids ``material:site``)."""
    unique, inverse = np.unique(data.materials, return_inverse=True)
    drawn = np.random.default_rng(seed).integers(0, unique.size, unique.size)
    rows_of = [np.flatnonzero(inverse == i) for i in range(unique.size)]
    return data.subset(np.concatenate([rows_of[i] for i in drawn]))


def _augment(x: torch.Tensor, cfg: InverseConfig, rng: np.random.Generator, step: float):
    """Training spectra ``[B, K]`` with random shifts and noise (``augment_*`` of ``cfg``)."""
    if not (cfg.augment_noise or cfg.augment_shift_ev):
        return x
    y = x.numpy()
    if cfg.augment_shift_ev:
        y = shift_energy(y, step, cfg.augment_shift_ev, rng)
    if cfg.augment_noise:
        y = add_noise(y, rng.uniform(0.0, cfg.augment_noise, (len(y), 1)), rng)
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


def _lr_factor(cfg: InverseConfig, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier after ``step`` optimiser steps (``cfg.lr_schedule``)."""
    if cfg.lr_schedule == "constant":
        return 1.0
    warm = cfg.warmup_epochs * steps_per_epoch
    total = max(cfg.max_epochs * steps_per_epoch, warm + 1)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + np.cos(np.pi * (step - warm) / (total - warm)))


def train_member(
    config: dict[str, Any],
    train,
    val,
    cfg: InverseConfig,
    seed: int,
    progress: Callable[[str], None],
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """One SPT member trained with early stopping; returns it at its best validation loss.

    AdamW at ``cfg.lr`` under ``cfg.lr_schedule``, class-weighted cross-entropy
    (``cfg.class_weighting``), optional noise / shift augmentation; the validation loss is
    the unweighted objective on clean validation spectra.
    """
    from xas_models import build_model
    from xas_models.spt import spt_loss

    torch.manual_seed(seed)
    model = build_model("spt", config)
    model.set_periods(train.spectra)
    if model.config.standardise_input:
        model.set_input_scaling(train.spectra)
    reg = model.regression_tasks
    model.set_target_scaling({n: train.labels[n] for n in reg})
    weights = class_weights(train, model, cfg.class_weighting)
    x = torch.from_numpy(train.spectra.astype(np.float32))
    y = {n: torch.from_numpy(train.labels[n].astype(np.float32)) for n in model.tasks}
    xv = torch.from_numpy(val.spectra.astype(np.float32))
    yv = {n: torch.from_numpy(val.labels[n].astype(np.float32)) for n in model.tasks}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(x)
    per_epoch = -(-n // cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: _lr_factor(cfg, step, per_epoch))
    rng = np.random.default_rng(seed)
    step_ev = float(train.energy_step)
    best, best_state, best_epoch, bad = np.inf, None, 0, 0
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        perm = rng.permutation(n)
        for i in range(0, n, cfg.batch_size):
            rows = torch.from_numpy(perm[i : i + cfg.batch_size])
            xb = _augment(x[rows], cfg, rng, step_ev)
            loss, _ = spt_loss(
                model(xb), {k: v[rows] for k, v in y.items()}, model=model, class_weights=weights
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(spt_loss(model(xv), yv, model=model)[0])
        if val_loss < best - 1e-6:
            best, best_epoch, bad = val_loss, epoch, 0
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        else:
            bad += 1
        if bad >= cfg.patience:
            break
    model.load_state_dict(best_state)
    progress(
        f"[{cfg.name}] member seed {seed}: best val loss {best:.4f} at epoch {best_epoch} "
        f"(stopped at {epoch})"
    )
    return model.eval(), {"seed": seed, "best_val_loss": best, "best_epoch": best_epoch}


def _ensemble_predict(ensemble: torch.nn.Module, spectra: np.ndarray) -> dict[str, dict]:
    with torch.no_grad():
        out = ensemble(torch.from_numpy(np.asarray(spectra, dtype=np.float32)))
    return {k: {kk: vv.numpy() for kk, vv in v.items()} for k, v in out.items()}


def run_inverse(cfg: InverseConfig, progress: Callable[[str], None] | None = print) -> dict:
    """Train and evaluate (module doc); writes report.json/report.md, plots and the model."""
    from xas_data.io_utils import atomic_write_text
    from xas_eval.inverse_baselines import TreeBaseline, majority_baseline
    from xas_eval.inverse_data import load_inverse_data
    from xas_eval.inverse_metrics import (
        interval_coverage,
        primary_metric,
        robustness_curve,
        score_predictions,
    )
    from xas_models import CheckpointMeta, EnergyGrid, FeaturizerInfo, save_checkpoint
    from xas_models.inverse import INVERSE_FEATURIZER, InverseEnsemble

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    splits = [cfg.train_split, cfg.test_split] + ([cfg.val_split] if cfg.val_split else [])
    try:
        data = load_inverse_data(
            cfg.dataset, cfg.fidelity, cfg.elements, cfg.descriptors, splits=splits
        )
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    train, test = data[cfg.train_split], data[cfg.test_split]
    if cfg.val_split:
        val = data[cfg.val_split]
    else:  # hold out whole training materials for early stopping
        train, val = holdout_split(train, cfg.holdout_fraction, cfg.seed)
    tasks = _tasks(data)
    if not tasks:
        raise TrainError("no descriptor has 2+ classes or finite regression labels to learn")
    kinds = {t["name"]: t["kind"] for t in tasks}
    member_cfg = {
        "standardise_input": cfg.standardise_input,
        **cfg.model,
        "input_dim": int(train.spectra.shape[1]),
        "tasks": tasks,
    }
    say(
        f"[{cfg.name}] {len(train)} train / {len(val)} val / {len(test)} test spectra, "
        f"elements {sorted(set(train.element.tolist()))}, tasks {list(kinds)}"
    )
    members, member_info = [], []
    for m in range(cfg.n_members):
        part = bootstrap_materials(train, cfg.seed + m) if cfg.bootstrap else train
        model, info = train_member(member_cfg, part, val, cfg, cfg.seed + m, say)
        members.append(model)
        member_info.append(info)
    ensemble = InverseEnsemble.from_members(members).eval()
    regression = [n for n, k in kinds.items() if k == "regression"]
    std_scale = calibrate_spread(ensemble, val, regression) if cfg.calibrate_std else {}
    if std_scale:
        say(f"[{cfg.name}] ensemble spread x {std_scale} (68 % coverage on the val split)")
    t_train = time.perf_counter() - t0

    labels = {n: test.labels[n] for n in kinds}
    preds = {"SPT ensemble": _ensemble_predict(ensemble, test.spectra)}
    point = {k: {n: v[n]["value"] for n in kinds} for k, v in preds.items()}
    point["SPT (member 1)"] = {
        n: v["value"].numpy() for n, v in members[0].predict(torch.from_numpy(test.spectra)).items()
    }
    baselines = {}
    for kind in cfg.baselines:
        base = TreeBaseline(kind=kind, seed=cfg.seed).fit(
            train.spectra, {n: train.labels[n] for n in kinds}, kinds
        )
        baselines[kind] = base
        point[kind.upper()] = base.predict(test.spectra)
    point["majority / mean"] = majority_baseline(
        {n: train.labels[n] for n in kinds}, kinds, len(test)
    )
    rows = []
    for label, p in point.items():
        for r in score_predictions(labels, p, test.element, kinds):
            rows.append({"model": label, **r})
    coverage = {}
    for n, k in kinds.items():
        if k != "regression":
            continue
        p = preds["SPT ensemble"][n]
        raw_std = p["std"] / std_scale.get(n, 1.0)
        coverage[n] = {
            "1sigma_raw": interval_coverage(labels[n], p["value"], raw_std),
            "1sigma": interval_coverage(labels[n], p["value"], p["std"]),
            "2sigma": interval_coverage(labels[n], p["value"], p["std"], k=2.0),
            "std_scale": std_scale.get(n, 1.0),
        }

    def spt_fn(x):
        out = _ensemble_predict(ensemble, x)
        return {n: out[n]["value"] for n in kinds}

    step = float(test.energy_step)
    rng = np.random.default_rng(cfg.seed)
    robust = []
    for label, fn in [("SPT ensemble", spt_fn)] + [
        (k.upper(), b.predict) for k, b in baselines.items() if k in ("rf",)
    ]:
        for shift in (0.0, cfg.shift_ev):
            for r in robustness_curve(
                fn, test.spectra, labels, kinds, cfg.noise_levels, rng, shift, step, test.element
            ):
                robust.append({"model": label, "shift_ev": shift, **r})
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    spt_robust = [r for r in robust if r["model"] == "SPT ensemble"]
    _plots(run_dir, labels, preds["SPT ensemble"], kinds, ensemble, spt_robust)

    energies = {**val.energy, **test.energy, **train.energy}  # every element trained on
    grids = {e: EnergyGrid(**_grid(energies[e])) for e in sorted(energies)}
    meta = CheckpointMeta(
        energy_grid=next(iter(grids.values())),
        energy_grids=grids if len(grids) > 1 else {},
        elements=sorted(grids),
        fidelity=cfg.fidelity,
        featurizer=FeaturizerInfo(name=INVERSE_FEATURIZER, version="post-edge-normalised", key=""),
        training_data={
            "task": "inverse",
            "dataset": data.dataset_name or cfg.dataset,
            "license": data.license,
            "descriptor_feature": data.feature_key,
            "normalisation": {"kind": "post-edge level", "tail": 20},
            "n_train": len(train),
            "n_val": len(val),
            "n_test": len(test),
            "members": member_info,
            "tasks": tasks,
        },
        metrics={
            f"{r['descriptor']}/{r['element']}/{k}": round(float(v), 6)
            for r in rows
            if r["model"] == "SPT ensemble"
            for k, v in r.items()
            if k in ("f1_macro", "f1_weighted", "r2", "mae") and np.isfinite(v)
        },
    )
    save_checkpoint(run_dir / "model", ensemble, meta, overwrite=True)
    summary = [r for r in rows if r["element"] == "all"]
    report = {
        "name": cfg.name,
        "config": cfg.model_dump(mode="json"),
        "n": {"train": len(train), "val": len(val), "test": len(test)},
        "tasks": tasks,
        "scores": rows,
        "coverage": coverage,
        "robustness": robust,
        "members": member_info,
        "train_seconds": t_train,
        "seconds": time.perf_counter() - t0,
        "model_dir": str(run_dir / "model"),
    }
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=float))
    atomic_write_text(run_dir / "report.md", render_inverse_report(report))
    table = summary_table(summary, kinds)
    if cfg.mlflow:
        from xas_train.tracking import log_report_run

        metrics = {
            _metric_key(r["model"], r["descriptor"], primary_metric(kinds[r["descriptor"]])): float(
                r["score"]
            )
            for r in summary
            if np.isfinite(r["score"])
        }
        report["mlflow_run_id"] = log_report_run(
            cfg, run_dir, {"recipe": "inverse", "task": "inverse"}, metrics, "inverse"
        )
    say(table)
    return report


def _metric_key(*parts: str) -> str:
    """An MLflow metric name from ``parts`` ("SPT (member 1)", "OS", "f1_macro" ->
    "SPT_member_1_OS_f1_macro")."""
    text = "_".join(parts)
    return text.replace(" ", "_").replace("/", "_").replace("(", "").replace(")", "")


def calibrate_spread(model, val, names: list[str]) -> dict[str, float]:
    """Per output in ``names``, the factor on ``model``'s spread (``model(x)[name]["std"]``,
    an :class:`~xas_models.InverseEnsemble` or ``RankAAEDescriber``) that gives 68 % 1-sigma
    coverage on the ``val`` split; sets it on the model with ``set_std_scale``. Outputs with
    no usable spread (a single member: zero) are left out; {} when ``val`` is empty."""
    from xas_eval.inverse_metrics import coverage_scale

    if len(val) == 0 or not names:
        return {}
    with torch.no_grad():
        out = model(torch.from_numpy(np.asarray(val.spectra, dtype=np.float32)))
    scale = {}
    for name in names:
        pred = out[name]
        s = coverage_scale(val.labels[name], pred["value"].numpy(), pred["std"].numpy())
        if np.isfinite(s) and s > 0:
            scale[name] = round(float(s), 4)
    model.set_std_scale(scale)
    return scale


def _grid(energy: np.ndarray) -> dict[str, float]:
    e = np.asarray(energy, dtype=np.float64)
    return {"start": float(e[0]), "step": float(e[1] - e[0]), "n_points": int(e.size)}


def summary_table(summary: list[dict], kinds: dict[str, str]) -> str:
    """Markdown: descriptor rows x model columns (F1 macro / weighted or R^2 / MAE)."""
    models = list(dict.fromkeys(r["model"] for r in summary))
    names = list(dict.fromkeys(r["descriptor"] for r in summary))
    head = "| descriptor | metric | " + " | ".join(models) + " |"
    lines = [head, "|---|---|" + "---:|" * len(models)]
    cell = {(r["model"], r["descriptor"]): r for r in summary}
    for name in names:
        if kinds[name] == "classification":
            metric, keys = "F1 macro / weighted", ("f1_macro", "f1_weighted")
        else:
            metric, keys = "R^2 / MAE", ("r2", "mae")
        vals = []
        for m in models:
            r = cell.get((m, name), {})
            a, b = r.get(keys[0], np.nan), r.get(keys[1], np.nan)
            vals.append(f"{a:.3f} / {b:.3f}")
        lines.append(f"| {name} | {metric} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def render_inverse_report(report: dict[str, Any]) -> str:
    """report.md of an inverse run from its report.json content: the summary table (element
    "all"), every score row, the coverage table and the robustness tables."""
    from xas_eval.inverse_metrics import render_table

    kinds = {t["name"]: t["kind"] for t in report["tasks"]}
    rows = report["scores"]
    summary = [r for r in rows if r["element"] == "all"]
    elements = sorted({r["element"] for r in rows} - {"all"})
    n = report["n"]
    head = (
        f"# Inverse run `{report['name']}`\n\n{n['train']} train / {n['val']} val / "
        f"{n['test']} test spectra; {len(report['members'])} SPT members; "
        f"{report['seconds'] / 60:.1f} min.\n\n"
    )
    return (
        head
        + summary_table(summary, kinds)
        + "\n\n"
        + render_table(rows)
        + "\n\n"
        + coverage_table(report["coverage"])
        + _robustness_section(report["robustness"], report["config"]["shift_ev"], elements)
    )


def _robustness_section(robust: list[dict], shift_ev: float, elements: list[str]) -> str:
    """Markdown: robustness tables pooled (no shift, +-shift_ev) and per element (no shift,
    with the element's number of test spectra)."""
    from xas_eval.inverse_metrics import robustness_table

    parts = ["\n## Robustness: Gaussian noise (relative to the post-edge level), test split\n\n"]
    parts.append(robustness_table(robust, 0.0))
    parts.append(f"\nwith random energy shifts of +-{shift_ev:g} eV\n\n")
    parts.append(robustness_table(robust, shift_ev))
    if len(elements) > 1:
        for element in elements:
            n = max((r["n"] for r in robust if r.get("element") == element), default=0)
            parts.append(f"\n{element} only ({n} test spectra, no shift)\n\n")
            parts.append(robustness_table(robust, 0.0, element))
    return "".join(parts)


def coverage_table(coverage: dict[str, dict[str, float]]) -> str:
    """Markdown: per regression descriptor the test coverage of the ensemble's 1-sigma
    interval before / after the validation-fitted spread factor, and of the 2-sigma one."""
    if not coverage:
        return "no regression descriptor with an ensemble spread\n"
    lines = [
        "| descriptor | spread factor | 1-sigma coverage, raw | 1-sigma, calibrated | 2-sigma |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, c in coverage.items():
        lines.append(
            f"| {name} | {c['std_scale']:.2f} | {c['1sigma_raw']:.3f} | {c['1sigma']:.3f} "
            f"| {c['2sigma']:.3f} |"
        )
    return "\n".join(lines) + "\n(ideal: 0.683 and 0.954)\n"


def _plots(run_dir: Path, labels, pred, kinds, ensemble, robust) -> None:
    from xas_eval.inverse_plots import plot_confusion, plot_parity, plot_robustness

    tasks = {t.name: t for t in ensemble.tasks}
    for name, kind in kinds.items():
        y = labels[name]
        ok = np.isfinite(y)
        if not ok.any():
            continue
        if kind == "classification":
            plot_confusion(
                y[ok], pred[name]["value"][ok], tasks[name].classes,
                run_dir / f"confusion-{name}.png", f"SPT ensemble, {name} (test)",
            )  # fmt: skip
        else:
            plot_parity(
                y[ok], pred[name]["value"][ok], run_dir / f"parity-{name}.png",
                f"SPT ensemble, {name} (test)", std=pred[name]["std"][ok],
            )  # fmt: skip
    plot_robustness(robust, run_dir / "robustness.png", "test split")
