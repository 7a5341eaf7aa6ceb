"""The trainer: one loop on ``deepspeed.initialize`` for one CPU, torchrun, the deepspeed
launcher and many GPU nodes.

Determinism across world sizes: each optimizer step takes a global batch of ``batch_size``
rows from a seeded per-epoch permutation (the same on every rank) and cuts it into
``world_size * grad_accum`` equal micro-batches; micro-batch ``j`` goes to rank
``j % world_size`` at accumulation step ``j // world_size`` and its dropout masks come from a
generator seeded by ``(seed, epoch, step, j)``. A single process with ``grad_accum = 2``
therefore computes the same gradients as two ranks with ``grad_accum = 1``. BatchNorm running
statistics are averaged over ranks after every epoch so all ranks hold one model.

Resume: DeepSpeed checkpoints every ``checkpoint_every`` epochs carry the optimizer state, the
early-stopping state, the best weights and the history; a killed run started again with the
same config continues from the last checkpoint and ends with the same weights.

Precision: bf16/fp16 runs keep fp32 weights (so checkpoints and the published safetensors are
fp32) and run the forward pass under ``torch.autocast`` (:func:`autocast_section`).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xas_train.config import RunConfig, dump_config
from xas_train.data import SplitArrays, TrainingData, load_training_data
from xas_train.distributed import (
    DistInfo,
    all_reduce_mean_,
    barrier,
    setup_distributed,
    teardown_distributed,
)
from xas_train.errors import ConfigError, TrainError
from xas_train.losses import batch_loss, make_loss
from xas_train.tracking import Tracker

Progress = Callable[[str], None]
CHECKPOINT_DIR = "checkpoints"
MODEL_DIR = "model"


@dataclass
class TrainResult:
    """What a finished run produced (paths are inside ``run_dir``)."""

    name: str
    recipe: str
    run_dir: str
    model_dir: str
    elements: list[str]
    fidelity: str
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    resumed_from_epoch: int
    lr: float
    global_batch: int
    world_size: int
    seconds: float
    samples_per_second: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    predictions: list[str] = field(default_factory=list)
    run_id: str | None = None
    model_version: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


# --------------------------------------------------------------------------- model set-up
def _xas_models():
    import xas_models

    return xas_models


def build_initial_model(config: RunConfig, data: TrainingData) -> tuple[torch.nn.Module, str]:
    """The model to train, fresh or initialised from ``config.init_from``; errors before training.

    Returns:
        ``(model, architecture name)``.
    """
    xm = _xas_models()
    user = config.model.params()
    for key in ("input_dim", "output_dim"):
        if key in user:
            raise ConfigError(
                f"model.{key} is set by the data ({data.input_dim} features, "
                f"{data.output_dim} points); remove it from the config"
            )
    if config.init_from:
        try:
            source, meta = xm.load_checkpoint(config.init_from)
        except xm.ModelError as exc:
            raise TrainError(f"init_from: {exc}") from None
        wanted = config.model.architecture
        if wanted and wanted != meta.architecture:
            raise TrainError(
                f"init_from {config.init_from!r} is a {meta.architecture!r} checkpoint but "
                f"model.architecture is {wanted!r}; use a {wanted} checkpoint or drop "
                "model.architecture"
            )
        key = "+".join(data.feature_keys)
        if meta.featurizer.key and meta.featurizer.key != key:
            raise TrainError(
                f"init_from {config.init_from!r} was trained on features "
                f"{meta.featurizer.key!r} but data.features gives {key!r}; use the same "
                "featurizer (and settings) as the checkpoint"
            )
        params = {**(meta.config or {}), **user}
        try:
            model = xm.build_model(meta.architecture, params)
            model.load_state_dict(source.state_dict(), strict=True)
        except (xm.ModelError, RuntimeError) as exc:
            raise TrainError(
                f"model settings {user} do not fit the init_from checkpoint "
                f"({meta.architecture}, {meta.config}): {exc}. Only change settings that keep "
                "the weight shapes (e.g. dropout)"
            ) from None
        out_dim = (meta.config or {}).get("output_dim", data.output_dim)
        if out_dim != data.output_dim:
            raise TrainError(
                f"init_from predicts {out_dim} points but the data has {data.output_dim}"
            )
        return model, str(meta.architecture)
    arch = config.model.architecture or ("cgxas" if data.is_graph else "xasblock")
    params = (
        graph_model_params(arch, user, data)
        if data.is_graph
        else {
            **user,
            "input_dim": data.input_dim,
            "output_dim": data.output_dim,
        }
    )
    try:
        model = xm.build_model(arch, params)
    except xm.ModelError as exc:
        raise ConfigError(str(exc)) from None
    if config.data.standardize and hasattr(model, "set_input_scaling") and not data.is_graph:
        x = data.train.x.astype(np.float64)
        std = x.std(axis=0)
        model.set_input_scaling(
            torch.from_numpy(x.mean(axis=0)).float(),
            torch.from_numpy(np.where(std > 1e-8, std, 1.0)).float(),
        )
    if hasattr(model, "init_output"):
        # models with a ReLU output start from the mean training spectrum (see CGXAS)
        model.init_output(torch.from_numpy(data.train.y.mean(axis=0)).float())
    return model, arch


def graph_model_params(arch: str, user: dict[str, Any], data: TrainingData) -> dict[str, Any]:
    """Hyper-parameters of a graph model with the data-given ones filled in.

    ``output_dim`` is the grid length; ``cgxas`` also gets ``node_dim`` (node-feature size) and
    ``elements`` (the absorbing elements); ``xane3`` gets its energy window (eV, relative to the
    first grid point) from the grid.
    """
    if arch == "xasblock":
        raise ConfigError(
            "model 'xasblock' takes per-site feature vectors, but data.features is [graph]; "
            "use a graph model (cgxas, xane3) or per-site features (e.g. chgnet)"
        )
    params = {**user, "output_dim": data.output_dim}
    if arch == "cgxas":
        params.setdefault("node_dim", data.input_dim)
        params.setdefault("elements", list(data.elements))
    if arch == "xane3":
        grid = data.grid(data.elements[0])
        params.setdefault("energy_min", 0.0)
        params.setdefault("energy_max", grid["step"] * (grid["n_points"] - 1))
    return params


class ModelInputs:
    """Rows of one split as model inputs: a feature tensor, or a batch of crystal graphs."""

    def __init__(self, split: SplitArrays, device: torch.device, dtype: torch.dtype) -> None:
        self.graphs = split.graphs
        self.device = device
        self.x = None if self.graphs is not None else torch.from_numpy(split.x).to(device, dtype)

    def __call__(self, rows: torch.Tensor | np.ndarray):
        if self.graphs is None:
            return self.x[torch.as_tensor(rows)]
        from xas_features.graphs import collate_graphs

        return collate_graphs([self.graphs[int(i)] for i in rows]).to(self.device)

    def prefetch(self, row_batches: list) -> Iterator:
        """``self(rows)`` for each entry of ``row_batches``, in order. For graphs the next batch
        is collated (and copied to the device) in a background thread while the current one
        trains, which takes the CPU collation off a GPU step's critical path."""
        if self.graphs is None or len(row_batches) < 2:
            yield from (self(rows) for rows in row_batches)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="xas-collate") as pool:
            pending = pool.submit(self, row_batches[0])
            for k in range(1, len(row_batches) + 1):
                batch = pending.result()
                if k < len(row_batches):
                    pending = pool.submit(self, row_batches[k])
                yield batch


