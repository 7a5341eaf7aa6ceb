"""The OmniXAS cascade from one base config: experts, universal and tuned models for every
element and fidelity present, plus cross-fidelity fine-tuning, then the Table-I report.

For the *base* fidelity (the FEFF fidelity with the most training spectra, or ``base_fidelity``):

1. ``expert``: one model per element;
2. ``universal``: one model on all elements (per-element grids kept in the checkpoint);
3. ``tuned``: the universal model fine-tuned on each element.

For every other fidelity (``VASP``, ``FEFF-accurate``, ...): an ``expert`` per element and a
``cross-fidelity`` model per element, initialised from the base-fidelity universal model.

All runs are MLflow children of one ``<name>-cascade`` run. The cascade is resumable: a run
whose ``result.json`` exists for the same config is reused. Runs that cannot train (too few
spectra) are recorded as skipped with the reason, never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xas_train.config import RunConfig, apply_overrides, dump_config, parse_config
from xas_train.errors import TrainError
from xas_train.tracking import Tracker
from xas_train.trainer import Progress, TrainResult, train


@dataclass
class CascadeRun:
    """One member run of the cascade."""

    name: str
    recipe: str
    fidelity: str
    elements: list[str]
    status: str  # "trained", "reused" or "skipped"
    reason: str = ""
    result: dict[str, Any] | None = None


@dataclass
class CascadeResult:
    """All runs, where the summary/report went, and the MLflow parent run."""

    runs: list[CascadeRun]
    summary_path: str
    report_path: str | None
    table_markdown: str
    parent_run_id: str | None = None
    models: dict[str, str] = field(default_factory=dict)  # run name -> model folder


def _groups_with_training_data(config: RunConfig) -> dict[str, list[str]]:
    """fidelity -> elements having spectra in the training split."""
    from xas_train.data import open_dataset

    ds = open_dataset(config.data.dataset)
    out: dict[str, list[str]] = {}
    for element, fidelity in ds.groups():
        if len(ds.select(element, fidelity, config.data.train_split)):
            out.setdefault(fidelity, []).append(element)
    return {f: sorted(e) for f, e in sorted(out.items())}


def _has_rows(config: RunConfig, element: str, fidelity: str, split: str | None) -> bool:
    from xas_train.data import open_dataset

    if split is None:
        return False
    return len(open_dataset(config.data.dataset).select(element, fidelity, split)) > 0


def pick_base_fidelity(groups: dict[str, list[str]], config: RunConfig) -> str:
    """The FEFF fidelity with the most training spectra (any fidelity when none is FEFF)."""
    from xas_train.data import open_dataset

    ds = open_dataset(config.data.dataset)

    def size(fid: str) -> int:
        return sum(len(ds.select(e, fid, config.data.train_split)) for e in groups[fid])

    feff = [f for f in groups if f.upper().startswith("FEFF")]
    return max(feff or list(groups), key=size)


def derive(base: RunConfig, name: str, **changes: Any) -> RunConfig:
    """A copy of ``base`` with a new name and dotted changes (``"data.elements": [...]``)."""
    overrides = [f"{k}={json.dumps(v)}" for k, v in changes.items()]
    data = apply_overrides(base.to_dict(), [f"name={name}", *overrides])
    return parse_config(data, source=f"(cascade run {name})")


def _fingerprint_matches(config: RunConfig) -> dict[str, Any] | None:
    run_dir = config.run_dir
    marker, result = run_dir / "run.json", run_dir / "result.json"
    if not (marker.is_file() and result.is_file()):
        return None
    if json.loads(marker.read_text()).get("fingerprint") != config.fingerprint():
        return None
    return json.loads(result.read_text())


def run_cascade(
    base: RunConfig,
    *,
    fidelities: list[str] | None = None,
    elements: list[str] | None = None,
    base_fidelity: str | None = None,
    tuned_overrides: dict[str, Any] | None = None,
    cross_fidelity: bool = True,
    progress: Progress | None = print,
    fresh: bool = False,
) -> CascadeResult:
    """Run the whole cascade; returns the runs and writes ``summary.json`` and the report.

    Args:
        base: settings shared by every run (dataset, features, model, training, tracking);
            its ``recipe``/``elements``/``fidelity``/``init_from`` are replaced per run.
        fidelities / elements: restrict the cascade (default: everything with training data).
        base_fidelity: the fidelity of the universal model (default: see
            :func:`pick_base_fidelity`).
        tuned_overrides: dotted changes for tuned and cross-fidelity runs, e.g.
            ``{"model.dropout": 0.0, "training.lr": 3e-4}``.
    """
    say: Progress = progress or (lambda _m: None)
    groups = _groups_with_training_data(base)
    if fidelities:
        unknown = [f for f in fidelities if f not in groups]
        if unknown:
            raise TrainError(f"fidelities {unknown} have no training data; present: {list(groups)}")
        groups = {f: groups[f] for f in fidelities}
    if elements:
        groups = {f: [e for e in els if e in elements] for f, els in groups.items()}
        groups = {f: els for f, els in groups.items() if els}
    if not groups:
        raise TrainError("nothing to train: no (element, fidelity) with training spectra left")
    base_fid = base_fidelity or pick_base_fidelity(groups, base)
    if base_fid not in groups:
        raise TrainError(f"base fidelity {base_fid!r} not among {list(groups)}")
    tuned_overrides = dict(tuned_overrides or {})
    cascade_dir = Path(base.output_dir) / f"{base.name}-cascade"
    cascade_dir.mkdir(parents=True, exist_ok=True)

    tracker = Tracker(base.tracking_uri(), base.mlflow.experiment, base.mlflow.enabled)
    parent = tracker.start(
        f"{base.name}-cascade",
        {"recipe": "cascade", "base_fidelity": base_fid, **base.mlflow.tags},
    )
    tracker.log_text(dump_config(base), "base_config.yaml")
    runs: list[CascadeRun] = []
    models: dict[str, str] = {}

    def one(config: RunConfig) -> TrainResult | dict | None:
        fid, els = config.data.fidelity, config.data.elements or groups[config.data.fidelity]
        if len(els) == 1 and not _has_rows(config, els[0], fid, config.data.val_split):
            config = derive(config, config.name, **{"data.val_split": None})
        done = None if fresh else _fingerprint_matches(config)
        if done is not None:
            say(f"[cascade] reuse {config.name}")
            runs.append(CascadeRun(config.name, config.recipe, fid, list(els), "reused", "", done))
            models[config.name] = done["model_dir"]
            return done
        try:
            result = train(config, parent_run_id=parent, progress=progress, fresh=fresh)
        except TrainError as exc:
            say(f"[cascade] skip {config.name}: {exc}")
            runs.append(CascadeRun(config.name, config.recipe, fid, list(els), "skipped", str(exc)))
            return None
        runs.append(
            CascadeRun(config.name, config.recipe, fid, list(els), "trained", "", asdict(result))
        )
        models[config.name] = result.model_dir
        return result

    def model_dir(res: TrainResult | dict) -> str:
        return res.model_dir if isinstance(res, TrainResult) else res["model_dir"]

    status = "FAILED"
    try:
        order = [base_fid] + [f for f in groups if f != base_fid]
        universal_dir: str | None = None
        for fid in order:
            for el in groups[fid]:
                one(
                    derive(
                        base,
                        f"{base.name}-{fid}-{el}-expert",
                        recipe="expert",
                        init_from=None,
                        **{"data.fidelity": fid, "data.elements": [el]},
                    )
                )
            if fid == base_fid:
                uni = one(
                    derive(
                        base,
                        f"{base.name}-{fid}-universal",
                        recipe="universal",
                        init_from=None,
                        **{"data.fidelity": fid, "data.elements": None},
                    )
                )
                if uni is None:
                    continue
                universal_dir = model_dir(uni)
                for el in groups[fid]:
                    one(
                        derive(
                            base,
                            f"{base.name}-{fid}-{el}-tuned",
                            recipe="tuned",
                            init_from=universal_dir,
                            **{"data.fidelity": fid, "data.elements": [el]},
                            **tuned_overrides,
                        )
                    )
            elif cross_fidelity and universal_dir is not None:
                for el in groups[fid]:
                    one(
                        derive(
                            base,
                            f"{base.name}-{fid}-{el}-cross-fidelity",
                            recipe="cross-fidelity",
                            init_from=universal_dir,
                            **{"data.fidelity": fid, "data.elements": [el]},
                            **tuned_overrides,
                        )
                    )
        summary_path, report_path, table = _write_summary(cascade_dir, runs)
        tracker.log_artifacts(cascade_dir, "cascade")
        status = "FINISHED"
    finally:
        tracker.end(status if status == "FINISHED" else "FAILED")
    return CascadeResult(runs, str(summary_path), report_path, table, parent, models)


def _write_summary(cascade_dir: Path, runs: list[CascadeRun]) -> tuple[Path, str | None, str]:
    from xas_data.io_utils import atomic_write_text
    from xas_eval.predictions import Predictions
    from xas_eval.report import render_markdown, table_one, write_report

    summary = cascade_dir / "summary.json"
    atomic_write_text(summary, json.dumps([asdict(r) for r in runs], indent=2, default=str) + "\n")
    preds = [
        Predictions.load(p)
        for r in runs
        if r.result is not None
        for p in r.result.get("predictions", [])
    ]
    if not preds:
        return summary, None, "(no test predictions: every test split was empty)"
    report = write_report(preds, cascade_dir / "report")
    return summary, str(report), render_markdown(table_one(preds))
