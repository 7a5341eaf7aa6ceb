"""Load run-folder checkpoints without unpickling arbitrary objects.

A run folder may be shared (a group's ``output_dir``), so a planted ``*.pt`` file must not run
code. Every load here is ``torch.load(weights_only=True)``: tensors, plain containers and
numbers only, plus the few DeepSpeed state classes in :data:`SAFE_GLOBAL_NAMES` (rebuilt from
data; their constructors run no user code). DeepSpeed 0.19's ``TorchCheckpointEngine.load``
passes ``weights_only=False``; :func:`load_engine_checkpoint` therefore first refuses a
checkpoint folder whose ``.pt`` files name any other global, then swaps the engine's loader
for :func:`safe_load` before DeepSpeed reads anything.
"""

from __future__ import annotations

import importlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from xas_train.errors import TrainError

#: classes DeepSpeed stores in its model/optimizer states (fp16 loss scalers, ZeRO stage,
#: bf16/ZeRO fragment addresses); rebuilt from their pickled fields, no code runs
SAFE_GLOBAL_NAMES = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REFUSED = (
    "refused to load it: the weights-only loader rejects it ({what}): it holds pickled code "
    "or objects outside the tensor/DeepSpeed allowlist, so this trainer did not write it; "
    "delete the file, or rerun with --fresh to discard the run's checkpoints"
)


def safe_globals() -> list[Any]:
    """The allowlisted DeepSpeed classes that can be imported here."""
    found = []
    for name in SAFE_GLOBAL_NAMES:
        module, _, attr = name.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):  # an older/newer DeepSpeed without the class
            continue
    return found


def safe_load(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with the DeepSpeed allowlist; a one-line
    ``TrainError`` for a file holding anything else or not a checkpoint at all."""
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise TrainError(f"{path}: " + _REFUSED.format(what=_reason(exc))) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise TrainError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}); delete it or rerun "
            "with --fresh"
        ) from None


def _reason(exc: Exception) -> str:
    """The line of a weights-only load error that says what was rejected."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if "GLOBAL" in line:
            return line[:160]
        if line.startswith("Please file an issue") and i + 1 < len(lines):
            return lines[i + 1][:160]
    return type(exc).__name__


def unsafe_globals(path: Path) -> list[str]:
    """Globals a ``.pt`` file names beyond torch's weights-only set and the allowlist; reads
    only the pickle opcodes (no tensor data, nothing is run)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: the weights-only loader decides, safely
        safe_load(path)
        return []
    return [n for n in names if n not in SAFE_GLOBAL_NAMES]


def check_checkpoint_folder(folder: Path) -> None:
    """Refuse ``folder`` when any ``.pt`` file in it names a global outside the allowlist."""
    for path in sorted(folder.rglob("*.pt")):
        bad = unsafe_globals(path)
        if bad:
            raise TrainError(f"{path}: " + _REFUSED.format(what=", ".join(bad[:5])))


def checkpoint_tag(ckpt_dir: Path) -> str:
    """The tag named by ``<ckpt_dir>/latest``: a plain folder name inside ``ckpt_dir``."""
    tag = (ckpt_dir / "latest").read_text(errors="replace").strip()
    folder = ckpt_dir / tag
    inside = _TAG.match(tag) and folder.resolve().parent == ckpt_dir.resolve()
    if not inside or not folder.is_dir():
        raise TrainError(
            f"{ckpt_dir / 'latest'} names {tag[:60]!r}, not a checkpoint folder inside "
            f"{ckpt_dir}; delete the file or rerun with --fresh"
        )
    return tag


def load_engine_checkpoint(engine: Any, ckpt_dir: Path) -> tuple[Any, dict | None]:
    """``engine.load_checkpoint`` of the latest tag, with every file checked first and read
    through :func:`safe_load` (DeepSpeed's own loader would unpickle anything)."""
    tag = checkpoint_tag(ckpt_dir)
    check_checkpoint_folder(ckpt_dir / tag)
    checkpoint_engine = getattr(engine, "checkpoint_engine", None)
    if checkpoint_engine is None or not hasattr(checkpoint_engine, "load"):
        raise TrainError(
            "this DeepSpeed engine has no checkpoint engine to secure; upgrade xas-train or "
            "rerun with --fresh"
        )
    checkpoint_engine.load = lambda path, map_location=None: safe_load(path, map_location)
    return engine.load_checkpoint(str(ckpt_dir), tag=tag, load_optimizer_states=True)