def spectrum_of(output: Any) -> torch.Tensor:
    """The predicted spectra ``[B, K]`` of a model output (a tensor, or XANE(3)'s dict)."""
    return output["spectrum"] if isinstance(output, dict) else output


# --------------------------------------------------------------------------- DeepSpeed set-up
def resolve_precision(requested: str, device: torch.device) -> str:
    """``fp32`` on CPU; on CUDA ``auto`` means bf16 where supported, else fp16."""
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if requested in ("fp16", "bf16") and device.type != "cuda":
        raise ConfigError(
            f"training.precision {requested!r} needs a GPU; use fp32 (or auto) on the CPU"
        )
    return requested


def deepspeed_config(
    config: RunConfig, dist: DistInfo, global_batch: int, precision: str
) -> dict[str, Any]:
    """The DeepSpeed JSON config for this run."""
    t = config.training
    micro = global_batch // (dist.world_size * t.grad_accum)
    ds: dict[str, Any] = {
        "train_batch_size": global_batch,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": t.grad_accum,
        "gradient_clipping": float(t.grad_clip),
        "zero_optimization": {"stage": t.zero_stage},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }
    if precision in AUTOCAST_DTYPES:
        ds["torch_autocast"] = autocast_section(precision)
    return ds


#: ``training.precision`` -> the ``torch.autocast`` dtype of DeepSpeed's ``torch_autocast``.
AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def autocast_section(precision: str) -> dict[str, Any]:
    """DeepSpeed's ``torch_autocast`` section for bf16/fp16 mixed precision.

    The weights, optimizer state, gradients and buffers stay fp32 and the forward pass runs
    under ``torch.autocast``: matmuls in bf16/fp16, while the models keep their precision-
    sensitive parts in fp32 (input standardisation, BatchNorm/LayerNorm statistics, message
    sums, the output layer) and the losses compute in fp32. DeepSpeed's ``bf16``/``fp16``
    modes instead cast the parameters (not the buffers) to 16 bits, which breaks every model
    that mixes fp32 buffers into its layers and publishes 16-bit weights. Gradients are
    reduced in fp32 (no lower-precision comm modules; the models are small); fp16 gets
    DeepSpeed's gradient scaler.
    """
    return {
        "enabled": True,
        "dtype": AUTOCAST_DTYPES[precision],
        "lower_precision_safe_modules": [],
    }


