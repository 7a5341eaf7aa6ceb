"""Hyper-parameter search with Optuna, as OmniXAS tuned its per-element MLPs.

:func:`tune` runs ``n_trials`` training runs of one base :class:`~xas_train.config.RunConfig`,
each with hyper-parameters drawn by a seeded TPE sampler, minimises the best validation loss
(:attr:`TrainResult.best_val_loss`) and stops poor trials early with a median pruner fed by the
trainer's per-epoch validation loss. The training data are read once and shared by all trials.

The search space is data, not code (a dict or a YAML file, see :func:`load_space`)::

    training.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
    training.batch_size: {type: categorical, choices: [32, 64, 128, 256]}
    model.depth: {type: int, low: 1, high: 4}
    model.width: {type: categorical, choices: [128, 256, 400, 512, 800]}
    model.dropout: {type: float, low: 0.0, high: 0.5}

Each key is a dotted path into the ``model`` or ``training`` section of the config. Entry types:
``float`` and ``int`` (``low``, ``high``, optional ``log``, optional ``step``) and
``categorical`` (``choices``: a list of numbers, strings, booleans or nulls). The pair
``model.depth`` / ``model.width`` is special: it sets ``model.hidden_widths = [width] * depth``
(both must be given, and ``model.hidden_widths`` must then not be in the space).

Outputs, in ``<output_dir>/<name>-tune/``:

- ``best.yaml``: the base config with the best trial's values, named ``<name>-best`` (the base
  ``max_epochs`` and model registration are kept), ready for ``xas-train train``;
- ``trials.json``: every trial with its number, sampled params, value, state and MLflow run.

Each trial trains as run ``<name>-trial<NNN>`` in ``<output_dir>`` (an MLflow child run of the
parent run ``<name>-tune`` when tracking is enabled; its model is not registered). Tuning runs in
one process; it is not meant to be started under torchrun.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from xas_train.config import RunConfig, apply_overrides, dump_config, parse_config
from xas_train.errors import ConfigError, TrainError
from xas_train.tracking import Tracker

Progress = Callable[[str], None]

#: Search space for the ``xasblock`` MLP (ranges around the OmniXAS settings: Adam, lr ~1e-3,
#: batch 128, hidden widths of a few hundred, dropout up to 0.5).
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "training.lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
    "training.batch_size": {"type": "categorical", "choices": [32, 64, 128, 256]},
    "model.depth": {"type": "int", "low": 1, "high": 4},
    "model.width": {"type": "categorical", "choices": [128, 256, 400, 512, 800]},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "training.weight_decay": {"type": "categorical", "choices": [0.0, 1e-6, 1e-5, 1e-4]},
}

DEPTH_KEY = "model.depth"
WIDTH_KEY = "model.width"
TUNABLE_SECTIONS = ("model", "training")
_ALLOWED_FIELDS: dict[str, set[str]] = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


@dataclass
class TuneResult:
    """What a search produced.

    Attributes:
        best_value: best validation loss over the completed trials.
        best_params: the sampled values of the best trial (space keys -> values).
        best_config_path: the best full config as YAML (``<output_dir>/<name>-tune/best.yaml``).
        trials: one dict per trial: ``number``, ``params``, ``value`` (best validation loss;
            ``None`` unless completed), ``state`` (``COMPLETE``, ``PRUNED``, ``FAIL``),
            ``last_val_loss`` (last reported), ``run_id`` (MLflow, or ``None``), ``run_dir``,
            ``best_epoch``, ``epochs`` (last reported epoch), ``seconds``.
        parent_run_id: the MLflow parent run, ``None`` with tracking disabled.
        best_trial: number of the best trial.
        trials_path: ``trials.json`` next to ``best.yaml``.
    """

    best_value: float
    best_params: dict[str, Any]
    best_config_path: Path
    trials: list[dict[str, Any]]
    parent_run_id: str | None
    best_trial: int = -1
    trials_path: Path | None = None
    study_name: str = ""


# --------------------------------------------------------------------------- search space
def validate_space(space: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Check the form of a search space and return a normalised copy.

    Raises:
        ValueError: not a mapping, a key outside ``model.``/``training.``, an unknown entry type
            or field, bad bounds or choices, or an incomplete ``model.depth``/``model.width``
            pair. The message names the key and the fix.
    """
    if not isinstance(space, Mapping) or not space:
        raise ValueError(
            "the search space must be a non-empty mapping of 'section.key' -> "
            "{type: float|int|categorical, ...}, e.g. {'training.lr': {'type': 'float', "
            "'low': 1e-4, 'high': 3e-3, 'log': True}}"
        )
    out: dict[str, dict[str, Any]] = {}
    for key, spec in space.items():
        if not isinstance(key, str) or "." not in key or not all(key.split(".")):
            raise ValueError(
                f"search space key {key!r} must be a dotted config path like 'training.lr' "
                "or 'model.dropout'"
            )
        section = key.split(".", 1)[0]
        if section not in TUNABLE_SECTIONS:
            raise ValueError(
                f"search space key {key!r}: only the {' and '.join(TUNABLE_SECTIONS)} sections "
                "can be tuned (the data are loaded once for all trials and tracking/output "
                "settings are not hyper-parameters)"
            )
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"search space key {key!r}: expected a mapping like {{type: float, low: ..., "
                f"high: ...}}, got {spec!r}"
            )
        kind = spec.get("type")
        if kind not in _ALLOWED_FIELDS:
            raise ValueError(
                f"search space key {key!r}: unknown type {kind!r}; use one of "
                f"{', '.join(repr(k) for k in _ALLOWED_FIELDS)}"
            )
        unknown = sorted(set(spec) - _ALLOWED_FIELDS[kind])
        if unknown:
            raise ValueError(
                f"search space key {key!r}: unknown field(s) {unknown} for type {kind!r}; "
                f"allowed: {sorted(_ALLOWED_FIELDS[kind])}"
            )
        out[key] = _check_entry(key, kind, dict(spec))
    has_depth, has_width = DEPTH_KEY in out, WIDTH_KEY in out
    if has_depth != has_width:
        missing = WIDTH_KEY if has_depth else DEPTH_KEY
        raise ValueError(
            f"search space: {DEPTH_KEY!r} and {WIDTH_KEY!r} go together (they set "
            f"model.hidden_widths = [width] * depth); add {missing!r}"
        )
    if has_depth and "model.hidden_widths" in out:
        raise ValueError(
            "search space: 'model.hidden_widths' conflicts with 'model.depth'/'model.width'; "
            "keep one of them"
        )
    if has_depth:
        _check_int_values(DEPTH_KEY, out[DEPTH_KEY], minimum=0)
        _check_int_values(WIDTH_KEY, out[WIDTH_KEY], minimum=1)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_entry(key: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list | tuple) or not choices:
            raise ValueError(
                f"search space key {key!r}: categorical needs a non-empty list 'choices'"
            )
        bad = [c for c in choices if c is not None and not isinstance(c, bool | int | float | str)]
        if bad:
            raise ValueError(
                f"search space key {key!r}: choices must be numbers, strings, booleans or null, "
                f"got {bad!r}" + (" (use model.depth + model.width)" if "widths" in key else "")
            )
        if len(set(map(repr, choices))) != len(choices):
            raise ValueError(f"search space key {key!r}: choices {list(choices)} repeat a value")
        return {"type": kind, "choices": list(choices)}
    for bound in ("low", "high"):
        if bound not in spec:
            raise ValueError(f"search space key {key!r}: type {kind!r} needs '{bound}'")
        value = spec[bound]
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(f"search space key {key!r}: {bound} must be a number, got {value!r}")
        if kind == "int" and int(value) != value:
            raise ValueError(f"search space key {key!r}: {bound} must be an integer, got {value!r}")
    low, high = spec["low"], spec["high"]
    if low > high:
        raise ValueError(f"search space key {key!r}: low {low} > high {high}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"search space key {key!r}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ValueError(f"search space key {key!r}: log scale needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        if not _is_number(step) or step <= 0 or (kind == "int" and int(step) != step):
            raise ValueError(
                f"search space key {key!r}: step must be a positive "
                f"{'integer' if kind == 'int' else 'number'}, got {step!r}"
            )
        if log and (kind == "float" or step != 1):
            raise ValueError(f"search space key {key!r}: use either log or step, not both")
    out: dict[str, Any] = {"type": kind, "low": low, "high": high, "log": log}
    if kind == "int":
        out["low"], out["high"] = int(low), int(high)
    if step is not None:
        out["step"] = int(step) if kind == "int" else float(step)
    elif kind == "int":
        out["step"] = 1
    return out


def _check_int_values(key: str, spec: dict[str, Any], minimum: int) -> None:
    values = spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]
    if spec["type"] == "float" or any(
        isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values
    ):
        raise ValueError(
            f"search space key {key!r}: expected integers >= {minimum} (type int or integer "
            f"choices), got {spec}"
        )


def load_space(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a search space from a YAML file (the mapping itself, or under a ``space:`` key).

    Raises:
        ValueError: missing file, invalid YAML or an invalid space (see :func:`validate_space`).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"search space file {str(path)!r} not found; pass a YAML file path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"search space file {str(path)!r} is not valid YAML: {exc}") from None
    if isinstance(data, dict) and set(data) == {"space"}:
        data = data["space"]
    try:
        return validate_space(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _yaml_value(value: Any) -> str:
    """``value`` as override text that :func:`apply_overrides` parses back to ``value``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    text = text.removesuffix("\n").removesuffix("\n...")
    if yaml.safe_load(text) != value:  # pragma: no cover - guards odd scalars
        raise ValueError(f"cannot express {value!r} as a config override")
    return text


def params_to_overrides(params: Mapping[str, Any]) -> list[str]:
    """Sampled values -> dotted overrides; ``model.depth``/``model.width`` -> ``hidden_widths``."""
    overrides = []
    for key, value in params.items():
        if key in (DEPTH_KEY, WIDTH_KEY):
            continue
        overrides.append(f"{key}={_yaml_value(value)}")
    if DEPTH_KEY in params:
        widths = [int(params[WIDTH_KEY])] * int(params[DEPTH_KEY])
        overrides.append(f"model.hidden_widths={_yaml_value(widths)}")
    return overrides


def derive_config(
    base: RunConfig, params: Mapping[str, Any], extra: list[str] | None = None
) -> RunConfig:
    """``base`` with the sampled ``params`` (and further ``extra`` overrides) applied.

    Raises:
        ConfigError: a key that is not a config setting or a value it refuses (named).
    """
    data = apply_overrides(base.to_dict(), params_to_overrides(params) + list(extra or []))
    return parse_config(data, source="derived from the search space")


def _candidates(spec: dict[str, Any]) -> list[Any]:
    if spec["type"] == "categorical":
        return list(spec["choices"])
    return [spec["low"], spec["high"]]


def check_space_fits(config: RunConfig, space: dict[str, dict[str, Any]]) -> None:
    """Apply every bound/choice of ``space`` to ``config`` before any training.

    Raises:
        ConfigError: a space key that is no setting of the config, or a value it refuses; for
            ``model.*`` keys of a fresh model the architecture validates the value too.
    """
    first = {k: _candidates(s)[0] for k, s in space.items()}
    for key, spec in space.items():
        for value in _candidates(spec):
            params = {**first, key: value}
            try:
                derived = derive_config(config, params)
            except ConfigError as exc:
                raise ConfigError(f"search space key {key!r} = {value!r}: {exc}") from None
            if key.startswith("model.") and not config.init_from:
                _check_model(derived, key, value)


def _check_model(config: RunConfig, key: str, value: Any) -> None:
    import xas_models as xm

    arch = config.model.architecture or "xasblock"
    try:
        xm.build_model(arch, {**config.model.params(), "input_dim": 1, "output_dim": 1})
    except xm.ModelError as exc:
        raise ConfigError(f"search space key {key!r} = {value!r}: {exc}") from None


# --------------------------------------------------------------------------- Optuna glue
def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Draw one value per space key from an Optuna ``trial``."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        if spec["type"] == "categorical":
            params[key] = trial.suggest_categorical(key, spec["choices"])
        elif spec["type"] == "int":
            kwargs = {"log": True} if spec["log"] else {"step": spec["step"]}
            params[key] = trial.suggest_int(key, spec["low"], spec["high"], **kwargs)
        else:
            kwargs = {"step": spec["step"]} if "step" in spec else {"log": spec["log"]}
            params[key] = trial.suggest_float(key, spec["low"], spec["high"], **kwargs)
    return params


def pruning_callback(trial: Any) -> Callable[[int, float], None]:
    """The trainer's ``epoch_callback`` for ``trial``: report each epoch's validation loss.

    Raises ``optuna.TrialPruned`` (which ends the training run) when the pruner says so, or when
    the validation loss is no longer finite (a diverged run).
    """
    import optuna

    def callback(epoch: int, val_loss: float) -> None:
        if not math.isfinite(val_loss):
            trial.set_user_attr("last_epoch", epoch)
            raise optuna.TrialPruned(f"validation loss {val_loss} at epoch {epoch}")
        trial.report(float(val_loss), epoch)
        if trial.should_prune():
            trial.set_user_attr("last_epoch", epoch)
            raise optuna.TrialPruned(f"pruned at epoch {epoch} (val loss {val_loss:.4g})")

    return callback


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _trial_record(t: Any) -> dict[str, Any]:
    # Optuna stores a pruned trial's last reported loss as its value; only completed trials
    # have a value here (the pruned ones keep theirs as ``last_val_loss``).
    value = t.value if t.values and t.state.name == "COMPLETE" else None
    last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
    epochs = t.user_attrs.get("last_epoch")
    if epochs is None and t.intermediate_values:
        epochs = max(t.intermediate_values)
    return {
        "number": t.number,
        "params": dict(t.params),
        "value": None if value is None or not math.isfinite(value) else float(value),
        "state": t.state.name,
        "last_val_loss": None if last is None else float(last),
        "run_id": t.user_attrs.get("run_id"),
        "run_dir": t.user_attrs.get("run_dir"),
        "best_epoch": t.user_attrs.get("best_epoch"),
        "epochs": epochs,
        "seconds": t.user_attrs.get("seconds"),
    }


def _child_run_ids(config: RunConfig, parent_run_id: str) -> dict[str, str]:
    """Run name -> id of the parent's child runs (pruned trials return no TrainResult)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config.tracking_uri())
    exp = client.get_experiment_by_name(config.mlflow.experiment)
    if exp is None:
        return {}
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )
    return {r.data.tags.get("mlflow.runName", r.info.run_name): r.info.run_id for r in runs}


def _format_params(params: Mapping[str, Any]) -> str:
    parts = []
    for k, v in params.items():
        short = k.split(".", 1)[1]
        parts.append(f"{short}={v:.3g}" if isinstance(v, float) else f"{short}={v}")
    return " ".join(parts)


# --------------------------------------------------------------------------- the search
def tune(
    config: RunConfig,
    n_trials: int,
    *,
    space: Mapping[str, Any] | str | Path | None = None,
    seed: int = 0,
    timeout_s: float | None = None,
    trial_max_epochs: int | None = None,
    progress: Progress | None = print,
    study_storage: str | None = None,
    pruner: Any = None,
) -> TuneResult:
    """Search hyper-parameters of ``config`` with Optuna (TPE + median pruning).

    Args:
        config: the base run config; every trial is this config with sampled values.
        n_trials: number of trials to run (>= 1); fewer when ``timeout_s`` runs out first.
        space: search space dict or YAML file path (default :data:`DEFAULT_SPACE`).
        seed: seed of the TPE sampler (the trials train with ``config.training.seed``).
        timeout_s: stop starting new trials after this many seconds.
        trial_max_epochs: cap on ``training.max_epochs`` per trial (quick searches); the written
            best config keeps the base ``max_epochs``.
        progress: where one line per trial goes; ``None`` for silence.
        study_storage: Optuna storage URL (e.g. ``sqlite:///optuna.db``) to keep the study
            ``<name>-tune`` and continue it in a later call; ``None`` keeps it in memory.
        pruner: an Optuna pruner; default ``MedianPruner(n_startup_trials=3,
            n_warmup_steps=20)`` (no pruning before 3 trials finished, nor before epoch 20).

    Returns:
        the :class:`TuneResult`; ``best.yaml`` and ``trials.json`` are written to
        ``<output_dir>/<name>-tune/``.

    Raises:
        ValueError: ``n_trials < 1``, ``trial_max_epochs < 1`` or an invalid space.
        ConfigError: a space key or value the config refuses (before any training).
        TrainError: data or training errors, or no trial completed.
    """
    import optuna

    from xas_train.data import load_training_data
    from xas_train.trainer import train

    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if trial_max_epochs is not None and trial_max_epochs < 1:
        raise ValueError(f"trial_max_epochs must be >= 1 or None, got {trial_max_epochs!r}")
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0 or None, got {timeout_s!r}")
    if space is None:
        space = DEFAULT_SPACE
    space = load_space(space) if isinstance(space, str | Path) else validate_space(space)
    check_space_fits(config, space)

    say: Progress = progress or (lambda _m: None)
    study_name = f"{config.name}-tune"
    tune_dir = Path(config.output_dir) / study_name

    data = load_training_data(config.data, seed=config.training.seed)

    tracker = Tracker(config.tracking_uri(), config.mlflow.experiment, config.mlflow.enabled)
    parent_run_id = tracker.start(study_name, {**config.mlflow.tags, "recipe": "tune"})
    tracker.log_params(
        {
            "space": space,
            "tune": {
                "n_trials": n_trials,
                "seed": seed,
                "timeout_s": timeout_s,
                "trial_max_epochs": trial_max_epochs,
                "sampler": "TPESampler",
                "pruner": type(pruner).__name__ if pruner is not None else "MedianPruner",
                "base_recipe": config.recipe,
            },
        }
    )
    tracker.log_text(yaml.safe_dump(space, sort_keys=False), "space.yaml")
    tracker.log_text(dump_config(config), "base_config.yaml")

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        trial_name = f"{config.name}-trial{trial.number:03d}"
        extra = [
            f"name={trial_name}",
            "mlflow.register_model=false",
            f"mlflow.tags.tune_study={_yaml_value(study_name)}",
            f"mlflow.tags.optuna_trial={_yaml_value(str(trial.number))}",
        ]
        if trial_max_epochs is not None:
            if derive_config(config, params).training.max_epochs > trial_max_epochs:
                extra.append(f"training.max_epochs={trial_max_epochs}")
        trial_config = derive_config(config, params, extra)
        trial.set_user_attr("run_dir", str(trial_config.run_dir))
        say(f"[{study_name}] trial {trial.number}: {_format_params(params)}")
        t_trial = time.perf_counter()
        try:
            result = train(
                trial_config,
                parent_run_id=parent_run_id,
                progress=None,
                fresh=True,
                epoch_callback=pruning_callback(trial),
                data=data,
            )
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - t_trial, 3))
        trial.set_user_attr("run_id", result.run_id)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("last_epoch", result.epochs_run)
        return float(result.best_val_loss)

    def report(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        if frozen.state == optuna.trial.TrialState.COMPLETE:
            best = study.best_trial
            say(
                f"[{study_name}] trial {frozen.number}: val loss {frozen.value:.4g} at epoch "
                f"{frozen.user_attrs.get('best_epoch')} (best {best.value:.4g}, trial "
                f"{best.number})"
            )
        elif frozen.state == optuna.trial.TrialState.PRUNED:
            say(
                f"[{study_name}] trial {frozen.number}: pruned at epoch "
                f"{frozen.user_attrs.get('last_epoch')}"
            )

    status = "FAILED"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=study_storage,
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=20),
            study_name=study_name,
            direction="minimize",
            load_if_exists=study_storage is not None,
        )
        t0 = time.perf_counter()
        study.optimize(objective, n_trials=n_trials, timeout=timeout_s, callbacks=[report])
        trials = [_trial_record(t) for t in study.trials]
        if parent_run_id:
            ids = _child_run_ids(config, parent_run_id)
            for record in trials:
                if record["run_id"] is None and record["run_dir"]:
                    record["run_id"] = ids.get(Path(record["run_dir"]).name)
        trials_path = tune_dir / "trials.json"
        _write_text(trials_path, json.dumps(trials, indent=2, default=str) + "\n")
        if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
            raise TrainError(
                f"no trial of {study_name} completed ({len(trials)} pruned or failed, see "
                f"{trials_path}); run more trials, give the pruner more warm-up epochs or "
                "allow more time"
            )
        best = study.best_trial
        best_config = derive_config(config, best.params, [f"name={config.name}-best"])
        best_path = tune_dir / "best.yaml"
        _write_text(best_path, dump_config(best_config))
        counts = {s: sum(r["state"] == s for r in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
        tracker.log_params({"best": {"trial": best.number, **best.params}})
        tracker.log_metrics(
            {
                "best_val_loss": float(best.value),
                "n_complete": counts["COMPLETE"],
                "n_pruned": counts["PRUNED"],
                "n_failed": counts["FAIL"],
            },
            step=0,
            flush=True,
        )
        tracker.log_text(dump_config(best_config), "best.yaml")
        tracker.log_text(trials_path.read_text(encoding="utf-8"), "trials.json")
        say(
            f"[{study_name}] best val loss {best.value:.4g} (trial {best.number}: "
            f"{_format_params(best.params)}) after {len(trials)} trial(s), "
            f"{counts['PRUNED']} pruned, {time.perf_counter() - t0:.1f} s -> {best_path}"
        )
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        optuna.logging.set_verbosity(verbosity)
        tracker.end(status)
    return TuneResult(
        best_value=float(best.value),
        best_params=dict(best.params),
        best_config_path=best_path,
        trials=trials,
        parent_run_id=parent_run_id,
        best_trial=best.number,
        trials_path=trials_path,
        study_name=study_name,
    )
