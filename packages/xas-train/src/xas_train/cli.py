"""``xas-train``: train, tune and publish XAS models (thin over :mod:`xas_train`).

Heavy libraries (torch, DeepSpeed, MLflow, Optuna) are imported inside the commands so that
``xas-train --help`` answers at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Train XAS models with DeepSpeed (one CPU to many GPU nodes), tracked in MLflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ConfigArg = Annotated[Path, typer.Argument(help="run config (YAML); see configs/")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a config value, e.g. -s training.lr=3e-4"),
]


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


@app.callback()
def main(
    local_rank: Annotated[
        int | None,
        typer.Option("--local_rank", "--local-rank", hidden=True, help="set by launchers"),
    ] = None,
) -> None:
    """Train XAS models with DeepSpeed, tracked in MLflow."""


@app.command()
def train(
    config: ConfigArg,
    set_: SetOpt = None,
    fresh: Annotated[bool, typer.Option(help="discard this run's checkpoints")] = False,
) -> None:
    """Train one run (resumes from its last checkpoint if one exists).

    Runs as a plain process, under torchrun, under the deepspeed launcher or in Slurm.
    """
    from xas_train.config import load_config
    from xas_train.errors import TrainError

    try:
        cfg = load_config(config, set_)
        from xas_train.trainer import train as run_train

        result = run_train(cfg, fresh=fresh)
    except TrainError as exc:
        _fail(exc)
        return
    if result.world_size == 1 or _rank() == 0:
        typer.echo(f"model: {result.model_dir}")
        for el, m in result.metrics.items():
            typer.echo(f"  {el}: eta {m['eta']:.3f}  median MSE {m['xi']:.4g}  (n={int(m['n'])})")


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


@app.command("lr-find")
def lr_find(config: ConfigArg, set_: SetOpt = None) -> None:
    """Learning-rate range test on the config's training data; prints the sweep and a suggestion."""
    import torch

    from xas_train.config import load_config
    from xas_train.data import load_training_data
    from xas_train.errors import TrainError
    from xas_train.losses import make_loss
    from xas_train.lr_finder import find_lr
    from xas_train.trainer import build_initial_model

    try:
        cfg = load_config(config, set_)
        data = load_training_data(cfg.data, seed=cfg.training.seed)
        torch.manual_seed(cfg.training.seed)
        model, _ = build_initial_model(cfg, data)
        loss = make_loss(cfg.training.loss, cfg.training.loss_params)
    except TrainError as exc:
        _fail(exc)
        return
    result = find_lr(model, data.train.x, data.train.y, loss, cfg.training.batch_size)
    typer.echo(result.table())
    typer.echo(f"suggested lr: {result.suggestion:.3g}")


if __name__ == "__main__":
    app()
