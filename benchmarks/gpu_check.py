"""One-GPU check: the XAS block, CGXAS and XANE(3) at the paper's size through the trainer.

    python benchmarks/gpu_check.py --out gpu.json            # ~5 min on one GPU
    python benchmarks/gpu_check.py --small --out gpu.json    # tiny sizes, fp32, CPU (CI)

Each model trains for a few epochs on the shipped default dataset (FEFF-fast, universal)
with ``xas_train.trainer.train`` at ``--precision`` (bf16 autocast over fp32 weights by
default on a GPU; fp32 on a CPU, where the config refuses 16-bit), then the same config runs
fp32 on the CPU (a child process with ``CUDA_VISIBLE_DEVICES=""``) as the reference. Printed
and written to ``--out`` as JSON, one row per model: graphs/s and samples/s (epochs after the
first, so start-up is not counted), peak GPU memory (``torch.cuda.max_memory_allocated``),
the precision the trainer used, and the validation loss / MSE next to the CPU reference's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = ("xasblock", "cgxas", "xane3")

#: Paper-size configs (configs/graph/*-default.yaml; XANE(3) at the model defaults = the
#: paper: 4 layers, lmax 2, 32x0e+16x1o+8x2e, r_max 5 A, 16 Bessel radial functions).
PAPER: dict[str, dict[str, Any]] = {
    "xasblock": {
        "data": {"features": ["chgnet"]},
        "model": {"architecture": "xasblock", "hidden_widths": [400, 400], "dropout": 0.5},
        "training": {"loss": "mse", "batch_size": 128},
    },
    "cgxas": {
        "data": {"features": ["graph"], "graph": {"cutoff": 8.0, "max_neighbors": 12}},
        "model": {
            "architecture": "cgxas",
            "hidden_dim": 64,
            "n_conv": 5,
            "edge_features": "both",
            "mlp_hidden": [128, 128],
        },
        "training": {"loss": "rse", "batch_size": 32},
    },
    "xane3": {
        "data": {"features": ["graph"], "graph": {"cutoff": 5.0, "max_neighbors": 12}},
        "model": {
            "architecture": "xane3",
            "n_layers": 4,
            "lmax": 2,
            "irreps_hidden": "32x0e+16x1o+8x2e",
            "r_max": 5.0,
            "n_radial": 16,
            "radial_basis": "bessel",
        },
        "training": {
            "loss": "xane3",
            "loss_params": {"d1": 20.0, "d2": 50.0, "e0_weight": 0.1, "anneal_epochs": 2},
            "batch_size": 16,
        },
    },
}

#: --small: tiny networks on a few Cu spectra, so that CI runs the whole script in seconds.
SMALL: dict[str, dict[str, Any]] = {
    "xasblock": {"model": {"architecture": "xasblock", "hidden_widths": [16], "dropout": 0.1}},
    "cgxas": {
        "data": {"graph": {"cutoff": 5.0, "max_neighbors": 8}},
        "model": {
            "architecture": "cgxas",
            "hidden_dim": 8,
            "n_conv": 1,
            "cutoff": 5.0,
            "edge_features": "both",
            "n_gaussians": 8,
            "n_plane_waves": 4,
            "mlp_hidden": [16],
        },
        "training": {"batch_size": 4},
    },
    "xane3": {
        "data": {"graph": {"cutoff": 4.0, "max_neighbors": 8}},
        "model": {
            "architecture": "xane3",
            "n_layers": 1,
            "lmax": 1,
            "irreps_hidden": "4x0e+2x1o",
            "r_max": 4.0,
            "n_radial": 4,
            "radial_hidden": 8,
            "embed_dim": 8,
            "readout_hidden": 16,
            "n_gaussians_out": 10,
        },
        "training": {"batch_size": 4},
    },
}
SMALL_TRAIN, SMALL_VAL = 12, 6


def run_config(model: str, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """The run config (dict) of ``model`` for this invocation."""
    base = PAPER[model]
    small = SMALL[model] if args.small else {}
    data = {"dataset": "default", "fidelity": "FEFF-fast", **base["data"]}
    data.update(small.get("data", {}))
    if "graph" in small.get("data", {}):
        data["graph"] = {**base["data"].get("graph", {}), **small["data"]["graph"]}
    training = {
        "lr": 1.0e-3,
        "max_epochs": args.epochs,
        "patience": args.epochs + 1,
        "checkpoint_every": 0,
        "seed": 0,
        **base["training"],
        **small.get("training", {}),
        "precision": args.precision,
    }
    config: dict[str, Any] = {
        "name": f"gpu-check-{model}",
        "recipe": "universal",
        "data": data,
        "model": small.get("model", base["model"]),
        "training": training,
        "mlflow": {"enabled": False},
        "output_dir": str(out_dir),
    }
    if args.small:
        config["recipe"] = "expert"
        config["data"]["elements"] = ["Cu"]
    return config


def _cut(data, n_train: int, n_val: int):
    """``data`` with its first ``n_train`` training and ``n_val`` validation rows (--small)."""
    import dataclasses

    import numpy as np

    def first(split, n):
        mask = np.zeros(len(split), dtype=bool)
        mask[:n] = True
        return split.subset(mask)

    return dataclasses.replace(
        data,
        train=first(data.train, n_train),
        val=first(data.val, n_val),
        test=None if data.test is None else first(data.test, n_val),
    )


def train_one(model: str, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """Train ``model`` once in this process; one result row."""
    import torch

    from xas_train import trainer
    from xas_train.config import parse_config
    from xas_train.data import load_training_data

    config = parse_config(run_config(model, args, out_dir), f"gpu_check:{model}")
    t0 = time.perf_counter()
    data = load_training_data(config.data, seed=config.training.seed)
    if args.small:
        data = _cut(data, SMALL_TRAIN, SMALL_VAL)
    load_s = time.perf_counter() - t0
    used: dict[str, str] = {}
    resolve = trainer.resolve_precision

    def watch_precision(requested, device):
        used["precision"] = resolve(requested, device)
        used["device"] = str(device)
        return used["precision"]

    stamps: list[float] = []
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.resolve_precision = watch_precision
    try:
        result = trainer.train(
            config,
            progress=None,
            fresh=True,
            data=data,
            epoch_callback=lambda epoch, loss: stamps.append(time.perf_counter()),
        )
    finally:
        trainer.resolve_precision = resolve
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    history = json.loads((Path(result.run_dir) / "history.json").read_text())
    best = next(h for h in history if h["epoch"] == result.best_epoch)
    per_epoch = (len(data.train) // result.global_batch) * result.global_batch
    if len(stamps) >= 2:  # steady state: the epochs after the first (start-up, CUDA warm-up)
        samples_s = per_epoch * (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9)
    else:  # one epoch: the trainer's own figure (its epoch loop, start-up excluded)
        samples_s = result.samples_per_second
    return {
        "model": model,
        "device": used.get("device", "?"),
        "precision": used.get("precision", "?"),
        "n_train": len(data.train),
        "n_val": len(data.val),
        "global_batch": result.global_batch,
        "epochs": result.epochs_run,
        "samples_per_s": samples_s,
        "graphs_per_s": samples_s if data.is_graph else None,
        "samples_per_s_all_epochs": result.samples_per_second,
        "peak_gpu_mib": peak,
        "val_loss": result.best_val_loss,
        "val_mse": best["val_mse"],
        "best_epoch": result.best_epoch,
        "data_load_s": load_s,
        "train_s": result.seconds,
    }


def run_models(args: argparse.Namespace, out_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for model in args.models:
        row = train_one(model, args, out_dir / model)
        print(
            f"  {model:9s} {row['device']:7s} {row['precision']:5s} "
            f"{row['samples_per_s']:10.1f} samples/s  val_loss {row['val_loss']:.4g}",
            flush=True,
        )
        rows.append(row)
    return rows


def cpu_reference(args: argparse.Namespace, out_dir: Path) -> list[dict[str, Any]]:
    """The same configs in fp32 on the CPU, in a child process that sees no GPU."""
    ref_json = out_dir / "cpu-reference.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--precision",
        "fp32",
        "--epochs",
        str(args.epochs),
        "--models",
        *args.models,
        "--out",
        str(ref_json),
        "--work-dir",
        str(out_dir / "cpu"),
    ] + (["--small"] if args.small else [])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    subprocess.run(cmd, env=env, check=True)
    return json.loads(ref_json.read_text())["rows"]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON results file")
    parser.add_argument("--small", action="store_true", help="tiny models/data (CPU, CI)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 4, small 2)")
    parser.add_argument(
        "--precision",
        default=None,
        choices=["auto", "fp32", "bf16", "fp16"],
        help="trainer precision (default bf16 on a GPU, fp32 on a CPU)",
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--no-cpu-reference", action="store_true", help="skip the fp32 CPU run")
    parser.add_argument("--work-dir", type=Path, default=None, help="run folders (default tmp)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    if args.epochs is None:
        args.epochs = 2 if args.small else 4
    if args.precision is None:
        args.precision = "bf16" if cuda else "fp32"
    tmp = None
    if args.work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="gpu-check-")
        args.work_dir = Path(tmp.name)
    out_dir = args.work_dir

    if args.worker:
        rows = run_models(args, out_dir)
        args.out.write_text(json.dumps({"rows": rows}, indent=2))
        return 0

    device = (
        torch.cuda.get_device_name(0)
        if cuda
        else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    )
    mode = "small" if args.small else "paper size"
    print(f"gpu_check: {mode}, {args.epochs} epochs, {args.precision} on {device}", flush=True)
    if not cuda:
        print("gpu_check: no CUDA device; this is the CPU fp32 run (no separate reference)")
    rows = run_models(args, out_dir)
    refs: dict[str, dict[str, Any]] = {}
    if cuda and not args.no_cpu_reference:
        print("gpu_check: fp32 CPU reference of the same configs", flush=True)
        refs = {r["model"]: r for r in cpu_reference(args, out_dir)}
    for row in rows:
        ref = refs.get(row["model"])
        row["cpu_fp32_val_loss"] = ref["val_loss"] if ref else None
        row["cpu_fp32_val_mse"] = ref["val_mse"] if ref else None
        row["cpu_fp32_samples_per_s"] = ref["samples_per_s"] if ref else None

    print(
        f"\n{'model':9s} {'device':7s} {'prec':5s} {'graphs/s':>9s} {'samples/s':>10s} "
        f"{'peak MiB':>9s} {'val_loss':>9s} {'val_mse':>9s} {'cpu fp32 val_loss':>17s} "
        f"{'cpu fp32 val_mse':>16s}"
    )
    for r in rows:
        print(
            f"{r['model']:9s} {r['device']:7s} {r['precision']:5s} "
            f"{_fmt(r['graphs_per_s'], '9.1f'):>9s} {_fmt(r['samples_per_s'], '10.1f'):>10s} "
            f"{_fmt(r['peak_gpu_mib'], '9.1f'):>9s} {_fmt(r['val_loss'], '9.4g'):>9s} "
            f"{_fmt(r['val_mse'], '9.4g'):>9s} {_fmt(r['cpu_fp32_val_loss'], '17.4g'):>17s} "
            f"{_fmt(r['cpu_fp32_val_mse'], '16.4g'):>16s}"
        )
    result = {
        "mode": "small" if args.small else "paper",
        "device": device,
        "cuda": cuda,
        "torch": torch.__version__,
        "epochs": args.epochs,
        "requested_precision": args.precision,
        "dataset": "default (FEFF-fast)",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
