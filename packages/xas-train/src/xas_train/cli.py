"""``xas-train``: train, tune and publish XAS models (thin over :mod:`xas_train`).

Heavy libraries (torch, DeepSpeed, MLflow, Optuna) are imported inside the commands so that
``xas-train --help`` answers at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from xas_data.cli_errors import DebugOpt, GuardedGroup, fail, set_debug

app = typer.Typer(
    cls=GuardedGroup,  # any error: one line on stderr, exit 2 (traceback with --debug)
    help="Train XAS models with DeepSpeed (one CPU to many GPU nodes), tracked in MLflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

T = TypeVar("T")


def _config_file(path: Path) -> Path:
    """A CONFIG argument that is a readable UTF-8 text file (else exit 2 at once)."""
    if not path.is_file():
        fail(f"config file {str(path)!r} not found; pass the path of a YAML config")
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(f"config file {str(path)!r} is not YAML text (byte {exc.start} is not UTF-8)")
    return path


ConfigArg = Annotated[
    Path, typer.Argument(help="run config (YAML); see configs/", callback=_config_file)
]
#: slurm writes a script for a config that may exist only on the cluster: not checked here
SlurmConfigArg = Annotated[Path, typer.Argument(help="run config (YAML) as seen by the job")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="override a config value, e.g. -s training.lr=3e-4"),
]


def _fail(exc: Exception) -> None:
    fail(exc)


def _guarded(fn: Callable[[], T]) -> T:
    """``fn()``; a TrainError (bad config, data or checkpoint; its message names the fix)
    becomes ``error: ...`` on stderr and exit status 2."""
    from xas_train.errors import TrainError

    try:
        return fn()
    except TrainError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


@app.callback()
def main(
    local_rank: Annotated[
        int | None,
        typer.Option("--local_rank", "--local-rank", hidden=True, help="set by launchers"),
    ] = None,
    debug: Annotated[bool, DebugOpt] = False,
) -> None:
    """Train XAS models with DeepSpeed, tracked in MLflow."""
    set_debug(debug)


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
    from xas_train.data import load_training_data

    cfg = load_config(config, set_)
    _check_writable(cfg.run_dir)
    data = load_training_data(cfg.data, seed=cfg.training.seed)  # no torch: bad data fails fast
    from xas_train.trainer import train as run_train

    result = run_train(cfg, fresh=fresh, data=data)
    if result.world_size == 1 or _rank() == 0:
        typer.echo(f"model: {result.model_dir}")
        for el, m in result.metrics.items():
            typer.echo(f"  {el}: eta {m['eta']:.3f}  median MSE {m['xi']:.4g}  (n={int(m['n'])})")


@app.command()
def evaluate(config: ConfigArg, set_: SetOpt = None) -> None:
    """Score a run that stopped before it finished (time limit, killed job).

    Loads the best state from the run's latest checkpoint, writes its test predictions and
    model as a finished run would, and prints eta per element; the run stays resumable.
    """
    from xas_train.config import load_config

    cfg = _guarded(lambda: load_config(config, set_))
    if not cfg.run_dir.is_dir():
        fail(f"run folder {cfg.run_dir} not found; train it first: xas-train train {config}")
    from xas_train.trainer import evaluate_checkpoint

    _guarded(lambda: evaluate_checkpoint(cfg))
    typer.echo(f"model: {cfg.run_dir / 'model'}")


@app.command()
def ensemble(
    config: ConfigArg,
    members: Annotated[int, typer.Option(help="number of members (seeds seed..seed+N-1)")] = 5,
    bootstrap: Annotated[
        bool, typer.Option(help="train each member on a bootstrap sample")
    ] = False,
    set_: SetOpt = None,
    fresh: Annotated[bool, typer.Option(help="retrain members that already finished")] = False,
) -> None:
    """Train a forward deep ensemble into one checkpoint; its spread is calibrated on the val
    split (1 sigma covers 68 %); prints coverage at 1 and 2 sigma and eta on val and test."""
    from xas_train.config import load_config

    cfg = _guarded(lambda: load_config(config, set_))
    from xas_train.ensemble import train_ensemble

    result = _guarded(lambda: train_ensemble(cfg, members, bootstrap=bootstrap, fresh=fresh))
    typer.echo(f"model: {result.model_dir}  (sigma_scale {result.sigma_scale:.4g})")
    for split, rep in result.splits.items():
        etas = "  ".join(f"{k.split('/')[0]} eta {v:.3f}" for k, v in rep.items() if "/eta" in k)
        typer.echo(
            f"  {split}: {int(rep['n_spectra'])} spectra  {etas}  coverage 1 sigma "
            f"{rep['coverage_1sigma']:.3f}  2 sigma {rep['coverage_2sigma']:.3f}"
        )


def _check_writable(folder: Path) -> None:
    """Exit 2 unless ``folder`` exists as a writable folder or can be created (checked
    before any heavy setup: no run learns after minutes that it cannot save)."""
    import os

    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        fail(f"output folder {folder}: {probe} is a file, not a folder; set output_dir")
    if not os.access(probe, os.W_OK | os.X_OK):
        fail(f"output folder {folder}: {probe} is not writable; set output_dir")


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


@app.command()
def calibrate(config: ConfigArg, set_: SetOpt = None) -> None:
    """Calibrate a pretrained simulation model on measured spectra (recipe 'calibrate').

    Fine-tunes only the model's head, layer by layer, on the EXP spectra of one element over
    random train/val/test splits, against the simulation-only model and a fitted global
    shift + broadening; prints RSE and edge-energy error (mean +- std over the splits) and
    saves the calibrated checkpoint (see configs/calibrate/).
    """
    from xas_train.calibration import load_calibration_config, run_calibration

    cfg = _guarded(lambda: load_calibration_config(config, set_))
    report = _guarded(lambda: run_calibration(cfg))
    typer.echo(f"report: {cfg.run_dir / 'report.md'}")
    if report.get("model_dir"):
        typer.echo(f"calibrated model: {report['model_dir']}")


@app.command()
def inverse(config: ConfigArg, set_: SetOpt = None) -> None:
    """Train an inverse model (SPT deep ensemble: spectrum -> OS, CN, ... descriptors).

    Trains the ensemble and the random-forest / extra-trees / gradient-boosting baselines in
    the same run and prints F1 / R^2 per descriptor on the test split; writes robustness
    curves, confusion matrices, parity plots and the checkpoint (see configs/inverse/).
    """
    from xas_train.inverse import load_inverse_config, run_inverse

    cfg = _guarded(lambda: load_inverse_config(config, set_))
    report = _guarded(lambda: run_inverse(cfg))
    typer.echo(f"report: {cfg.run_dir / 'report.md'}\nmodel: {report['model_dir']}")


@app.command()
def rankaae(config: ConfigArg, set_: SetOpt = None) -> None:
    """Train a RankAAE (latent dims rank-aligned with OS, CN, ...) and a latent regressor
    ensemble on the simulated spectra of one element.

    Reports on the test split the Spearman alignment, accuracy / MAE / 1-sigma coverage
    against a random forest, and (with measured:) the measured standards raw vs SDM; writes
    plots, report.md and the checkpoint (see configs/rankaae/).
    """
    from xas_train.rankaae_training import load_rankaae_config, run_rankaae

    cfg = _guarded(lambda: load_rankaae_config(config, set_))
    report = _guarded(lambda: run_rankaae(cfg))
    typer.echo(f"report: {cfg.run_dir / 'report.md'}\nmodel: {report['model_dir']}")


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


@app.command()
def cascade(
    config: ConfigArg,
    set_: SetOpt = None,
    fidelity: Annotated[list[str] | None, typer.Option(help="restrict to fidelities")] = None,
    element: Annotated[list[str] | None, typer.Option(help="restrict to elements")] = None,
    base_fidelity: Annotated[
        str | None, typer.Option(help="fidelity of the universal model")
    ] = None,
    tuned: Annotated[
        list[str] | None,
        typer.Option(help="override for tuned/cross-fidelity runs, e.g. model.dropout=0"),
    ] = None,
    fresh: Annotated[bool, typer.Option(help="retrain runs that already finished")] = False,
) -> None:
    """The OmniXAS cascade: experts, universal and tuned models for every element and
    fidelity, cross-fidelity fine-tuning, then the Table-I report."""
    import yaml

    from xas_train.cascade import run_cascade
    from xas_train.config import load_config
    from xas_train.errors import TrainError

    try:
        cfg = load_config(config, set_)
        overrides = {}
        for item in tuned or []:
            key, _, value = item.partition("=")
            overrides[key] = yaml.safe_load(value)
        result = run_cascade(
            cfg,
            fidelities=fidelity,
            elements=element,
            base_fidelity=base_fidelity,
            tuned_overrides=overrides,
            fresh=fresh,
        )
    except TrainError as exc:
        _fail(exc)
        return
    typer.echo(result.table_markdown)
    typer.echo(f"summary: {result.summary_path}\nreport: {result.report_path}")


@app.command()
def tune(
    config: ConfigArg,
    trials: Annotated[int, typer.Option("--trials", "-n", help="number of Optuna trials")] = 20,
    set_: SetOpt = None,
    space: Annotated[
        Path | None, typer.Option(help="search space YAML (default: built in)")
    ] = None,
    seed: Annotated[int, typer.Option(help="sampler seed")] = 0,
    trial_max_epochs: Annotated[int | None, typer.Option(help="cap epochs per trial")] = None,
    timeout: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL (resumable)")] = None,
) -> None:
    """Hyper-parameter search with Optuna (TPE on validation loss, median pruning); each
    trial is an MLflow child run; the best config is written as YAML."""
    from xas_train.config import load_config
    from xas_train.errors import TrainError
    from xas_train.tune import tune as run_tune

    try:
        cfg = load_config(config, set_)
        result = run_tune(
            cfg,
            trials,
            space=space,
            seed=seed,
            timeout_s=timeout,
            trial_max_epochs=trial_max_epochs,
            study_storage=storage,
        )
    except (TrainError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(f"best val loss {result.best_value:.5g} with {result.best_params}")
    typer.echo(f"best config: {result.best_config_path}")


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option(help="working folder")] = Path("runs/quickstart"),
    zoo: Annotated[
        Path | None,
        typer.Option(
            help="zoo to publish into (gains versions, never changes one; default OUT/zoo)"
        ),
    ] = None,
    publish: Annotated[
        bool, typer.Option("--publish", help="publish into model-zoo/ (a new --version)")
    ] = False,
    version: Annotated[str, typer.Option(help="version of the published models")] = "0.1.0",
    featurizer: Annotated[str, typer.Option(help="site featurizer")] = "chgnet",
    max_epochs: Annotated[int | None, typer.Option(help="cap epochs per run")] = None,
    no_publish: Annotated[bool, typer.Option(help="do not publish to any zoo")] = False,
    fresh: Annotated[bool, typer.Option(help="retrain everything")] = False,
    set_: SetOpt = None,
) -> None:
    """The main job on the shipped default dataset: featurize with CHGNet, run the cascade,
    evaluate on the test split, print Table I, log to MLflow and publish the models into a
    zoo (OUT/zoo; --publish: a new --version in model-zoo/)."""
    from xas_train.errors import TrainError
    from xas_train.quickstart import quickstart as run_quickstart

    try:
        result = run_quickstart(
            out,
            Path("model-zoo") if publish and zoo is None else zoo,
            publish=not no_publish,
            version=version,
            featurizer=featurizer,
            max_epochs=max_epochs,
            overrides=set_,
            fresh=fresh,
        )
    except TrainError as exc:
        _fail(exc)
        return
    cas = result.cascade
    typer.echo("")
    typer.echo(cas.table_markdown)
    trained = sum(r.status == "trained" for r in cas.runs)
    skipped = [r for r in cas.runs if r.status == "skipped"]
    typer.echo(
        f"{len(cas.runs)} runs ({trained} trained, {len(cas.runs) - trained - len(skipped)} "
        f"reused, {len(skipped)} skipped) in {result.seconds / 60:.1f} min"
    )
    for r in skipped:
        typer.echo(f"  skipped {r.name}: {r.reason}")
    typer.echo(f"report: {cas.report_path}")
    typer.echo(
        f"MLflow: uv run mlflow ui --backend-store-uri sqlite:///{(out / 'mlflow.db').resolve()}"
    )
    for entry in result.published:
        typer.echo(f"zoo: {entry['name']} {entry['version']} ({entry['path']})")


@app.command()
def publish(
    source: Annotated[str, typer.Argument(help="checkpoint folder, run folder or MLflow run id")],
    name: Annotated[str, typer.Option(help="model name in the zoo")],
    version: Annotated[str, typer.Option(help="semantic version, e.g. 0.1.0")],
    zoo: Annotated[Path, typer.Option(help="model zoo folder")] = Path("model-zoo"),
    overwrite: Annotated[bool, typer.Option(help="replace an existing name/version")] = False,
    license: Annotated[str, typer.Option(help="license of the weights")] = "BSD-3-Clause",
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow URI for run ids")] = None,
    task: Annotated[
        str | None,
        typer.Option(help="forward or inverse (default: inverse for spectrum-input models)"),
    ] = None,
    allow_below_baseline: Annotated[
        bool, typer.Option(help="publish a forward model with test eta < 1 (flagged)")
    ] = False,
) -> None:
    """Publish a checkpoint into the model zoo (files + sha256 in index.json); a forward model
    worse than the mean spectrum (test eta < 1) needs --allow-below-baseline."""
    from xas_train.errors import TrainError
    from xas_train.publish import publish as do_publish

    try:
        entry = do_publish(
            source,
            zoo,
            name,
            version,
            overwrite=overwrite,
            license=license,
            tracking_uri=tracking_uri,
            allow_below_baseline=allow_below_baseline,
            **({"task": task} if task else {}),
        )
    except TrainError as exc:
        _fail(exc)
        return
    typer.echo(f"published {name} {version} -> {zoo / entry['path']}")


@app.command()
def slurm(
    config: SlurmConfigArg,
    nodes: Annotated[int, typer.Option(help="number of nodes")] = 1,
    gpus_per_node: Annotated[
        int, typer.Option(help="GPUs per node (0: CPU nodes, no GPU request)")
    ] = 4,
    nproc_per_node: Annotated[
        int | None,
        typer.Option(help="training processes per node [default: GPUs per node, 1 on CPU nodes]"),
    ] = None,
    launcher: Annotated[str, typer.Option(help="torchrun or deepspeed")] = "torchrun",
    time_limit: Annotated[str, typer.Option("--time", help="wall time HH:MM:SS")] = "04:00:00",
    partition: Annotated[str | None, typer.Option(help="Slurm partition")] = None,
    account: Annotated[str | None, typer.Option(help="Slurm account")] = None,
    cpus_per_task: Annotated[
        int | None,
        typer.Option(help="CPUs per node task [default: 8, fewer if the nodes have fewer]"),
    ] = None,
    mem: Annotated[str | None, typer.Option(help="memory per node, e.g. 64G")] = None,
    env_setup: Annotated[
        list[str] | None, typer.Option(help="shell line run first, e.g. 'module load cuda'")
    ] = None,
    env_activate: Annotated[
        bool,
        typer.Option(help="activate this Python environment in the job (sys.prefix)"),
    ] = True,
    signal_before: Annotated[
        int,
        typer.Option(
            help="seconds before the time limit to checkpoint and requeue (SIGUSR1); 0: never"
        ),
    ] = 120,
    requeue: Annotated[bool, typer.Option(help="requeue after a SIGUSR1 checkpoint")] = True,
    rdzv_port: Annotated[
        int | None, typer.Option(help="fixed MASTER_PORT [default: 20000 + job id % 20000]")
    ] = None,
    train_command: Annotated[
        str, typer.Option(help="command taking the config as last argument")
    ] = "xas-train train",
    check: Annotated[
        bool,
        typer.Option(help="check the request against the reachable Slurm (sinfo) first"),
    ] = True,
    out: Annotated[Path, typer.Option("--out", "-o", help="script path")] = Path("train.sbatch"),
) -> None:
    """Write an sbatch script that trains CONFIG on N nodes (submit it with sbatch).

    When Slurm is reachable here (sinfo answers), a request no partition can ever run (more
    CPUs, GPUs, memory, nodes or time than it offers) is refused with the limit named.
    """
    import sys

    from xas_train.slurm import (
        SlurmOptions,
        check_against_cluster,
        fit_cpus_to_cluster,
        query_cluster,
        write_sbatch,
    )

    try:
        fields = dict(
            nodes=nodes,
            gpus_per_node=gpus_per_node,
            nproc_per_node=nproc_per_node,
            launcher=launcher,
            time=time_limit,
            partition=partition,
            account=account,
            mem=mem,
            env_setup=tuple(env_setup or ()),
            activate=sys.prefix if env_activate else None,
            signal_before_s=signal_before or None,
            requeue=requeue,
            rdzv_port=rdzv_port,
            train_command=train_command,
        )
        options = SlurmOptions(**fields, cpus_per_task=cpus_per_task or 8)
        cluster = query_cluster() if check else None
        note = None
        if cluster is not None:
            if cpus_per_task is None:
                cpus, note = fit_cpus_to_cluster(options, cluster)
                options = SlurmOptions(**fields, cpus_per_task=cpus)
            check_against_cluster(options, cluster)
        elif check:
            note = "no Slurm reachable here (sinfo): the request is not checked against a cluster"
        path = write_sbatch(config, options, out)
    except ValueError as exc:
        _fail(exc)
        return
    if note:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {path}; submit with: sbatch {path}")


if __name__ == "__main__":
    app()