def effective_global_batch(config: RunConfig, n_train: int, world_size: int) -> int:
    """``batch_size``, shrunk to the training-set size (a multiple of ranks x accumulation)."""
    unit = world_size * config.training.grad_accum
    batch = config.training.batch_size
    if batch % unit:
        raise ConfigError(
            f"training.batch_size {batch} must be divisible by world_size x grad_accum = "
            f"{world_size} x {config.training.grad_accum}; choose a multiple of {unit}"
        )
    if n_train < batch:
        batch = (n_train // unit) * unit
    if batch // unit < 2:
        raise TrainError(
            f"{n_train} training spectra give micro-batches of {batch // unit} per rank "
            f"(world size {world_size}, grad_accum {config.training.grad_accum}); BatchNorm "
            "needs at least 2: add data, use fewer ranks or lower grad_accum"
        )
    return batch


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix-style), identical on every rank."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h ^= (int(p) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2)) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def _sync_buffers(module: torch.nn.Module, world_size: int) -> None:
    if world_size == 1:
        return
    for buf in module.buffers():
        if buf.dtype.is_floating_point:
            all_reduce_mean_(buf.data, world_size)


@torch.no_grad()
def predict_array(
    module: torch.nn.Module, split: SplitArrays, device: torch.device, chunk: int = 4096
) -> np.ndarray:
    """Predictions of ``module`` in eval mode for the rows of ``split`` -> float32 [N, K]."""
    was_training = module.training
    module.eval()
    inputs = ModelInputs(split, device, next(module.parameters()).dtype)
    step = chunk if split.graphs is None else 64
    out = []
    for i in range(0, len(split), step):
        rows = np.arange(i, min(i + step, len(split)))
        out.append(spectrum_of(module(inputs(rows))).float().cpu().numpy())
    module.train(was_training)
    if not out:
        return np.zeros((0, split.y.shape[1]), np.float32)
    return np.concatenate(out)


# --------------------------------------------------------------------------- run bookkeeping
def check_tracking(config: RunConfig) -> None:
    """Rank 0 (``$RANK`` unset or 0) asks the MLflow server (:meth:`Tracker.check`, a short
    timeout) before DeepSpeed is even imported or any data is read.

    Raises:
        TrainError: one line naming the URI and the fix. A launcher (torchrun, deepspeed,
            srun) then stops the other ranks, which never reach the process group.
    """
    import os

    if config.mlflow.enabled and os.environ.get("RANK", "0") == "0":
        Tracker(config.tracking_uri(), config.mlflow.experiment).check()


def _tags(config: RunConfig, data: TrainingData) -> dict[str, str]:
    return {
        "recipe": config.recipe,
        "elements": ",".join(data.elements),
        "element": data.elements[0] if len(data.elements) == 1 else "all",
        "fidelity": data.fidelity,
        "features": "+".join(data.feature_keys),
        "dataset": data.dataset_name,
        "init_from": config.init_from or "",
        **config.mlflow.tags,
    }


