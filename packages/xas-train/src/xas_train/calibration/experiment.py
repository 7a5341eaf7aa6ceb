"""The ``calibrate`` recipe: calibrate a pretrained simulation model on measured spectra.

For each of ``n_splits`` random splits of the measured spectra of one element (6:1:1 train /
val / test by default; ``group_by: compound`` holds out whole compounds instead, so repeated
measurements of one sample never sit on both sides), three corrections of the pretrained
model's site-averaged predictions are fitted on the training spectra and scored on the test
spectra:

* ``simulation``: the pretrained model, with only a linear intensity map fitted (simulated
  FEFF labels and edge-step-normalised measurements have different units; edge positions are
  unaffected by it);
* ``shift+broadening``: one global energy shift + Gaussian broadening (+ the intensity map);
* ``calibrated``: the model's head fine-tuned layer by layer (:mod:`.head`).

Metrics per method: mean RSE and mean edge-energy error (eV, E0 at the derivative maximum on
the model's grid) against the measured spectra; mean and std over the splits. Finally the head
is calibrated once more on all spectra (1/8 kept for validation) and saved as a checkpoint of
fidelity ``EXP`` with the measured data's provenance, ready for ``xas-train publish``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xas_train.calibration.data import MeasuredSet, load_measured_set
from xas_train.calibration.head import finetune_head, predict_measured
from xas_train.calibration.shift_broaden import fit_shift_broadening
from xas_train.errors import TrainError

METHODS = ("simulation", "shift+broadening", "calibrated")


class CalibrationConfig(BaseModel):
    """A ``calibrate`` run (YAML). Unknown keys are refused.

    Attributes:
        model: zoo name or checkpoint folder of the pretrained simulation model.
        zoo: zoo folder or URL for a zoo name (default: the configured zoo).
        measured: xas-data store with ``EXP`` spectra (``xas-data ingest-measured``).
        element: absorbing element to calibrate on.
        n_splits / split_ratio: random train:val:test splits (Lin et al.: 20 of 6:1:1).
        group_by: ``spectrum`` (split spectra) or ``compound`` (hold out whole compounds).
        epochs_per_stage / lr / batch_size / max_stages: head fine-tuning (see ``head``).
        publish_fit: fit the final calibrated model on all spectra and save it.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="calibrate", pattern=r"^[A-Za-z0-9_.-]+$")
    model: str
    zoo: str | None = None
    measured: str
    element: str
    n_splits: int = Field(default=20, gt=0)
    split_ratio: tuple[int, int, int] = (6, 1, 1)
    group_by: Literal["spectrum", "compound"] = "spectrum"
    epochs_per_stage: int = Field(default=30, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=4, gt=0)
    max_stages: int | None = Field(default=None, gt=0)
    seed: int = 0
    publish_fit: bool = True
    output_dir: str = "runs/calibrate"
    tracking_uri: str | None = None
    experiment: str = "xas-calibrate"
    mlflow: bool = True

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def load_calibration_config(path: str | Path, overrides: list[str] | None = None):
    """Read and validate a calibration YAML (dotted ``key=value`` overrides allowed)."""
    from xas_train.config import read_yaml_config, validate_config

    data = read_yaml_config(path, overrides, "calibration")
    return validate_config(CalibrationConfig, data, "calibration", str(path))


