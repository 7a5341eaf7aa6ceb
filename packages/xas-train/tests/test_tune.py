"""Hyper-parameter search: space validation, the pruning callback, real studies on the toy
store (with and without MLflow child runs) and median pruning of a hopeless trial."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import yaml

from xas_train.config import load_config
from xas_train.errors import ConfigError
from xas_train.tune import (
    DEFAULT_SPACE,
    derive_config,
    load_space,
    params_to_overrides,
    pruning_callback,
    tune,
    validate_space,
)

SMALL_SPACE = {
    "training.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "model.depth": {"type": "int", "low": 1, "high": 2},
    "model.width": {"type": "categorical", "choices": [16, 32]},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.3},
}


# --------------------------------------------------------------------------- no training
def test_default_space_is_valid_and_fits_the_base_config(write_config):
    assert validate_space(DEFAULT_SPACE).keys() == DEFAULT_SPACE.keys()
    from xas_train.tune import check_space_fits

    check_space_fits(load_config(write_config("base")), validate_space(DEFAULT_SPACE))


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({}, "non-empty mapping"),
        ({"training.lr": {"type": "gauss", "low": 0, "high": 1}}, "unknown type 'gauss'"),
        ({"training.lr": {"type": "float", "low": 0.1, "high": 1, "lg": True}}, r"\['lg'\]"),
        ({"training.lr": {"type": "float", "low": 1.0}}, "needs 'high'"),
        ({"training.lr": {"type": "float", "low": 1.0, "high": 0.1}}, "low 1.0 > high 0.1"),
        ({"training.lr": {"type": "float", "low": 0.0, "high": 1, "log": True}}, "low > 0"),
        ({"training.batch_size": {"type": "categorical", "choices": []}}, "non-empty list"),
        ({"model.depth": {"type": "int", "low": 1, "high": 3}}, "add 'model.width'"),
        (
            {
                "model.depth": {"type": "int", "low": 1, "high": 3},
                "model.width": {"type": "float", "low": 1, "high": 3},
            },
            "expected integers",
        ),
        ({"lr": {"type": "float", "low": 0.1, "high": 1}}, "dotted config path"),
        ({"mlflow.experiment": {"type": "categorical", "choices": ["a"]}}, "only the model"),
        ({"data.features": {"type": "categorical", "choices": ["toy"]}}, "only the model"),
        (
            {"model.hidden_widths": {"type": "categorical", "choices": [[16], [32, 32]]}},
            "model.depth \\+ model.width",
        ),
    ],
)
def test_bad_spaces_raise_value_error(space, match):
    with pytest.raises(ValueError, match=match):
        validate_space(space)


def test_space_keys_and_values_are_checked_against_the_config(write_config):
    cfg = write_config("base")
    bad_key = {"training.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3}}
    with pytest.raises(ConfigError, match="unknown key 'training.learning_rate'"):
        tune(load_config(cfg), 1, space=bad_key, progress=None)
    bad_model_key = {"model.dropout_rate": {"type": "float", "low": 0.0, "high": 0.5}}
    with pytest.raises(ConfigError, match="'model.dropout_rate'.*unknown key 'dropout_rate'"):
        tune(load_config(cfg), 1, space=bad_model_key, progress=None)
    bad_value = {"model.dropout": {"type": "float", "low": 0.0, "high": 1.0}}
    with pytest.raises(ConfigError, match="'model.dropout' = 1.0"):
        tune(load_config(cfg), 1, space=bad_value, progress=None)
    with pytest.raises(ValueError, match="n_trials"):
        tune(load_config(cfg), 0, space=SMALL_SPACE, progress=None)
    with pytest.raises(ValueError, match="unknown type"):
        tune(load_config(cfg), 1, space={"training.lr": {"type": "x"}}, progress=None)
    assert not (Path(load_config(cfg).output_dir)).exists()  # nothing trained or written


def test_load_space_reads_yaml_files(tmp_path):
    plain = tmp_path / "space.yaml"
    plain.write_text(yaml.safe_dump(SMALL_SPACE))
    wrapped = tmp_path / "wrapped.yaml"
    wrapped.write_text(yaml.safe_dump({"space": SMALL_SPACE}))
    assert load_space(plain) == load_space(wrapped) == validate_space(SMALL_SPACE)
    assert load_space(plain)["model.depth"] == {
        "type": "int",
        "low": 1,
        "high": 2,
        "log": False,
        "step": 1,
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text("training.lr: {type: float, low: 1}\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*needs 'high'"):
        load_space(bad)
    with pytest.raises(ValueError, match="not found"):
        load_space(tmp_path / "missing.yaml")


def test_params_become_config_overrides(write_config):
    params = {"training.lr": 1.2345e-05, "model.depth": 3, "model.width": 64, "model.dropout": 0.0}
    assert params_to_overrides(params) == [
        "training.lr=1.2345e-05",
        "model.dropout=0.0",
        "model.hidden_widths=[64, 64, 64]",
    ]
    cfg = derive_config(load_config(write_config("base")), params, ["name=x"])
    assert cfg.training.lr == 1.2345e-05  # not the string '1.2345e-05'
    assert cfg.model.params()["hidden_widths"] == [64, 64, 64]
    assert cfg.model.params()["dropout"] == 0.0
    assert cfg.name == "x"


class FakeTrial:
    """Records reports; prunes from epoch ``prune_at`` on."""

    def __init__(self, prune_at: int) -> None:
        self.prune_at = prune_at
        self.reports: list[tuple[int, float]] = []
        self.user_attrs: dict[str, object] = {}

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return bool(self.reports) and self.reports[-1][0] >= self.prune_at

    def set_user_attr(self, key: str, value: object) -> None:
        self.user_attrs[key] = value


def test_pruning_callback_reports_and_raises():
    trial = FakeTrial(prune_at=3)
    callback = pruning_callback(trial)
    callback(1, 0.5)
    callback(2, 0.4)
    with pytest.raises(optuna.TrialPruned, match="epoch 3"):
        callback(3, 0.45)
    assert trial.reports == [(1, 0.5), (2, 0.4), (3, 0.45)]
    assert trial.user_attrs["last_epoch"] == 3
    diverged = FakeTrial(prune_at=100)
    with pytest.raises(optuna.TrialPruned, match="nan"):
        pruning_callback(diverged)(1, math.nan)
    assert diverged.reports == []


# --------------------------------------------------------------------------- real studies
def test_study_writes_the_best_config(write_config, tmp_path):
    base = load_config(write_config("cu", training={"max_epochs": 30}))
    result = tune(base, 3, space=SMALL_SPACE, seed=1, trial_max_epochs=10, progress=None)

    assert result.parent_run_id is None
    assert [t["number"] for t in result.trials] == [0, 1, 2]
    assert all(t["state"] == "COMPLETE" for t in result.trials)
    values = [t["value"] for t in result.trials]
    assert len(set(values)) == 3  # different hyper-parameters, different losses
    assert len({json.dumps(t["params"], sort_keys=True) for t in result.trials}) == 3
    assert result.best_value == min(values)
    best = result.trials[values.index(min(values))]
    assert result.best_params == best["params"] and result.best_trial == best["number"]

    runs = tmp_path / "runs"
    for t in result.trials:
        run_dir = runs / f"cu-trial{t['number']:03d}"
        assert t["run_dir"] == str(run_dir)
        history = json.loads((run_dir / "history.json").read_text())
        assert len(history) == 10  # capped by trial_max_epochs
        assert min(h["val_loss"] for h in history) == pytest.approx(t["value"])
        trial_cfg = load_config(run_dir / "config.yaml")
        assert trial_cfg.mlflow.register_model is False
        assert trial_cfg.training.lr == pytest.approx(t["params"]["training.lr"])

    assert result.best_config_path == runs / "cu-tune" / "best.yaml"
    cfg = load_config(result.best_config_path)
    p = result.best_params
    assert cfg.name == "cu-best"
    assert cfg.training.lr == pytest.approx(p["training.lr"])
    assert cfg.model.params()["hidden_widths"] == [p["model.width"]] * p["model.depth"]
    assert cfg.model.params()["dropout"] == pytest.approx(p["model.dropout"])
    assert cfg.training.max_epochs == 30  # the cap applies to trials only
    assert cfg.mlflow.register_model is True
    assert cfg.data == base.data
    on_disk = json.loads((runs / "cu-tune" / "trials.json").read_text())
    assert on_disk == json.loads(json.dumps(result.trials))
    assert not (runs / "mlflow.db").exists()  # tracking disabled: no MLflow at all


def test_trials_are_child_runs_of_the_tune_run(write_config, tmp_path):
    from mlflow.tracking import MlflowClient

    base = load_config(write_config("ni", mlflow={"enabled": True, "experiment": "tune-test"}))
    result = tune(base, 3, space=SMALL_SPACE, seed=0, trial_max_epochs=4, progress=None)
    assert result.parent_run_id

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tune-test")
    parent = client.get_run(result.parent_run_id)
    assert parent.info.run_name == "ni-tune"
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["recipe"] == "tune"
    assert "space.training.lr.low" in parent.data.params
    assert parent.data.params["best.trial"] == str(result.best_trial)

    children = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'"
    )
    assert sorted(r.info.run_name for r in children) == [f"ni-trial{i:03d}" for i in range(3)]
    by_id = {r.info.run_id: r for r in children}
    for t in result.trials:
        child = by_id[t["run_id"]]
        assert child.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert child.data.tags["optuna_trial"] == str(t["number"])
        assert child.data.metrics["best_val_loss"] == pytest.approx(t["value"])
    completed = [t["value"] for t in result.trials if t["state"] == "COMPLETE"]
    assert parent.data.metrics["best_val_loss"] == pytest.approx(min(completed))
    assert parent.data.metrics["best_val_loss"] == pytest.approx(result.best_value)
    assert client.search_registered_models() == []  # trials register no models


def test_median_pruner_stops_a_hopeless_trial(write_config, tmp_path):
    from mlflow.tracking import MlflowClient

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    base = load_config(
        write_config("cu", training={"max_epochs": 40, "lr": 3e-3}, mlflow={"enabled": True})
    )
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=3)
    good = {"training.lr": {"type": "float", "low": 3e-3, "high": 3e-3}}
    first = tune(base, 1, space=good, study_storage=storage, pruner=pruner, progress=None)
    assert [t["state"] for t in first.trials] == ["COMPLETE"]

    # the same study continued with a learning rate that cannot learn anything
    hopeless = {"training.lr": {"type": "float", "low": 1e-9, "high": 1e-9}}
    second = tune(base, 1, space=hopeless, study_storage=storage, pruner=pruner, progress=None)
    assert [t["state"] for t in second.trials] == ["COMPLETE", "PRUNED"]
    pruned = second.trials[1]
    assert pruned["value"] is None
    assert pruned["last_val_loss"] > first.best_value
    assert 3 <= pruned["epochs"] < 40
    run_dir = tmp_path / "runs" / "cu-trial001"
    assert pruned["run_dir"] == str(run_dir) and run_dir.is_dir()
    assert not (run_dir / "model").exists()  # stopped inside the loop: no final model
    assert second.best_trial == 0
    client = MlflowClient(tracking_uri=base.tracking_uri())
    pruned_run = client.get_run(pruned["run_id"])  # found although train() never returned
    assert pruned_run.info.run_name == "cu-trial001"
    assert pruned_run.info.status == "KILLED"
    assert pruned_run.data.tags["mlflow.parentRunId"] == second.parent_run_id
    assert second.trials[0]["run_id"] == first.trials[0]["run_id"]
    assert client.get_run(second.parent_run_id).info.status == "FINISHED"
    assert second.best_params == {"training.lr": 3e-3}
