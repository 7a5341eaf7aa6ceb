"""Process-group life cycle of the trainer and a start-up that compiles nothing on the CPU."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from xas_testkit import run_logged

from xas_train import distributed
from xas_train.config import load_config
from xas_train.distributed import setup_distributed, teardown_distributed
from xas_train.trainer import train


def test_train_destroys_the_group_it_created_and_keeps_the_callers(write_config):
    cfg = load_config(write_config("pg", training={"max_epochs": 1}))
    train(cfg, progress=None)
    assert not torch.distributed.is_initialized()
    info = setup_distributed()  # a caller that runs several trainings in one group
    try:
        assert info.owns_group
        train(cfg, progress=None, fresh=True)
        assert torch.distributed.is_initialized()
    finally:
        teardown_distributed(info)
    assert not torch.distributed.is_initialized()


def test_nccl_group_is_bound_to_the_rank_gpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda **kw: calls.append(kw))
    distributed._init_group("nccl", torch.device("cuda", 1))
    distributed._init_group("gloo", torch.device("cpu"))
    assert calls == [
        {"backend": "nccl", "device_id": torch.device("cuda", 1)},
        {"backend": "gloo", "device_id": None},
    ]


def test_cpu_run_compiles_no_extension(write_config, tmp_path, subprocess_env):
    """A fresh CPU run starts without building DeepSpeed's deepspeed_shm_comm op (or any
    other) into an empty TORCH_EXTENSIONS_DIR."""
    ext = tmp_path / "torch_extensions"
    ext.mkdir()
    config = write_config("no-jit", training={"max_epochs": 1})
    env = subprocess_env | {"TORCH_EXTENSIONS_DIR": str(ext)}
    cmd = [sys.executable, "-m", "xas_train.cli", "train", str(config)]
    out = run_logged(cmd, tmp_path / "no-jit.log", env=env).stdout
    assert "model:" in out
    assert "deepspeed_shm_comm" not in out
    assert list(ext.rglob("*")) == []


def test_job_extensions_dir_is_per_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert distributed.job_extensions_dir().name.endswith("-4242")
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run7")
    assert distributed.job_extensions_dir().name.endswith("-run7")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert distributed.job_extensions_dir().name.endswith("-port29500")
    assert isinstance(distributed.job_extensions_dir(), Path)