def make_splits(
    n: int,
    ratio: tuple[int, int, int],
    n_splits: int,
    seed: int,
    groups: list[str] | None = None,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``n_splits`` (train, val, test) index arrays over ``n`` spectra.

    Without ``groups``: random splits in ``ratio`` (at least one spectrum each). With
    ``groups`` (compound of each spectrum): split ``i`` tests on group ``i mod n_groups`` (all
    its spectra) and validates on a random ``ratio[1] / (ratio[0] + ratio[1])`` of the rest.
    """
    rng = np.random.default_rng(seed)
    total = sum(ratio)
    out = []
    if groups is None:
        if n < 3:
            raise TrainError(f"{n} measured spectra cannot be split into train/val/test; need 3+")
        n_test = max(1, round(n * ratio[2] / total))
        n_val = max(1, round(n * ratio[1] / total))
        for _ in range(n_splits):
            perm = rng.permutation(n)
            out.append((perm[n_test + n_val :], perm[n_test : n_test + n_val], perm[:n_test]))
        return out
    names = sorted(set(groups))
    if len(names) < 2:
        raise TrainError(
            f"group_by compound needs spectra of 2+ compounds, got {names}; use group_by: spectrum"
        )
    g = np.asarray(groups)
    for i in range(n_splits):
        test = np.flatnonzero(g == names[i % len(names)])
        rest = rng.permutation(np.flatnonzero(g != names[i % len(names)]))
        if len(rest) < 2:
            raise TrainError(
                f"holding out {names[i % len(names)]} leaves {len(rest)} spectrum for training "
                "and validation; add measured spectra or use group_by: spectrum"
            )
        n_val = max(1, round(len(rest) * ratio[1] / (ratio[0] + ratio[1])))
        out.append((rest[n_val:], rest[:n_val], test))
    return out


def _scores(energy: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from xas_eval.metrics import edge_energy_error, rse

    return {
        "rse": float(np.mean(rse(y, pred))),
        "edge_error_ev": float(np.mean(edge_energy_error(energy, y, pred))),
    }


def _summary(per_split: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for method in METHODS:
        for metric in ("rse", "edge_error_ev"):
            values = np.array([s[method][metric] for s in per_split])
            out.setdefault(method, {})[f"{metric}_mean"] = float(values.mean())
            out[method][f"{metric}_std"] = float(values.std())
    return out


def render_summary(summary: dict[str, dict[str, float]], element: str, n: int, k: int) -> str:
    """Markdown table: method, mean RSE +- std, mean edge error (eV) +- std."""
    lines = [
        f"| {element} ({n} spectra, {k} splits) | RSE | edge-energy error (eV) |",
        "|---|---:|---:|",
    ]
    for method in METHODS:
        m = summary[method]
        lines.append(
            f"| {method} | {m['rse_mean']:.4f} +- {m['rse_std']:.4f} | "
            f"{m['edge_error_ev_mean']:.2f} +- {m['edge_error_ev_std']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _plot(path: Path, data: MeasuredSet, rows, curves: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(rows)[:6]
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.0), squeeze=False)
    for ax, (j, r) in zip(axes[0], enumerate(rows), strict=False):
        ax.plot(data.energy, data.y[r], "k-", lw=2, label="measured")
        for (label, pred), c in zip(curves.items(), ("C0", "C2", "C3"), strict=False):
            ax.plot(data.energy, pred[j], color=c, lw=1.2, label=label)
        ax.set_title(f"{data.names[r]}", fontsize=9)
        ax.set_xlabel("energy (eV)")
    axes[0][0].set_ylabel("normalised mu(E)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def load_forward_model(model: str, zoo: str | None = None):
    """``(module, meta, name, version)`` of a checkpoint folder or a zoo model name."""
    import xas_models

    try:
        if (Path(model) / "model.json").is_file():
            module, meta = xas_models.load_checkpoint(model)
            return module, meta, str(model), ""
        from xas_models.zoo import load_pretrained_entry

        module, meta, entry = load_pretrained_entry(model, "latest", zoo)
    except xas_models.ModelError as exc:
        raise TrainError(f"cannot load the pretrained model {model!r}: {exc}") from None
    return module, meta, entry.name, entry.version


def run_calibration(
    cfg: CalibrationConfig, progress: Callable[[str], None] | None = print
) -> dict[str, Any]:
    """Run the recipe (module doc); writes ``report.json``, ``report.md``, a plot and (with
    ``publish_fit``) the calibrated checkpoint into ``cfg.run_dir``; returns the report."""
    import torch

    import xas_models
    from xas_data.io_utils import atomic_write_text
    from xas_train.tracking import log_report_run

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    module0, meta, model_name, model_version = load_forward_model(cfg.model, cfg.zoo)
    data = load_measured_set(cfg.measured, cfg.element, meta)
    n = len(data)
    say(
        f"[{cfg.name}] {cfg.element}: {n} measured spectra of {len(set(data.compounds))} "
        f"compounds; model {model_name} ({meta.architecture})"
    )
    energy = data.energy
    all_rows = np.arange(n)
    pred0 = predict_measured(module0, data, all_rows)
    splits = make_splits(
        n,
        cfg.split_ratio,
        cfg.n_splits,
        cfg.seed,
        data.compounds if cfg.group_by == "compound" else None,
    )
    per_split, stages = [], []
    for i, (train, val, test) in enumerate(splits):
        fit_rows = np.concatenate([train, val])
        scale = fit_shift_broadening(energy, pred0[fit_rows], data.y[fit_rows], 0.0, 0.0)
        sb = fit_shift_broadening(energy, pred0[fit_rows], data.y[fit_rows])
        module = copy.deepcopy(module0)
        torch.manual_seed(cfg.seed + i)
        fit = finetune_head(
            module,
            data,
            train,
            val,
            cfg.epochs_per_stage,
            cfg.lr,
            cfg.batch_size,
            cfg.max_stages,
            seed=cfg.seed + i,
        )
        stages.append(fit.best_stage)
        y = data.y[test]
        preds = {
            "simulation": scale.apply(energy, pred0[test]),
            "shift+broadening": sb.apply(energy, pred0[test]),
            "calibrated": predict_measured(module, data, test),
        }
        per_split.append({m: _scores(energy, y, p) for m, p in preds.items()})
        per_split[-1]["shift_ev"] = sb.shift_ev
        per_split[-1]["sigma_ev"] = sb.sigma_ev
        if i == 0:
            cfg.run_dir.mkdir(parents=True, exist_ok=True)
            _plot(cfg.run_dir / "spectra-split0.png", data, test, preds)
        say(
            f"[{cfg.name}] split {i + 1}/{len(splits)}: edge error sim "
            f"{per_split[-1]['simulation']['edge_error_ev']:.2f} -> shift+broad "
            f"{per_split[-1]['shift+broadening']['edge_error_ev']:.2f} -> calibrated "
            f"{per_split[-1]['calibrated']['edge_error_ev']:.2f} eV"
        )
    summary = _summary(per_split)
    report: dict[str, Any] = {
        "name": cfg.name,
        "element": cfg.element,
        "model": model_name,
        "model_version": model_version,
        "architecture": meta.architecture,
        "n_spectra": n,
        "compounds": sorted(set(data.compounds)),
        "group_by": cfg.group_by,
        "split_ratio": list(cfg.split_ratio),
        "n_splits": len(splits),
        "summary": summary,
        "best_stage_counts": {str(s): stages.count(s) for s in sorted(set(stages))},
        "shift_ev_mean": float(np.mean([s["shift_ev"] for s in per_split])),
        "sigma_ev_mean": float(np.mean([s["sigma_ev"] for s in per_split])),
        "per_split": per_split,
        "provenance": data.provenance,
        "config": cfg.model_dump(mode="json"),
    }
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.publish_fit:
        rng = np.random.default_rng(cfg.seed)
        perm = rng.permutation(n)
        n_val = max(1, round(n * cfg.split_ratio[1] / sum(cfg.split_ratio)))
        module = copy.deepcopy(module0)
        final = finetune_head(
            module,
            data,
            perm[n_val:],
            perm[:n_val],
            cfg.epochs_per_stage,
            cfg.lr,
            cfg.batch_size,
            cfg.max_stages,
            seed=cfg.seed,
        )
        grid = meta.grid_for(cfg.element)
        new_meta = meta.model_copy(
            update={
                "elements": [cfg.element],
                "energy_grid": grid,
                "energy_grids": {},
                "fidelity": "EXP",
                "training_data": {
                    **{k: v for k, v in meta.training_data.items() if k == "graph_config"},
                    "recipe": "calibrate",
                    "init_from": f"{model_name} {model_version}".strip(),
                    "simulation_training_data": {
                        k: v
                        for k, v in meta.training_data.items()
                        if k not in ("graph_config", "baseline_spectra")
                    },
                    "measured": data.provenance,
                    "license": data.provenance.get("license", ""),
                    "n_train": n - n_val,
                    "n_val": n_val,
                    "best_stage": final.best_stage,
                    "head_finetuning": {
                        "epochs_per_stage": cfg.epochs_per_stage,
                        "lr": cfg.lr,
                        "batch_size": cfg.batch_size,
                    },
                },
                "metrics": {
                    f"{cfg.element}/{m}/{k}": round(v, 6)
                    for m, d in summary.items()
                    for k, v in d.items()
                }
                | {"eval": f"{len(splits)} splits {cfg.group_by} {cfg.split_ratio}"},
            }
        )
        xas_models.save_checkpoint(run_dir / "model", module, new_meta, overwrite=True)
        report["model_dir"] = str(run_dir / "model")
    report["seconds"] = time.perf_counter() - t0
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=str))
    table = render_summary(summary, cfg.element, n, len(splits))
    atomic_write_text(run_dir / "report.md", table)
    if cfg.mlflow:
        metrics = {
            f"{m}_{k}".replace("+", "_"): v for m, d in summary.items() for k, v in d.items()
        }
        report["mlflow_run_id"] = log_report_run(
            cfg, run_dir, {"recipe": "calibrate", "element": cfg.element}, metrics, "calibration"
        )
    say(table)
    return report


def report_json(report: dict[str, Any]) -> str:
    """The report without the per-split rows, as indented JSON (for printing)."""
    return json.dumps({k: v for k, v in report.items() if k != "per_split"}, indent=2)
