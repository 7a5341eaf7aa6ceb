"""Publish checkpoints into a model zoo folder with a schema-versioned ``index.json``.

Layout::

    <zoo>/index.json                      {"schema_version": 1, "models": [entry, ...]}
    <zoo>/<name>/<version>/model.json     the checkpoint (xas_models format)
    <zoo>/<name>/<version>/model.safetensors
    <zoo>/<name>/<version>/README.md      model card

Each index entry records name, version, architecture, task, elements, edge, fidelity,
featurizer, energy grids, training data, metrics, license, the MLflow run id and the sha256 of
every file and its size in bytes (``sizes``: downloads are capped by it).

Published versions are immutable: publishing other weights under an existing name/version is
refused, even with ``overwrite``; publishing the same files again is a no-op; ``overwrite``
only replaces the other files (model.json, README.md) of a version with the same weights.

Writes are atomic and locked. One publisher at a time holds ``<zoo>/.index.lock``
(``filelock``, waiting up to :data:`LOCK_TIMEOUT_S`); the version folder is built in
``<zoo>/<name>/.<version>.tmp-<pid>`` and swapped in atomically (Linux ``renameat2``; elsewhere
rename aside, rename in, delete), then ``index.json`` is replaced atomically. A publisher
killed at any point leaves no indexed version with files missing, and the temporary folders of
killed publishers are removed by the next publish.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from xas_train.errors import TrainError

INDEX_FILE = "index.json"
INDEX_SCHEMA_VERSION = 1
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+([.-][0-9A-Za-z.]+)?$")
_LEFTOVER_RE = re.compile(r"^\.(.+)\.(tmp|old)-(\d+)$")
#: Seconds a publisher waits for another one to finish before giving up (a publish copies a
#: few MB and rewrites the index: seconds).
LOCK_TIMEOUT_S = 120.0
WEIGHTS_FILE = "model.safetensors"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_index(zoo_dir: str | Path) -> dict[str, Any]:
    """The zoo index (an empty one when the zoo has none yet)."""
    path = Path(zoo_dir) / INDEX_FILE
    if not path.is_file():
        return {"schema_version": INDEX_SCHEMA_VERSION, "models": []}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainError(
            f"{path} is not valid JSON ({exc}); restore it (e.g. from version control) before "
            "publishing into this zoo"
        ) from None
    if not isinstance(index, dict) or not isinstance(index.get("models"), list):
        raise TrainError(
            f"{path} must hold {{'schema_version': 1, 'models': [...]}}; restore it before "
            "publishing into this zoo"
        )
    if index.get("schema_version") != INDEX_SCHEMA_VERSION:
        raise TrainError(
            f"{path} has schema_version {index.get('schema_version')!r}; this xas-train writes "
            f"{INDEX_SCHEMA_VERSION}. Upgrade xas-train or publish into another zoo folder"
        )
    return index


@contextmanager
def _locked(zoo_dir: Path) -> Iterator[None]:
    """Hold the zoo's writer lock (``<zoo>/.index.lock``) and clean up after killed publishers."""
    from xas_data.errors import BusyError
    from xas_data.io_utils import exclusive_lock

    zoo_dir.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(zoo_dir / ".index.lock", f"zoo {zoo_dir}", LOCK_TIMEOUT_S):
            _clean_leftovers(zoo_dir)
            yield
    except BusyError as exc:
        raise TrainError(str(exc)) from None