def _check_resume(run_dir: Path, config: RunConfig, fresh: bool) -> bool:
    """True when ``run_dir`` holds checkpoints of this very config to resume from."""
    ckpt = run_dir / CHECKPOINT_DIR
    marker = run_dir / "run.json"
    if fresh and run_dir.exists():
        shutil.rmtree(ckpt, ignore_errors=True)
        marker.unlink(missing_ok=True)
        return False
    if not (ckpt / "latest").is_file():
        return False
    stored = json.loads(marker.read_text()) if marker.is_file() else {}
    if stored.get("fingerprint") != config.fingerprint():
        raise TrainError(
            f"{run_dir} holds checkpoints of a different config (fingerprint "
            f"{stored.get('fingerprint')} vs {config.fingerprint()}); choose another name / "
            "output_dir, or pass --fresh to start over"
        )
    return True


def _prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    tags = sorted(p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith("epoch"))
    for old in tags[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, obj: Any) -> None:
    from xas_data.io_utils import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def _evaluate_and_save(
    config: RunConfig,
    data: TrainingData,
    module: torch.nn.Module,
    arch: str,
    device: torch.device,
    run_id: str | None,
    extra_meta: dict[str, Any],
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Predict the test split (val if there is none), write predictions and the checkpoint."""
    from xas_eval.predictions import Predictions

    xm = _xas_models()
    run_dir = config.run_dir
    # the test split when one is configured (elements without test rows get no predictions);
    # the validation split only when the config names no test split
    eval_split = data.test if data.test is not None else data.val
    split_name = config.data.test_split or config.data.val_split or "holdout"
    metrics: dict[str, dict[str, float]] = {}
    paths: list[str] = []
    pred_dir = run_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    for element in data.elements:
        part: SplitArrays = eval_split.only(element)
        if len(part) == 0:
            continue
        preds = Predictions(
            y_true=part.y.astype(np.float64),
            y_pred=predict_array(module, part, device).astype(np.float64),
            y_train_mean=data.train_mean(element),
            energy=data.energies[element],
            site_ids=part.site_ids,
            model=config.recipe,
            element=element,
            fidelity=data.fidelity,
            split=str(split_name),
            features="+".join(data.feature_keys),
            run_id=run_id or "",
            extra={"run": config.name, "n_train": int((data.train.element == element).sum())},
        )
        path = preds.save(pred_dir / f"{element}_{data.fidelity}" / "predictions.npz")
        paths.append(str(path))
        metrics[element] = {k: float(v) for k, v in preds.metrics().items()}
    grids = {e: xm.EnergyGrid(**data.grid(e)) for e in data.elements}
    meta = xm.CheckpointMeta(
        energy_grid=grids[data.elements[0]],
        energy_grids=grids if len(grids) > 1 else {},
        elements=data.elements,
        fidelity=data.fidelity,
        featurizer=xm.FeaturizerInfo(
            name=data.featurizer,
            version=data.featurizer_version,
            key="+".join(data.feature_keys),
        ),
        training_data={
            "dataset": data.dataset_name,
            "license": data.dataset_license,
            "fidelity": data.fidelity,
            "elements": data.elements,
            "n_train": len(data.train),
            "n_val": len(data.val),
            "n_test": 0 if data.test is None else len(data.test),
            "splits": {
                "train": config.data.train_split,
                "val": config.data.val_split or f"holdout {config.data.holdout_fraction}",
                "test": config.data.test_split,
            },
            "recipe": config.recipe,
            "init_from": config.init_from,
            "mlflow_run_id": run_id,
            # graph models: the CrystalGraphConfig that predict() must rebuild graphs with
            **({"graph_config": data.graph_settings} if data.graph_settings else {}),
            # the eta baseline (mean training spectrum per element), so eta can be re-evaluated
            "baseline_spectra": {
                e: [round(float(v), 7) for v in data.train_mean(e)] for e in data.elements
            },
            **extra_meta,
        },
        metrics={f"{el}/{k}": round(v, 6) for el, m in metrics.items() for k, v in m.items()}
        | {"eval_split": str(split_name)},
    )
    module.eval()
    module.float()  # published weights are fp32, whatever the training precision
    xm.save_checkpoint(run_dir / MODEL_DIR, module, meta, overwrite=True)
    return metrics, paths


# --------------------------------------------------------------------------- the loop
def train(
    config: RunConfig,
    *,
    parent_run_id: str | None = None,
    progress: Progress | None = print,
    fresh: bool = False,
    epoch_callback: Callable[[int, float], None] | None = None,
    data: TrainingData | None = None,
) -> TrainResult:
    """Train one run as configured; resumable; returns the :class:`TrainResult`.

    Starts the process group (unless the caller did) and destroys it when the run ends,
    also when it fails; see :func:`_train` for the arguments.
    """
    check_tracking(config)  # a dead tracking server fails now, not after the set-up
    dist = setup_distributed()
    try:
        return _train(
            config,
            dist,
            parent_run_id=parent_run_id,
            progress=progress,
            fresh=fresh,
            epoch_callback=epoch_callback,
            data=data,
        )
    finally:
        teardown_distributed(dist)


def _train(
    config: RunConfig,
    dist: DistInfo,
    *,
    parent_run_id: str | None = None,
    progress: Progress | None = print,
    fresh: bool = False,
    epoch_callback: Callable[[int, float], None] | None = None,
    data: TrainingData | None = None,
) -> TrainResult:
    """Train one run as configured on the process group ``dist``; resumable.

    Args:
        config: the validated run config.
        parent_run_id: MLflow parent run (cascade, tuning).
        progress: where progress lines go (rank 0 only); ``None`` for silence.
        fresh: discard existing checkpoints of this run instead of resuming.
        epoch_callback: called as ``(epoch, val_loss)`` after every epoch on every rank (e.g.
            Optuna pruning); an exception raised there ends the run (MLflow status KILLED).
        data: pre-loaded training data (else read from ``config.data``).

    Raises:
        ConfigError / TrainError: before training starts, for bad configs, data or checkpoints.
    """
    t_start = time.perf_counter()
    t = config.training
    make_loss(t.loss, t.loss_params)  # refuse a bad loss before reading any data
    if data is None:
        data = load_training_data(config.data, seed=t.seed)
    loss_fn = make_loss(t.loss, t.loss_params, data.grid(data.elements[0])["step"])
    torch.manual_seed(t.seed)
    model, arch = build_initial_model(config, data)

    say: Progress = (progress or (lambda _m: None)) if dist.is_main else (lambda _m: None)
    precision = resolve_precision(t.precision, dist.device)
    global_batch = effective_global_batch(config, len(data.train), dist.world_size)
    if global_batch != t.batch_size:
        say(
            f"[{config.name}] batch_size {t.batch_size} > {len(data.train)} spectra: using {global_batch}"
        )
    run_dir = config.run_dir
    ckpt_dir = run_dir / CHECKPOINT_DIR
    resume = _check_resume(run_dir, config, fresh) if dist.is_main else False
    flag = torch.tensor([int(resume)])
    if dist.world_size > 1:
        barrier()
        torch.distributed.broadcast(flag, 0)
    resume = bool(flag.item())

    lr = t.lr
    if t.lr_finder and not resume and data.is_graph:
        raise ConfigError("training.lr_finder supports per-site feature models only; set lr")
    if t.lr_finder and not resume:
        from xas_train.lr_finder import find_lr

        found = find_lr(model, data.train.x, data.train.y, loss_fn, global_batch, seed=t.seed)
        lr = found.suggestion
        say(f"[{config.name}] learning-rate finder suggests lr = {lr:.3g}")

    import deepspeed

    opt_cls = torch.optim.Adam if t.optimizer == "adam" else torch.optim.AdamW
    optimizer = opt_cls(model.parameters(), lr=lr, weight_decay=t.weight_decay)
    engine, optimizer, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        config=deepspeed_config(config, dist, global_batch, precision),
    )
    device = engine.device
    dtype = next(engine.module.parameters()).dtype
    x_train = ModelInputs(data.train, device, dtype)
    y_train = torch.from_numpy(data.train.y).to(device=device, dtype=torch.float32)
    y_val = torch.from_numpy(data.val.y)

    state: dict[str, Any] = {
        "epoch": 0,
        "best_val_loss": math.inf,
        "best_epoch": -1,
        "bad_epochs": 0,
        "best_state": None,
        "history": [],
        "lr": lr,
        "mlflow_run_id": None,
    }
    if resume:
        from xas_train.safe_checkpoint import load_engine_checkpoint

        # every .pt file is checked and read with weights_only=True: no planted pickle runs
        _, client = load_engine_checkpoint(engine, ckpt_dir)
        if client is None:
            raise TrainError(f"cannot read the checkpoint in {ckpt_dir}; rerun with --fresh")
        state.update({k: client[k] for k in state if k in client})
        lr = state["lr"]
        say(f"[{config.name}] resumed from {ckpt_dir} at epoch {state['epoch']}")
    resumed_from = int(state["epoch"])

    tracker = Tracker(
        config.tracking_uri(), config.mlflow.experiment, config.mlflow.enabled and dist.is_main
    )
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / "run.json", {"fingerprint": config.fingerprint()})
        (run_dir / "config.yaml").write_text(dump_config(config))
        run_id = tracker.start(
            config.name, _tags(config, data), parent_run_id, state["mlflow_run_id"]
        )
        state["mlflow_run_id"] = run_id
        if not resume:
            tracker.log_params(
                config.to_dict()
                | {
                    "resolved": {
                        "lr": lr,
                        "global_batch": global_batch,
                        "world_size": dist.world_size,
                        "precision": precision,
                        "architecture": arch,
                        "n_train": len(data.train),
                        "n_val": len(data.val),
                        "input_dim": data.input_dim,
                        "n_parameters": sum(p.numel() for p in model.parameters()),
                    }
                }
            )
            tracker.log_text(dump_config(config), "config.yaml")
    say(
        f"[{config.name}] {config.recipe} {','.join(data.elements)} {data.fidelity}: "
        f"{len(data.train)} train / {len(data.val)} val spectra, {data.input_dim} features, "
        f"batch {global_batch} on {dist.world_size} rank(s) ({dist.backend}, {precision})"
    )

    n_train = len(data.train)
    steps = n_train // global_batch
    micro = global_batch // (dist.world_size * t.grad_accum)
    samples_seen = 0
    t_loop = time.perf_counter()
    status = "FAILED"
    stopped_early = False
    stop_request = StopRequest(dist)  # SIGUSR1/SIGTERM/$XAS_TRAIN_STOP_FILE: save and stop
    try:
        epoch = int(state["epoch"])
        while epoch < t.max_epochs:
            engine.train()
            perm = np.random.default_rng(_mix_seed(t.seed, epoch)).permutation(n_train)
            loss_sum = torch.zeros(1, dtype=torch.float64)
            micro_steps = [  # (step, j, rows) of this rank, in training order
                (step, j, torch.from_numpy(perm[step * global_batch + j * micro :][:micro]))
                for step in range(steps)
                for j in (acc * dist.world_size + dist.rank for acc in range(t.grad_accum))
            ]
            inputs = x_train.prefetch([rows for _, _, rows in micro_steps])
            for (step, j, rows), batch in zip(micro_steps, inputs, strict=True):
                torch.manual_seed(_mix_seed(t.seed, epoch, step, j))
                loss = batch_loss(loss_fn, engine(batch), y_train[rows], epoch)
                engine.backward(loss)
                engine.step()
                loss_sum += loss.detach().double().cpu() * micro
            samples_seen += steps * global_batch
            _sync_buffers(engine.module, dist.world_size)
            all_reduce_mean_(loss_sum, dist.world_size)
            train_loss = float(loss_sum.item()) * dist.world_size / (steps * global_batch)
            pred_val = torch.from_numpy(predict_array(engine.module, data.val, device))
            val_loss = float(loss_fn(pred_val, y_val))
            val_mse = float(torch.mean((pred_val - y_val) ** 2))
            epoch += 1
            improved = val_loss < state["best_val_loss"] - t.min_delta
            if improved:
                state["best_val_loss"], state["best_epoch"], state["bad_epochs"] = (
                    val_loss,
                    epoch,
                    0,
                )
                state["best_state"] = {
                    k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()
                }
            else:
                state["bad_epochs"] += 1
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_mse": val_mse,
            }
            state["history"].append(record)
            state["epoch"] = epoch
            tracker.log_metrics(
                {
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_mse": val_mse,
                    "best_val_loss": state["best_val_loss"],
                },
                step=epoch,
            )
            if epoch_callback is not None:
                epoch_callback(epoch, val_loss)
            stop = state["bad_epochs"] >= t.patience
            if epoch == 1 or epoch % 25 == 0 or stop or epoch == t.max_epochs:
                say(
                    f"[{config.name}] epoch {epoch:4d}  train {train_loss:.4g}  val {val_loss:.4g}"
                    f"  best {state['best_val_loss']:.4g} @ {state['best_epoch']}"
                )
            if t.checkpoint_every and epoch % t.checkpoint_every == 0 and not stop:
                engine.save_checkpoint(str(ckpt_dir), tag=f"epoch{epoch:06d}", client_state=state)
                barrier()
                if dist.is_main:
                    _prune_checkpoints(ckpt_dir, t.keep_checkpoints)
            if not stop and stop_request.requested():
                stop_on_request(engine, ckpt_dir, state, epoch, config, stop_request)
            if stop:
                stopped_early = True
                say(f"[{config.name}] early stop: no improvement for {t.patience} epochs")
                break
        loop_seconds = time.perf_counter() - t_loop
        if state["best_state"] is not None:
            engine.module.load_state_dict(state["best_state"])
        metrics: dict[str, dict[str, float]] = {}
        paths: list[str] = []
        version = None
        if dist.is_main:
            metrics, paths = _evaluate_and_save(
                config,
                data,
                engine.module,
                arch,
                device,
                state["mlflow_run_id"],
                {"global_batch": global_batch, "best_epoch": state["best_epoch"]},
            )
            _write_json(run_dir / "history.json", state["history"])
            for el, m in metrics.items():
                tracker.log_metrics({f"test_{k}_{el}": v for k, v in m.items()}, step=epoch)
            tracker.log_metrics(
                {"best_epoch": state["best_epoch"], "epochs_run": epoch}, step=epoch, flush=True
            )
            tracker.log_artifacts(run_dir / MODEL_DIR, MODEL_DIR)
            tracker.log_artifacts(run_dir / "predictions", "predictions")
            if config.mlflow.register_model:
                name = config.mlflow.registered_name or config.name
                version = tracker.register(name, MODEL_DIR)
        status = "FINISHED"
    finally:
        stop_request.close()
        if dist.is_main:
            tracker.end(status if status == "FINISHED" else "KILLED")
    barrier()
    result = TrainResult(
        name=config.name,
        recipe=config.recipe,
        run_dir=str(run_dir),
        model_dir=str(run_dir / MODEL_DIR),
        elements=data.elements,
        fidelity=data.fidelity,
        best_epoch=int(state["best_epoch"]),
        best_val_loss=float(state["best_val_loss"]),
        epochs_run=epoch,
        stopped_early=stopped_early,
        resumed_from_epoch=resumed_from,
        lr=float(lr),
        global_batch=global_batch,
        world_size=dist.world_size,
        seconds=time.perf_counter() - t_start,
        samples_per_second=samples_seen / max(loop_seconds, 1e-9),
        metrics=metrics,
        predictions=paths,
        run_id=state["mlflow_run_id"],
        model_version=version,
    )
    if dist.is_main:
        _write_json(run_dir / "result.json", asdict(result))
    return result


def evaluate_checkpoint(
    config: RunConfig, progress: Progress | None = print
) -> dict[str, dict[str, float]]:
    """Score a run that stopped before it finished (a session or wall-time limit): load the
    best state kept in its latest checkpoint, predict the test split (val if none) and write
    the predictions, the model checkpoint and ``history.json`` as a finished run would.

    Returns:
        element -> metrics (eta, MSE, ...), as ``TrainResult.metrics``.

    Raises:
        TrainError: the run folder holds no checkpoint of this config, or one without a best
            state (it stopped before its first epoch ended).
    """
    run_dir = config.run_dir
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if not _check_resume(run_dir, config, fresh=False):
        raise TrainError(
            f"{ckpt_dir} holds no checkpoint to evaluate; train with "
            "training.checkpoint_every > 0 (xas-train train CONFIG) first"
        )
    from xas_train.safe_checkpoint import checkpoint_tag, safe_load

    tag = checkpoint_tag(ckpt_dir)
    files = sorted((ckpt_dir / tag).glob("*model_states.pt"))
    if not files:
        raise TrainError(f"checkpoint {ckpt_dir / tag} has no model states; rerun with --fresh")
    state = safe_load(files[0])  # weights_only=True: a planted pickle is refused, not run
    if not state.get("best_state"):
        raise TrainError(f"checkpoint {tag} holds no best state yet; train for longer")
    data = load_training_data(config.data, seed=config.training.seed)
    model, arch = build_initial_model(config, data)
    model.load_state_dict(state["best_state"])
    metrics, _ = _evaluate_and_save(
        config,
        data,
        model,
        arch,
        torch.device("cpu"),
        state.get("mlflow_run_id"),
        {
            "best_epoch": int(state["best_epoch"]),
            "stopped_at_epoch": int(state["epoch"]),
            "note": f"evaluated from checkpoint {tag} before the run finished; resumable",
        },
    )
    _write_json(run_dir / "history.json", state.get("history", []))
    say = progress or (lambda _m: None)
    etas = ", ".join(f"{el} eta {m['eta']:.3f}" for el, m in metrics.items())
    say(f"[{config.name}] {tag}: best epoch {state['best_epoch']}; {etas}")
    return metrics


# --------------------------------------------------------------------------- preemption
#: Environment variable naming the stop file (the Slurm scripts of ``xas_train.slurm`` set it).
STOP_FILE_ENV = "XAS_TRAIN_STOP_FILE"


class TrainPreempted(TrainError):
    """The run stopped on request (SIGUSR1, SIGTERM or the stop file) after saving a
    checkpoint; running the same config again resumes from it."""


class StopRequest:
    """Stop requests to a training run: SIGUSR1 or SIGTERM to this process, or the file named
    by ``$XAS_TRAIN_STOP_FILE`` (written by a Slurm batch script when it gets SIGUSR1 before
    the time limit or a preemption) existing without a ``checkpoint`` acknowledgement in it.

    SIGTERM is what Slurm sends at the time limit, on ``scancel`` and on preemption when the
    job asked for no earlier signal (and what torchrun forwards to its workers): the run saves
    a checkpoint after its current epoch and stops, instead of dying with up to
    ``checkpoint_every`` epochs lost. Slurm kills the job ``KillWait`` seconds (default 30)
    after SIGTERM, so long epochs need the earlier warning signal of the generated scripts
    (``--signal=B:USR1@120``).

    The handler only sets a flag (installed on the main thread, syscalls restarted, the
    previous handler back on :meth:`close`); :meth:`requested` is a collective: every rank
    calls it at the same point and all get the same answer.
    """

    def __init__(self, dist: DistInfo) -> None:
        import os
        import signal
        import threading

        self.dist = dist
        self.path = os.environ.get(STOP_FILE_ENV) or None
        self.signalled: str | None = None
        """Name of the stop signal received (``SIGUSR1``/``SIGTERM``), else None."""
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGUSR1", "SIGTERM"):
                if hasattr(signal, name):
                    signum = getattr(signal, name)
                    self._previous[signum] = signal.signal(signum, self._on_signal)
                    signal.siginterrupt(signum, False)

    def _on_signal(self, signum, frame) -> None:
        import signal

        self.signalled = signal.Signals(signum).name

    def file_requests(self) -> bool:
        """The stop file exists and is a request (not this trainer's acknowledgement)."""
        if self.path is None:
            return False
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return not f.read(64).startswith("checkpoint ")
        except OSError:  # absent (the usual case) or unreadable
            return False

    def requested(self) -> bool:
        """Whether any rank got a stop request (same answer on every rank)."""
        local = self.signalled is not None or self.file_requests()
        if self.dist.world_size == 1:
            return local
        device = self.dist.device if self.dist.backend == "nccl" else torch.device("cpu")
        flag = torch.tensor([int(local)], dtype=torch.int32, device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def acknowledge(self, tag: str) -> None:
        """Rank 0 writes ``checkpoint TAG`` into the stop file: the batch script then requeues."""
        if self.dist.is_main and self.path is not None:
            from xas_data.io_utils import atomic_write_text

            atomic_write_text(Path(self.path), f"checkpoint {tag}\n")

    def close(self) -> None:
        """Put the previous SIGUSR1 and SIGTERM handlers back."""
        import signal

        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


def stop_on_request(
    engine: Any,
    ckpt_dir: Path,
    state: dict[str, Any],
    epoch: int,
    config: RunConfig,
    request: StopRequest,
) -> None:
    """Save a checkpoint of the state after ``epoch`` (unless the regular one of this epoch was
    just saved), acknowledge the request and raise :class:`TrainPreempted` (all ranks)."""
    t = config.training
    tag = f"epoch{epoch:06d}"
    if not (t.checkpoint_every and epoch % t.checkpoint_every == 0):
        engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=state)
        barrier()
        if request.dist.is_main:
            _prune_checkpoints(ckpt_dir, t.keep_checkpoints)
    request.acknowledge(tag)
    barrier()
    why = request.signalled or f"stop file {request.path}"
    raise TrainPreempted(
        f"[{config.name}] stopped on request ({why}) after epoch {epoch}: checkpoint {tag} "
        f"saved in {ckpt_dir}; run the same command again to resume"
    )
