"""Mixed precision without a GPU: the trainer's bf16 path (DeepSpeed config, dtype handling,
forward, loss, checkpoint) runs on the CPU for every model, so a dtype mix fails in CI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from xas_train import trainer
from xas_train.config import load_config
from xas_train.safe_checkpoint import safe_load

GRAPH = {"cutoff": 5.0, "max_neighbors": 12, "max_z": 30, "include_ties": True}
XANE3 = {
    "architecture": "xane3",
    "n_layers": 2,
    "irreps_hidden": "4x0e+2x1o+2x2e",
    "n_gaussians_out": 20,
    "embed_dim": 8,
    "radial_hidden": 8,
    "readout_hidden": 16,
    "max_z": 30,
}
CGXAS = {"architecture": "cgxas", "hidden_dim": 8, "n_conv": 2, "mlp_hidden": [16], "norm": "batch"}
CASES = {
    "xasblock": ({}, {"hidden_widths": [32, 32], "dropout": 0.1}, "mse"),
    "cgxas": ({"features": ["graph"], "graph": GRAPH}, CGXAS | {"edge_features": "both"}, "rse"),
    "xane3": ({"features": ["graph"], "graph": GRAPH}, XANE3, "xane3"),
}


@pytest.fixture
def bf16_on_cpu(monkeypatch):
    """Resolve every run's precision to bf16, as ``auto`` does on a CUDA GPU; returns the set
    of output dtypes of the model's Linear layers in training mode."""
    monkeypatch.setattr(trainer, "resolve_precision", lambda requested, device: "bf16")
    seen: set[torch.dtype] = set()
    build = trainer.build_initial_model

    def build_and_watch(config, data):
        model, arch = build(config, data)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(
                    lambda mod, args, out: seen.add(out.dtype) if mod.training else None
                )
        return model, arch

    monkeypatch.setattr(trainer, "build_initial_model", build_and_watch)
    return seen


@pytest.mark.parametrize("arch", list(CASES))
def test_bf16_run_trains_every_model_and_saves_fp32_weights(write_config, bf16_on_cpu, arch):
    data, model, loss = CASES[arch]
    cfg = load_config(
        write_config(
            f"bf16-{arch}",
            data=data,
            model=model,
            replace=("model",),
            training={"max_epochs": 2, "loss": loss, "lr": 3e-3, "checkpoint_every": 1},
        )
    )
    result = trainer.train(cfg, progress=None)
    history = json.loads((Path(result.run_dir) / "history.json").read_text())
    assert len(history) == 2
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in history)
    saved = load_file(str(Path(result.model_dir) / "model.safetensors"))
    floats = {k: v.dtype for k, v in saved.items() if v.is_floating_point()}
    assert floats and set(floats.values()) == {torch.float32}, floats
    for states in (Path(result.run_dir) / "checkpoints").glob("epoch*/*model_states.pt"):
        module = safe_load(states)["module"]  # the resumable DeepSpeed checkpoints: fp32 too
        assert {v.dtype for v in module.values() if v.is_floating_point()} == {torch.float32}
    # the hidden layers ran in bf16, the output layer in fp32
    assert bf16_on_cpu == {torch.bfloat16, torch.float32}


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", "bfloat16"), ("fp16", "float16")])
def test_16_bit_precision_is_autocast_over_fp32_weights(write_config, precision, dtype):
    from xas_train.distributed import DistInfo

    cfg = load_config(write_config("ds"))
    dist = DistInfo(0, 1, 0, torch.device("cpu"), "gloo")
    ds = trainer.deepspeed_config(cfg, dist, 16, precision)
    assert "bf16" not in ds and "fp16" not in ds  # DeepSpeed would cast weights, not buffers
    assert ds["torch_autocast"] == {
        "enabled": True,
        "dtype": dtype,
        "lower_precision_safe_modules": [],
    }
    assert "torch_autocast" not in trainer.deepspeed_config(cfg, dist, 16, "fp32")
