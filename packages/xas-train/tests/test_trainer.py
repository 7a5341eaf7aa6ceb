"""Trainer: a real run on the toy store, resume after a kill, and equal weights under torchrun
(2 ranks), two simulated nodes and the deepspeed launcher."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from xas_testkit import Background, run_logged, wait_all, wait_for

from xas_train.config import load_config
from xas_train.distributed import free_port
from xas_train.errors import ConfigError, TrainError
from xas_train.trainer import train

TRAIN = [sys.executable, "-m", "xas_train.cli", "train"]

# ``xas-train`` that stops itself (SIGSTOP) as it begins to save checkpoint TAG: the test then
# kills it at that very point, however fast or slow the machine (an audit hook sees the
# checkpoint folder or file being created; nothing of the trainer is patched)
_STOP_AT_CHECKPOINT = textwrap.dedent(
    """
    import os, runpy, signal, sys

    TAG = sys.argv.pop(1)


    def stop_at_checkpoint(event, args):
        if event in ("os.mkdir", "open") and args and TAG in str(args[0]):
            os.kill(os.getpid(), signal.SIGSTOP)


    sys.addaudithook(stop_at_checkpoint)
    sys.argv[0] = "xas-train"
    runpy.run_module("xas_train.cli", run_name="__main__")
    """
)


def weights(run_dir: Path) -> dict[str, np.ndarray]:
    return {
        k: v.numpy() for k, v in load_file(str(run_dir / "model" / "model.safetensors")).items()
    }


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    params = [k for k in wa if "running" not in k and "num_batches" not in k]
    for k in params:
        np.testing.assert_allclose(wa[k], wb[k], atol=atol, rtol=0, err_msg=k)
    assert max(float(np.abs(wa[k]).max()) for k in params) > 0.01  # not trivially zero


def run(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.CompletedProcess:
    """Run ``cmd`` to completion in its own process group (launcher workers included), output
    in ``log``; fails with the log's tail on a non-zero exit or after the testkit deadline."""
    return run_logged(cmd, log, env=env)


def test_single_process_run_learns_and_writes_everything(write_config, tmp_path):
    cfg = load_config(write_config("single", training={"max_epochs": 80}))
    result = train(cfg, progress=None)
    run_dir = Path(result.run_dir)
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history) == 80 == result.epochs_run
    assert history[-1]["val_loss"] < 0.5 * history[0]["val_loss"]
    assert result.metrics["Cu"]["eta"] > 1.5  # beats the mean-spectrum baseline on test
    assert (run_dir / "model" / "model.json").is_file()
    meta = json.loads((run_dir / "model" / "model.json").read_text())
    assert meta["featurizer"]["key"] == "toy-v1-0000"
    assert meta["energy_grid"]["n_points"] == 40
    assert Path(result.predictions[0]).is_file()


def test_universal_keeps_per_element_grids(write_config):
    cfg = load_config(
        write_config("uni", recipe="universal", data={"elements": None}, training={"max_epochs": 5})
    )
    result = train(cfg, progress=None)
    meta = json.loads((Path(result.model_dir) / "model.json").read_text())
    assert set(meta["energy_grids"]) == {"Cu", "Ni"}
    assert meta["energy_grids"]["Ni"]["start"] == pytest.approx(8333.0)
    assert meta["energy_grids"]["Cu"]["start"] == pytest.approx(8983.0)
    assert set(result.metrics) == {"Cu", "Ni"}


def test_tuned_starts_from_the_universal_weights(write_config):
    uni = train(
        load_config(
            write_config(
                "uni0", recipe="universal", data={"elements": None}, training={"max_epochs": 3}
            )
        ),
        progress=None,
    )
    cfg = load_config(
        write_config(
            "tuned",
            recipe="tuned",
            init_from=uni.model_dir,
            model={"dropout": 0.0},
            training={"max_epochs": 1, "lr": 1e-9},
        )
    )
    tuned = train(cfg, progress=None)
    a, b = weights(Path(uni.run_dir)), weights(Path(tuned.run_dir))
    # lr 1e-9 for one epoch: the tuned model is the universal one (scaling buffers included)
    np.testing.assert_allclose(a["net.0.weight"], b["net.0.weight"], atol=1e-6)
    np.testing.assert_array_equal(a["input_mean"], b["input_mean"])
    meta = json.loads((Path(tuned.model_dir) / "model.json").read_text())
    assert meta["config"]["dropout"] == 0.0


