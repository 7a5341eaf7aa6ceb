"""SIGTERM (Slurm's signal at the time limit or on ``scancel`` without ``--signal``) makes a
training process save a checkpoint and stop; running the config again resumes from it."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from xas_testkit import Background, wait_for

from xas_train.config import load_config
from xas_train.trainer import train

SCRIPT = (
    "import sys\n"
    "from xas_train.config import load_config\n"
    "from xas_train.trainer import train\n"
    "train(load_config(sys.argv[1]), progress=print)\n"
)


class _Stop(Exception):
    pass


def test_sigterm_saves_a_resumable_checkpoint(write_config, tmp_path, subprocess_env) -> None:
    settings = {"max_epochs": 100000, "patience": 100000, "checkpoint_every": 1}
    path = write_config("term", training=settings)
    ckpt = tmp_path / "runs" / "term" / "checkpoints"
    env = {k: v for k, v in subprocess_env.items() if k != "XAS_TRAIN_STOP_FILE"}
    with Background(
        [sys.executable, "-c", SCRIPT, str(path)], tmp_path / "train.log", env=env
    ) as proc:
        wait_for(lambda: (ckpt / "latest").is_file(), "the first checkpoint", process=proc)
        proc.kill(signal.SIGTERM)  # what Slurm sends at the time limit
        assert proc.wait("the trainer to stop after SIGTERM") != 0
    out = proc.output()
    assert "stopped on request (SIGTERM)" in out, out[-2000:]
    tag = (ckpt / "latest").read_text().strip()
    epoch = int(tag.removeprefix("epoch"))
    assert epoch >= 1 and list((ckpt / tag).glob("*model_states.pt"))

    lines: list[str] = []

    def stop_after_one_more(e: int, _val: float) -> None:
        raise _Stop(e)

    with pytest.raises(_Stop) as info:
        train(load_config(path), progress=lines.append, epoch_callback=stop_after_one_more)
    assert info.value.args[0] == epoch + 1  # it went on from the checkpoint
    assert any(f"at epoch {epoch}" in line and "resumed" in line for line in lines)
    assert not (Path(tmp_path) / "runs" / "term" / "result.json").exists()