def _clean_leftovers(zoo_dir: Path) -> None:
    """Remove the ``<name>/.<version>.tmp-<pid>`` folders of killed publishers (and put back a
    version folder moved aside by one killed between its two renames)."""
    from xas_data.io_utils import recover_directory

    for model_dir in (p for p in zoo_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = {m.group(1) for p in model_dir.iterdir() if (m := _LEFTOVER_RE.match(p.name))}
        for version in sorted(versions):
            recover_directory(model_dir / version)


def _write_index(zoo_dir: Path, index: dict[str, Any]) -> None:
    from xas_data.io_utils import atomic_write_text

    index["models"].sort(key=lambda e: (e["name"], e["version"]))
    atomic_write_text(zoo_dir / INDEX_FILE, json.dumps(index, indent=2) + "\n")


def resolve_checkpoint(source: str | Path, tracking_uri: str | None = None) -> Path:
    """A checkpoint folder from a folder, a run folder (``<run>/model``) or an MLflow run id
    (``runs:/<id>`` or the 32-hex id; downloaded from ``tracking_uri``)."""
    text = str(source)
    path = Path(text)
    if (path / "model.json").is_file():
        return path
    if (path / "model" / "model.json").is_file():
        return path / "model"
    run_id = text.removeprefix("runs:/").split("/")[0]
    if re.fullmatch(r"[0-9a-f]{32}", run_id):
        from mlflow.tracking import MlflowClient

        dst = Path(tempfile.mkdtemp(prefix="xas-publish-"))
        try:
            local = MlflowClient(tracking_uri=tracking_uri).download_artifacts(
                run_id, "model", str(dst)
            )
        except Exception as exc:
            raise TrainError(
                f"cannot download the model of MLflow run {run_id} from {tracking_uri!r}: {exc}"
            ) from None
        return Path(local)
    raise TrainError(
        f"{text!r} is neither a checkpoint folder (with model.json), a run folder, nor an "
        "MLflow run id; pass one of these"
    )


CHECKPOINT_FILES = ("model.json", "model.safetensors", "README.md")


def check_checkpoint_files(folder: Path) -> None:
    """Refuse a checkpoint folder holding anything besides :data:`CHECKPOINT_FILES`: a pickle
    (``*.pt``) or any other file beside them would be copied into the zoo and handed to every
    user of the model. The weights themselves are safetensors and are never unpickled."""
    extra = sorted(p.name for p in folder.iterdir() if p.name not in CHECKPOINT_FILES)
    if extra:
        raise TrainError(
            f"{folder} holds {', '.join(extra[:5])} beside the checkpoint; a checkpoint is "
            f"{', '.join(CHECKPOINT_FILES)} only: remove the other files (or publish the "
            "folder save_checkpoint wrote)"
        )


def publish(
    source: str | Path,
    zoo_dir: str | Path,
    name: str,
    version: str,
    *,
    overwrite: bool = False,
    license: str = "BSD-3-Clause",
    task: str | None = None,
    tracking_uri: str | None = None,
    allow_below_baseline: bool = False,
) -> dict[str, Any]:
    """Copy a checkpoint into ``<zoo>/<name>/<version>`` and add it to the index.

    Returns the index entry (the existing one when the same files are published again: a
    no-op). Raises TrainError for a bad name/version, an unreadable checkpoint, other weights
    under an existing name/version (even with ``overwrite``: published versions are
    immutable), the same weights with other metadata files without ``overwrite``, a zoo busy
    with another publisher for :data:`LOCK_TIMEOUT_S`, or a forward model whose test eta is
    below 1 for some element (worse than the mean spectrum) without ``allow_below_baseline``;
    such a model's entry records ``below_baseline``.
    """
    from xas_models import load_checkpoint
    from xas_models.zoo import below_baseline

    if not _NAME_RE.match(name):
        raise TrainError(f"model name {name!r} must be lower-case letters, digits, '.', '_' or '-'")
    if not _VERSION_RE.match(version):
        raise TrainError(f"version {version!r} must look like 1.2.3 (semantic version)")
    ckpt = resolve_checkpoint(source, tracking_uri)
    check_checkpoint_files(ckpt)
    try:
        _, meta = load_checkpoint(ckpt)  # JSON + safetensors: nothing is unpickled
    except Exception as exc:
        raise TrainError(f"cannot publish {ckpt}: {exc}") from None
    task = task or ("inverse" if meta.featurizer.name == "spectrum" else "forward")
    bad = below_baseline(meta.metrics) if task == "forward" else []
    if bad and not allow_below_baseline:
        raise TrainError(
            f"{name} {version}: test eta < 1 for {', '.join(bad)} (worse than the mean training "
            "spectrum); train it better, or pass --allow-below-baseline to publish it flagged"
        )
    zoo = Path(zoo_dir)
    rel = Path(name) / version
    with _locked(zoo):
        index = read_index(zoo)
        old = next(
            (e for e in index["models"] if (e["name"], e["version"]) == (name, version)), None
        )
        new_files = {p.name: sha256_file(p) for p in sorted(ckpt.iterdir()) if p.is_file()}
        if old is not None:
            same = _check_republish(old, new_files, zoo, overwrite)
            if same:
                return old
        dest = zoo / rel
        tmp = dest.parent / f".{version}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(ckpt, tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        entry = _entry(meta, name, version, task, bad, license, rel, files, sizes)
        _install(tmp, dest)
        index["models"] = [
            e for e in index["models"] if not (e["name"] == name and e["version"] == version)
        ] + [entry]
        _write_index(zoo, index)
    return entry


def _check_republish(
    old: dict[str, Any], new_files: dict[str, str], zoo: Path, overwrite: bool
) -> bool:
    """Whether publishing ``new_files`` over the indexed ``old`` entry is a no-op (the same
    files, all present and intact); TrainError when it is not allowed.

    Other weights are refused whatever ``overwrite`` says (published versions are immutable);
    the same weights with other metadata files need ``overwrite``.
    """
    label = f"{old['name']} {old['version']}"
    if new_files.get(WEIGHTS_FILE) != old["files"].get(WEIGHTS_FILE):
        raise TrainError(
            f"{label} is already published in {zoo / INDEX_FILE} with other weights; published "
            "versions are immutable (clients cache them by name and version): publish these "
            "weights as a new version"
        )
    folder = zoo / old["path"]
    intact = all(
        (folder / n).is_file() and sha256_file(folder / n) == h for n, h in old["files"].items()
    )
    if new_files == old["files"] and intact:
        return True
    if not overwrite:
        raise TrainError(
            f"{label} is already in {zoo / INDEX_FILE} with the same weights but other files "
            "(model.json or README.md); pass --overwrite to replace them, or publish a new version"
        )
    return False


def _install(tmp: Path, dest: Path) -> None:
    """Put the fully written ``tmp`` folder at ``dest``: one atomic swap where the OS can, so a
    kill leaves the old or the new folder; the old one is deleted afterwards."""
    from xas_data.io_utils import replace_directory

    replace_directory(tmp, dest)


def _entry(meta, name, version, task, bad, license, rel, files, sizes) -> dict[str, Any]:
    """The index entry of a published checkpoint."""
    grids = meta.energy_grids or {meta.elements[0]: meta.energy_grid}
    return {
        "name": name,
        "version": version,
        "architecture": meta.architecture,
        "task": task,
        "elements": meta.elements,
        "edge": meta.edge,
        "fidelity": meta.fidelity,
        "featurizer": meta.featurizer.model_dump(),
        "energy_grids": {el: g.model_dump() for el, g in grids.items()},
        "training_data": meta.training_data,
        "metrics": meta.metrics,
        **({"below_baseline": bad} if bad else {}),
        "license": license,
        "mlflow_run_id": meta.training_data.get("mlflow_run_id"),
        "path": rel.as_posix(),
        "files": files,
        "sizes": sizes,
        "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
