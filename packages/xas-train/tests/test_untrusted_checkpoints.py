"""A run folder is untrusted input: a planted pickle in it must be refused, never run.

Each test plants a pickle whose ``__reduce__`` would create a marker file (``os.system``
through torch.save, or plain ``pickle.dump``) and checks that ``evaluate``, a resuming
``train`` and ``publish`` stop with one clear line and that the marker never appears.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from xas_testkit import DEADLINE_S

from xas_train.config import load_config
from xas_train.errors import TrainError
from xas_train.publish import publish
from xas_train.safe_checkpoint import check_checkpoint_folder, safe_load
from xas_train.trainer import evaluate_checkpoint, train

SETTINGS = {"max_epochs": 4, "checkpoint_every": 2, "patience": 100, "batch_size": 16}


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _config(toy_store: Path, out: Path, name: str = "run") -> Path:
    config = {
        "name": name,
        "recipe": "expert",
        "data": {"dataset": str(toy_store), "features": ["toy"], "elements": ["Cu"]},
        "model": {"hidden_widths": [16], "dropout": 0.0},
        "training": {"lr": 3e-3, **SETTINGS},
        "mlflow": {"enabled": False},
        "output_dir": str(out),
    }
    config["data"]["fidelity"] = "FEFF"
    path = out.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def trained_run(toy_store, tmp_path_factory) -> Path:
    """A finished run with checkpoints at epochs 2 and 4 (copied by each test)."""
    out = tmp_path_factory.mktemp("trusted") / "runs"
    out.mkdir()
    train(load_config(_config(toy_store, out)), progress=None)
    return out / "run"


@pytest.fixture
def run_copy(trained_run, toy_store, tmp_path):
    """``(config path, run dir, latest tag dir)`` of a private copy of the trained run."""
    out = tmp_path / "runs"
    shutil.copytree(trained_run, out / "run")
    run_dir = out / "run"
    tag = (run_dir / "checkpoints" / "latest").read_text().strip()
    return _config(toy_store, out), run_dir, run_dir / "checkpoints" / tag


def _plant(path: Path, marker: Path) -> None:
    torch.save({"module": Payload(marker), "best_state": {}}, path)


def test_evaluate_refuses_a_planted_model_state(run_copy, tmp_path):
    config, _, tag_dir = run_copy
    marker = tmp_path / "pwned"
    _plant(tag_dir / "mp_rank_00_model_states.pt", marker)
    with pytest.raises(TrainError, match="refused to load it") as info:
        evaluate_checkpoint(load_config(config), progress=None)
    assert "posix.system" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_evaluate_cli_prints_one_line_and_exits_2(run_copy, tmp_path):
    config, _, tag_dir = run_copy
    marker = tmp_path / "pwned"
    _plant(tag_dir / "mp_rank_00_model_states.pt", marker)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "xas_train.cli", "evaluate", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=DEADLINE_S,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "refused to load it" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("planted", ["mp_rank_00_model_states.pt", "extra_states.pt"])
def test_resume_refuses_a_planted_pickle(run_copy, tmp_path, planted):
    config, run_dir, tag_dir = run_copy
    marker = tmp_path / "pwned"
    _plant(tag_dir / planted, marker)
    (run_dir / "result.json").unlink()
    with pytest.raises(TrainError, match="refused to load it"):  # same config: it resumes
        train(load_config(config), progress=None)
    assert not marker.exists()


def test_latest_naming_a_folder_outside_is_refused(run_copy, tmp_path):
    config, run_dir, _ = run_copy
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _plant(outside / "mp_rank_00_model_states.pt", tmp_path / "pwned")
    (run_dir / "checkpoints" / "latest").write_text("../../../elsewhere")
    with pytest.raises(TrainError, match="not a checkpoint folder inside"):
        evaluate_checkpoint(load_config(config), progress=None)
    assert not (tmp_path / "pwned").exists()


def test_plain_pickle_and_garbage_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(TrainError, match="refused to load it"):
        safe_load(legacy)
    with pytest.raises(TrainError, match="refused to load it"):
        check_checkpoint_folder(tmp_path)
    (tmp_path / "legacy.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="refused to load it"):
        safe_load(tmp_path / "legacy.pt")
    assert not marker.exists()


def test_legit_states_load_with_weights_only(run_copy):
    _, _, tag_dir = run_copy
    check_checkpoint_folder(tag_dir)
    state = safe_load(tag_dir / "mp_rank_00_model_states.pt")
    assert state["best_state"] and state["epoch"] == 4


def test_publish_refuses_pickles_in_the_checkpoint(run_copy, tmp_path):
    _, run_dir, _ = run_copy
    marker = tmp_path / "pwned"
    zoo = tmp_path / "zoo"
    _plant(run_dir / "model" / "mp_rank_00_model_states.pt", marker)
    with pytest.raises(TrainError, match="beside the checkpoint"):
        publish(run_dir, zoo, "toy", "0.1.0")
    (run_dir / "model" / "mp_rank_00_model_states.pt").unlink()
    _plant(run_dir / "model" / "model.safetensors", marker)  # a pickle under the weights' name
    with pytest.raises(TrainError, match="cannot publish"):
        publish(run_dir, zoo, "toy", "0.1.0")
    assert not marker.exists() and not (zoo / "toy").exists()


def test_deepspeed_reads_through_the_weights_only_loader(run_copy, tmp_path, monkeypatch):
    """Even with the folder pre-check skipped, DeepSpeed's own load is weights-only."""
    import xas_train.safe_checkpoint as safe

    config, run_dir, tag_dir = run_copy
    marker = tmp_path / "pwned"
    _plant(tag_dir / "mp_rank_00_model_states.pt", marker)
    (run_dir / "result.json").unlink()
    monkeypatch.setattr(safe, "check_checkpoint_folder", lambda folder: None)
    with pytest.raises(TrainError, match="refused to load it"):
        train(load_config(config), progress=None)
    assert not marker.exists()


def test_deepspeed_state_classes_round_trip(tmp_path):
    """fp16 loss scalers, ZeRO stage and bf16/ZeRO fragment addresses (GPU-only states) are
    on the allowlist and load with weights_only=True."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    scaler = DynamicLossScaler(
        init_scale=2**12,
        scale_window=1000,
        min_scale=1,
        delayed_shift=2,
        consecutive_hysteresis=False,
        raise_error_at_min_scale=True,
        dtype=torch.float16,
    )
    states = {
        "loss_scaler": scaler,
        "static": LossScaler(128.0),
        "param_slice_mappings": {"w": fragment_address(numel=4, start=0)},
        "zero_stage": ZeroStageEnum.gradients,
    }
    torch.save(states, tmp_path / "optim_states.pt")
    check_checkpoint_folder(tmp_path)
    loaded = safe_load(tmp_path / "optim_states.pt")
    assert loaded["loss_scaler"].cur_scale == 4096 and loaded["static"].cur_scale == 128.0
    assert loaded["param_slice_mappings"]["w"].numel == 4
    assert loaded["zero_stage"] is ZeroStageEnum.gradients