def test_bad_inputs_fail_before_training(write_config, tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'training.learning_rate'"):
        load_config(write_config("bad1", training={"learning_rate": 1.0}))
    with pytest.raises(ConfigError, match="training.lr"):
        load_config(write_config("bad2", training={"lr": -1}))
    with pytest.raises(ConfigError, match="hidden_width"):
        train(load_config(write_config("bad3", model={"hidden_width": [3]})), progress=None)
    with pytest.raises(TrainError, match="no complete 'soap' features"):
        train(load_config(write_config("bad4", data={"features": ["soap"]})), progress=None)
    with pytest.raises(TrainError, match=r"element\(s\) \['Fe'\] have no FEFF spectra"):
        train(load_config(write_config("bad5", data={"elements": ["Fe"]})), progress=None)
    other = tmp_path / "other-arch"
    other.mkdir()
    (other / "model.json").write_text("{}")
    with pytest.raises(TrainError, match="init_from"):
        train(
            load_config(write_config("bad6", recipe="tuned", init_from=str(other))), progress=None
        )
    assert not (tmp_path / "runs" / "bad4").exists()


def test_init_from_another_architecture_is_refused(write_config, monkeypatch):
    uni = train(
        load_config(
            write_config(
                "uni1", recipe="universal", data={"elements": None}, training={"max_epochs": 1}
            )
        ),
        progress=None,
    )
    cfg = load_config(
        write_config("t2", recipe="tuned", init_from=uni.model_dir, model={"architecture": "cgxas"})
    )
    with pytest.raises(TrainError, match="is a 'xasblock' checkpoint"):
        train(cfg, progress=None)


def test_resume_after_kill_gives_the_uninterrupted_result(write_config, tmp_path, subprocess_env):
    settings = {"max_epochs": 150, "checkpoint_every": 5, "patience": 1000}
    ref = train(load_config(write_config("ref", training=settings)), progress=None)
    cfg = write_config("killed", training=settings)
    run_dir = tmp_path / "runs" / "killed"
    cmd = [sys.executable, "-c", _STOP_AT_CHECKPOINT, "epoch000025", "train", str(cfg)]
    proc = Background(cmd, tmp_path / "killed.log", env=subprocess_env)
    try:  # the kill comes as checkpoint 25 begins, checkpoint 20 complete: never before
        wait_for(
            lambda: proc.state() == "T",
            "the run to stop as it begins checkpoint epoch000025",
            process=proc,
        )
        proc.kill(signal.SIGKILL)
    finally:
        proc.stop()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "result.json").exists(), "the run finished before it was killed"
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "epoch000020"
    out = run(TRAIN + [str(cfg)], subprocess_env, tmp_path / "resumed.log")
    result = json.loads((run_dir / "result.json").read_text())
    assert result["resumed_from_epoch"] == 20, out.stdout
    assert result["epochs_run"] == 150
    assert_same_weights(Path(ref.run_dir), run_dir, atol=1e-6)


def test_changed_config_does_not_resume_silently(write_config, tmp_path):
    settings = {"max_epochs": 4, "checkpoint_every": 2}
    train(load_config(write_config("same", training=settings)), progress=None)
    changed = load_config(write_config("same", training={**settings, "lr": 1e-4}))
    with pytest.raises(TrainError, match="different config"):
        train(changed, progress=None)
    train(changed, progress=None, fresh=True)


TWO_RANKS = {"max_epochs": 8, "batch_size": 16}


@pytest.fixture(scope="module")
def single_accum(module_write_config) -> Path:
    """The one-process reference of the 2-rank runs (grad_accum 2: the same global batch of
    16), trained once, in this process, for every test of the module that compares with it."""
    cfg = module_write_config("single-accum", training={**TWO_RANKS, "grad_accum": 2})
    return Path(train(load_config(cfg), progress=None).run_dir)


