"""The main job: the whole OmniXAS pipeline on the shipped default dataset in one command.

1. copy the shipped store (FEFF spectra of AMCSD minerals, Ti-Cu) to ``<out>/data.zarr``;
2. featurize every site with CHGNet (weights ship inside the chgnet wheel: offline);
3. run the cascade (experts, universal, tuned; cross-fidelity onto FEFF-accurate), every run
   tracked in MLflow (``sqlite:///<out>/mlflow.db``);
4. evaluate on the test split and write the Table-I report with plots;
5. publish the universal and tuned models: into a local zoo of the run, ``<out>/zoo``
   (rewritten by every run), unless a zoo is given (``xas-train quickstart --publish``: the
   repository's ``model-zoo/``). Published versions are immutable, so a given zoo only ever
   gains new versions: other weights under an existing version are refused with a message
   asking for a new ``--version``, and the shipped zoo is never changed in place.

Resumable: finished runs are reused and the featurization is skipped when done.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xas_train.cascade import CascadeResult, run_cascade
from xas_train.config import apply_overrides, parse_config
from xas_train.trainer import Progress

#: Settings of the quickstart runs: the OmniXAS MLP (dropout 0.5, Adam, early stopping), with
#: a smaller patience/epoch budget sized for ~50 spectra per element on 2 CPU cores.
QUICKSTART_CONFIG: dict[str, Any] = {
    "name": "quickstart",
    "recipe": "universal",
    "data": {"features": ["chgnet"], "fidelity": "FEFF-fast", "standardize": True},
    "model": {"hidden_widths": [256, 256], "dropout": 0.5},
    "training": {
        "lr": 2e-3,
        "batch_size": 64,
        "max_epochs": 400,
        "patience": 40,
        "checkpoint_every": 0,
        "seed": 0,
    },
    "mlflow": {"experiment": "xas-quickstart"},
}
TUNED_OVERRIDES = {"training.lr": 5e-4, "model.dropout": 0.5}


@dataclass
class QuickstartResult:
    cascade: CascadeResult
    published: list[dict[str, Any]]
    seconds: float
    data_path: str


def _publish_one(source, zoo, name, version, allow_below_baseline, say) -> dict | None:
    """Publish one cascade model; a below-baseline model is skipped with a message. Never
    overwrites: the same files again are a no-op, other weights under ``version`` an error."""
    from xas_train.errors import TrainError
    from xas_train.publish import publish

    try:
        entry = publish(source, zoo, name, version, allow_below_baseline=allow_below_baseline)
    except TrainError as exc:
        if "below-baseline" not in str(exc):
            raise
        say(f"[quickstart] not published: {exc}")
        return None
    say(f"[quickstart] published {name} {version} -> {Path(zoo) / entry['path']}")
    return entry


def _run_zoo(out: Path) -> Path:
    """The run's own zoo ``<out>/zoo``, emptied: it holds the models of the latest run."""
    zoo = out / "zoo"
    shutil.rmtree(zoo, ignore_errors=True)
    return zoo


def prepare_data(out: Path, featurizer: str, progress: Progress) -> Path:
    """Copy the shipped store to ``out/data.zarr`` and featurize it (skipped when done)."""
    from xas_data import default_dataset_path
    from xas_features import get_featurizer
    from xas_features.storage import featurize_dataset

    data = out / "data.zarr"
    done = out / f".featurized-{featurizer}"
    if not data.exists():
        tmp = out / ".data.zarr.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(default_dataset_path(), tmp)
        tmp.rename(data)
    if not done.exists():
        progress(f"[quickstart] featurizing {data} with {featurizer} (offline)")
        t0 = time.perf_counter()
        featurize_dataset(data, get_featurizer(featurizer), force=True, progress=False)
        done.write_text("ok\n")
        progress(f"[quickstart] featurized in {time.perf_counter() - t0:.0f} s")
    return data


def quickstart(
    out: str | Path = "runs/quickstart",
    zoo: str | Path | None = None,
    *,
    publish: bool = True,
    featurizer: str = "chgnet",
    max_epochs: int | None = None,
    version: str = "0.1.0",
    overrides: list[str] | None = None,
    progress: Progress | None = print,
    fresh: bool = False,
    allow_below_baseline: bool = False,
) -> QuickstartResult:
    """Run the main job; returns the cascade result and the published zoo entries.

    ``zoo=None`` publishes into the run's own zoo ``<out>/zoo`` (emptied first, so it holds
    this run's models); a given ``zoo`` (e.g. ``model-zoo``) only gains versions: publishing
    other weights under an existing ``version`` raises TrainError (pass a new version).
    ``publish=False`` publishes nothing. Models with a test eta below 1 for some element are
    not published (a line says so) unless ``allow_below_baseline``, which publishes them
    flagged.

    ``overrides`` are dotted changes of :data:`QUICKSTART_CONFIG` (``model.dropout=0.2``).
    """
    say: Progress = progress or (lambda _m: None)
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(out, featurizer, say)
    raw = {**QUICKSTART_CONFIG, "output_dir": str(out)}
    raw["data"] = {**raw["data"], "dataset": str(data), "features": [featurizer]}
    if max_epochs is not None:
        raw["training"] = {**raw["training"], "max_epochs": max_epochs}
    base = parse_config(apply_overrides(raw, overrides or []), source="(quickstart)")
    cascade = run_cascade(base, tuned_overrides=TUNED_OVERRIDES, progress=progress, fresh=fresh)
    published = []
    if publish:
        zoo = _run_zoo(out) if zoo is None else Path(zoo)
        for run in cascade.runs:
            if run.status == "skipped" or run.recipe not in ("universal", "tuned"):
                continue
            suffix = (
                "universal" if run.recipe == "universal" else f"tuned-{run.elements[0].lower()}"
            )
            name = f"xasblock-{featurizer}-default-{run.fidelity.lower()}-{suffix}"
            entry = _publish_one(
                cascade.models[run.name], zoo, name, version, allow_below_baseline, say
            )
            if entry is not None:
                published.append(entry)
    return QuickstartResult(cascade, published, time.perf_counter() - t0, str(data))