@pytest.mark.slow
def test_torchrun_two_ranks_equal_single_process(
    write_config, tmp_path, subprocess_env, single_accum
):
    multi = write_config("torchrun2", training=TWO_RANKS)
    run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "xas_train.cli",
            "train",
            str(multi),
        ],
        subprocess_env,
        tmp_path / "torchrun2.log",
    )
    result = json.loads((tmp_path / "runs" / "torchrun2" / "result.json").read_text())
    assert result["world_size"] == 2 and result["global_batch"] == 16
    assert_same_weights(single_accum, tmp_path / "runs" / "torchrun2", 1e-5)


@pytest.mark.slow
def test_two_simulated_nodes_equal_single_process(
    write_config, tmp_path, subprocess_env, single_accum
):
    cfg = write_config("two-nodes", training=TWO_RANKS)
    port = free_port()
    nodes = []
    for node in (0, 1):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--node-rank",
            str(node),
            "--nproc-per-node",
            "1",
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"127.0.0.1:{port}",
            "--rdzv-id",
            "xas-test",
            "--rdzv-conf",
            f"is_host={int(node == 0)}",
            "-m",
            "xas_train.cli",
            "train",
            str(cfg),
        ]
        nodes.append(Background(cmd, tmp_path / f"node{node}.log", env=subprocess_env))
    try:  # both finish, or one fails (then its peer, waiting for it, is stopped)
        codes = wait_all(nodes, "both nodes of the two-node run to finish")
    finally:
        for n in nodes:
            n.stop(grace_s=5)
    assert codes == [0, 0], "\n".join(n.tail(2000) for n in nodes)
    result = json.loads((tmp_path / "runs" / "two-nodes" / "result.json").read_text())
    assert result["world_size"] == 2
    assert_same_weights(single_accum, tmp_path / "runs" / "two-nodes", 1e-5)


@pytest.mark.slow
def test_deepspeed_launcher_runs_the_same_training(write_config, tmp_path, subprocess_env):
    settings = {"max_epochs": 6, "batch_size": 16}
    plain = train(load_config(write_config("plain", training=settings)), progress=None)
    cfg = write_config("ds-launcher", training=settings)
    ds = Path(sys.executable).parent / "deepspeed"
    proc = run(
        [
            str(ds),
            "--num_gpus",
            "1",
            "--master_port",
            str(free_port()),
            "--module",
            "xas_train.cli",
            "train",
            str(cfg),
        ],
        subprocess_env,
        tmp_path / "ds-launcher.log",
    )
    result = json.loads((tmp_path / "runs" / "ds-launcher" / "result.json").read_text())
    assert result["world_size"] == 1, proc.stdout[-2000:]
    assert_same_weights(Path(plain.run_dir), tmp_path / "runs" / "ds-launcher", 1e-6)


@pytest.mark.parametrize("stage", [1, 2])
def test_zero_stages_train_like_stage_zero(write_config, stage):
    settings = {"max_epochs": 4}
    ref = train(load_config(write_config("zero0", training=settings)), progress=None)
    cfg = load_config(write_config(f"zero{stage}", training={**settings, "zero_stage": stage}))
    result = train(cfg, progress=None)
    assert_same_weights(Path(ref.run_dir), Path(result.run_dir), atol=1e-5)


def test_evaluate_checkpoint_scores_the_best_state_of_a_stopped_run(write_config, tmp_path):
    from xas_train.trainer import evaluate_checkpoint

    settings = {"max_epochs": 6, "checkpoint_every": 2}
    cfg = load_config(write_config("stopped", training=settings))
    result = train(cfg, progress=None)
    run_dir = Path(result.run_dir)
    shutil.rmtree(run_dir / "model")
    shutil.rmtree(run_dir / "predictions")
    lines: list[str] = []
    metrics = evaluate_checkpoint(cfg, progress=lines.append)
    assert metrics["Cu"]["eta"] == pytest.approx(result.metrics["Cu"]["eta"], rel=1e-6)
    assert (run_dir / "model" / "model.json").is_file() and "best epoch" in lines[0]
    meta = json.loads((run_dir / "model" / "model.json").read_text())
    assert meta["training_data"]["stopped_at_epoch"] == 6
    other = load_config(write_config("never", training=settings))
    with pytest.raises(TrainError, match="no checkpoint"):
        evaluate_checkpoint(other, progress=None)
