"""Model zoo client: list and load published checkpoints by name and version.

A zoo is a folder (or a URL serving the same files) laid out as ``xas-train publish`` writes it::

    <zoo>/index.json                   {"schema_version": 1, "models": [entry, ...]}
    <zoo>/<name>/<version>/model.json  checkpoint (see :mod:`xas_models.checkpoint`)
    <zoo>/<name>/<version>/model.safetensors
    <zoo>/<name>/<version>/README.md

Each index entry records the sha256 of every file of the checkpoint; :func:`load_pretrained`
verifies all of them before loading, whatever the source, so a corrupted or tampered file is
never loaded.

Where models are looked up (``zoo=None``), in this order:

1. a local zoo folder: ``$XAS_MODEL_ZOO`` if set (an empty value disables the local zoo), else
   the repository's ``model-zoo/`` folder when xas-models runs from a source checkout;
2. the download cache: ``$XAS_MODELS_CACHE/zoo/<name>/<version>/`` (default
   ``platformdirs.user_cache_dir("xas-models")``), each entry with the index entry it was
   downloaded with (``entry.json``);
3. the zoo URL ``$XAS_MODEL_ZOO_URL``: a base URL (``http(s)://`` or ``file://``) with
   ``index.json`` at its root. Downloads go into a temporary folder inside the cache and are
   renamed into place only after every file passed its sha256 check.

An explicit ``zoo`` argument restricts the lookup to that zoo: a folder is used alone; a URL is
used with the cache. ``version="latest"`` is the highest semantic version available from any
of these sources (the zoo URL's index is read to learn about new versions; when it cannot be
reached the cached versions are used, with a :class:`ZooWarning`). The model is then loaded
from the first source, in the order above, that holds that version. Cache entries are keyed
by name and version (published name/versions are immutable), so they are shared between zoos.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xas_models.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

    from xas_models.checkpoint import CheckpointMeta

INDEX_FILE = "index.json"
INDEX_SCHEMA_VERSION = 1
CACHE_ENTRY_FILE = "entry.json"
ZOO_ENV = "XAS_MODEL_ZOO"
ZOO_URL_ENV = "XAS_MODEL_ZOO_URL"
CACHE_ENV = "XAS_MODELS_CACHE"
DOWNLOAD_TIMEOUT_S = 60.0
#: Largest file downloaded for an index entry that declares no ``sizes`` (bytes).
MAX_DOWNLOAD_BYTES = 1 << 30
_REQUIRED_FILES = ("model.json", "model.safetensors")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION_RE = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-.]?([0-9A-Za-z.-]+))?$")
_URL_SCHEMES = ("http://", "https://", "file://")


class ZooWarning(UserWarning):
    """A zoo source could not be read and was skipped (e.g. the zoo URL is unreachable)."""


class ZooGrid(BaseModel):
    """Energy grid of one element in an index entry: ``start + step * i`` eV, ``i < n_points``."""

    model_config = ConfigDict(extra="ignore")

    start: float
    step: float
    n_points: int


class ZooFeaturizer(BaseModel):
    """The featurizer a zoo model consumes (``key`` is ``xas_features.feature_key``)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    version: str = ""
    key: str = ""


class ZooEntry(BaseModel):
    """One model version of a zoo index (the fields ``xas-train publish`` writes).

    ``path`` is ``<name>/<version>`` relative to the zoo root; ``files`` maps each file name of
    the checkpoint to its hex sha256 and ``sizes`` to its size in bytes (a download is cut off
    past it; entries without sizes are capped at :data:`MAX_DOWNLOAD_BYTES`). ``source`` is not part of the index: it says where the
    entry was found (a zoo folder, the cache folder or a zoo URL).
    """

    model_config = ConfigDict(extra="ignore")

    name: str
    version: str
    architecture: str = ""
    task: str = "forward"
    elements: list[str] = Field(default_factory=list)
    edge: str = "K"
    fidelity: str = ""
    featurizer: ZooFeaturizer
    energy_grids: dict[str, ZooGrid] = Field(default_factory=dict)
    training_data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    license: str = ""
    mlflow_run_id: str | None = None
    path: str
    files: dict[str, str]
    sizes: dict[str, int] = Field(default_factory=dict)
    published: str = ""
    source: str = ""

    @property
    def label(self) -> str:
        """``name version``."""
        return f"{self.name} {self.version}"


def below_baseline(metrics: dict[str, Any]) -> list[str]:
    """Elements (or ``"all"``) whose test eta (``"<El>/eta"`` or ``"eta"``) is below 1: the
    model predicts worse than the mean training spectrum there."""
    bad = []
    for key, value in metrics.items():
        if (key == "eta" or key.endswith("/eta")) and isinstance(value, int | float):
            if not isinstance(value, bool) and value < 1:
                bad.append(key.split("/")[0] if "/" in key else "all")
    return sorted(bad)


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key of a semantic version: ``0.10.0 > 0.9.0``; ``1.0.0-rc1 < 1.0.0``.

    Missing minor/patch numbers count as 0; a suffix (``-rc1``, ``.dev2``) marks a pre-release,
    ordered below the release and among pre-releases by its dot-separated parts (numbers
    numerically, below text). Strings that are no version sort below every version.
    """
    m = _VERSION_RE.match(version.strip())
    if m is None:
        return (-1, version)
    numbers = tuple(int(g or 0) for g in m.groups()[:3])
    suffix = m.group(4)
    if not suffix:
        return (*numbers, 1, ())
    parts = tuple(
        (0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.-]", suffix) if p
    )
    return (*numbers, 0, parts)


def _is_url(text: str) -> bool:
    return text.lower().startswith(_URL_SCHEMES)


def cache_dir() -> Path:
    """Root of the download cache: ``$XAS_MODELS_CACHE/zoo`` or
    ``platformdirs.user_cache_dir("xas-models")/zoo``."""
    root = os.environ.get(CACHE_ENV, "")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("xas-models")
    return Path(root).expanduser() / "zoo"


def checkout_zoo() -> Path | None:
    """The repository's ``model-zoo/`` when xas-models runs from a source checkout, else None."""
    parents = Path(__file__).resolve().parents  # xas_models, src, xas-models, packages, root
    if len(parents) < 5 or [p.name for p in parents[1:4]] != ["src", "xas-models", "packages"]:
        return None
    zoo = parents[4] / "model-zoo"
    return zoo if (zoo / INDEX_FILE).is_file() else None


@dataclass(frozen=True)
class _Sources:
    """Where to look: a local zoo folder, the cache, a zoo URL."""

    local: Path | None
    use_cache: bool
    url: str | None

    def describe(self) -> str:
        parts = []
        if self.local is not None:
            parts.append(f"zoo folder {str(self.local)!r}")
        if self.use_cache:
            parts.append(f"cache {str(cache_dir())!r}")
        if self.url is not None:
            parts.append(f"zoo URL {self.url!r}")
        return ", ".join(parts) or "nothing"


def _sources(zoo: str | os.PathLike[str] | None) -> _Sources:
    if zoo is not None:
        text = os.fspath(zoo)
        if _is_url(text):
            return _Sources(local=None, use_cache=True, url=text)
        path = Path(text).expanduser()
        if not (path / INDEX_FILE).is_file():
            raise ModelError(
                f"zoo folder {text!r} has no {INDEX_FILE}; pass a folder written by "
                "'xas-train publish' or a zoo URL (http(s):// or file://)"
            )
        return _Sources(local=path, use_cache=False, url=None)
    local: Path | None = None
    env = os.environ.get(ZOO_ENV)
    url = os.environ.get(ZOO_URL_ENV) or None
    if env is None:
        local = checkout_zoo()
    elif env:
        if _is_url(env):
            url = url or env
        else:
            local = Path(env).expanduser()
            if not (local / INDEX_FILE).is_file():
                raise ModelError(
                    f"${ZOO_ENV}={env!r} has no {INDEX_FILE}; point it at a zoo folder written "
                    f"by 'xas-train publish', or unset it (set it empty to use no local zoo)"
                )
    return _Sources(local=local, use_cache=True, url=url)


# -- index reading ------------------------------------------------------------------------------


def _parse_index(raw: bytes, where: str) -> list[ZooEntry]:
    try:
        index = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{where} is not valid JSON ({exc}); re-publish the zoo index") from None
    if not isinstance(index, dict) or not isinstance(index.get("models"), list):
        raise ModelError(
            f"{where} must hold {{'schema_version': 1, 'models': [...]}}; re-publish the zoo index"
        )
    if index.get("schema_version") != INDEX_SCHEMA_VERSION:
        raise ModelError(
            f"{where} has schema_version {index.get('schema_version')!r}, but this xas-models "
            f"reads {INDEX_SCHEMA_VERSION}; upgrade xas-models"
        )
    entries = []
    for i, item in enumerate(index["models"]):
        try:
            entries.append(_parse_entry(item, where))
        except ModelError as exc:
            raise ModelError(f"{where}: entry {i}: {exc}") from None
    return entries


def _parse_entry(item: Any, source: str) -> ZooEntry:
    try:
        entry = ZooEntry.model_validate(item)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ModelError(f"invalid zoo entry ({problems}); re-publish the model") from None
    return entry.model_copy(update={"source": source})


def _read_local_index(folder: Path) -> list[ZooEntry]:
    path = folder / INDEX_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {str(path)!r} ({exc}); check the zoo folder") from None
    return [e.model_copy(update={"source": str(folder)}) for e in _parse_index(raw, str(path))]


def _join_url(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + urllib.parse.quote(rel)


def _open_url(url: str):  # noqa: ANN202 - an http.client.HTTPResponse or urllib addinfourl
    try:
        return urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)  # noqa: S310
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelError(
            f"cannot download {url!r} ({reason}); check the network and the zoo URL "
            f"(${ZOO_URL_ENV} or --zoo)"
        ) from None


def _read_remote_index(url: str) -> list[ZooEntry]:
    index_url = _join_url(url, INDEX_FILE)
    with _open_url(index_url) as response:
        raw = response.read()
    return [e.model_copy(update={"source": url}) for e in _parse_index(raw, index_url)]


def _cached_entries() -> list[ZooEntry]:
    """Entries of the cache (``<cache>/zoo/<name>/<version>/entry.json``); unreadable ones are
    skipped (they are refused when loaded)."""
    root = cache_dir()
    if not root.is_dir():
        return []
    entries = []
    for path in sorted(root.glob(f"*/*/{CACHE_ENTRY_FILE}")):
        if path.parts[-3].startswith("."):
            continue
        try:
            entry = _parse_entry(json.loads(path.read_text(encoding="utf-8")), "cache")
        except (OSError, ValueError, ModelError):
            continue
        if entry.name == path.parts[-3] and entry.version == path.parts[-2]:
            entries.append(entry.model_copy(update={"source": f"cache:{path.parent}"}))
    return entries


@dataclass
class _Catalogue:
    """Entries per source; ``remote_error`` when the zoo URL could not be read."""

    sources: _Sources
    local: list[ZooEntry]
    cached: list[ZooEntry]
    remote: list[ZooEntry] | None
    remote_error: ModelError | None

    def all(self) -> list[ZooEntry]:
        """Entries of every source, the first source winning for a name/version."""
        seen: set[tuple[str, str]] = set()
        out = []
        for entry in [*self.local, *self.cached, *(self.remote or [])]:
            if (entry.name, entry.version) not in seen:
                seen.add((entry.name, entry.version))
                out.append(entry)
        return sorted(out, key=lambda e: (e.name, version_key(e.version)))


def _catalogue(sources: _Sources, read_remote: bool = True) -> _Catalogue:
    local = _read_local_index(sources.local) if sources.local is not None else []
    cached = _cached_entries() if sources.use_cache else []
    remote: list[ZooEntry] | None = None
    error: ModelError | None = None
    if sources.url is not None and read_remote:
        try:
            remote = _read_remote_index(sources.url)
        except ModelError as exc:
            error = exc
    return _Catalogue(sources, local, cached, remote, error)


def list_pretrained(zoo: str | os.PathLike[str] | None = None) -> list[ZooEntry]:
    """The models available from the zoo folder, the cache and the zoo URL, sorted by name and
    version (see the module docstring for where they are looked up).

    Args:
        zoo: a zoo folder or URL; ``None`` uses ``$XAS_MODEL_ZOO`` / the checkout's
            ``model-zoo/``, the cache and ``$XAS_MODEL_ZOO_URL``.

    Raises:
        ModelError: an unreadable index, or an unreachable zoo URL when nothing else is
            available (otherwise a :class:`ZooWarning` is issued and it is skipped).
    """
    catalogue = _catalogue(_sources(zoo))
    entries = catalogue.all()
    if catalogue.remote_error is not None:
        if not entries:
            raise catalogue.remote_error
        warnings.warn(
            f"{catalogue.remote_error}; listing only the local and cached models",
            ZooWarning,
            stacklevel=2,
        )
    return entries


# -- verification and download -----------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_entry_paths(entry: ZooEntry) -> None:
    """Refuse entries whose name, version, path or file names could escape the zoo folder."""
    if not _NAME_RE.match(entry.name) or not _NAME_RE.match(entry.version):
        raise ModelError(
            f"zoo entry {entry.label!r} has an invalid name or version; re-publish it with a "
            "name of letters, digits, '.', '_', '-' and a version like 1.2.3"
        )
    parts = entry.path.split("/")
    if entry.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ModelError(
            f"zoo entry {entry.label} has path {entry.path!r}; it must be relative "
            "('<name>/<version>'): re-publish the model"
        )
    for filename in entry.files:
        if "/" in filename or "\\" in filename or filename in ("", ".", ".."):
            raise ModelError(
                f"zoo entry {entry.label} lists file {filename!r}; file names must be plain "
                "names: re-publish the model"
            )
    missing = [f for f in _REQUIRED_FILES if f not in entry.files]
    if missing:
        raise ModelError(
            f"zoo entry {entry.label} lists no sha256 for {missing}; every checkpoint file must "
            "be listed so it can be verified: re-publish the model"
        )


def _verify_folder(folder: Path, entry: ZooEntry, fix: str) -> None:
    """Check every file of ``entry.files`` in ``folder`` against its sha256."""
    for filename, expected in sorted(entry.files.items()):
        path = folder / filename
        if not path.is_file():
            raise ModelError(f"{entry.label}: {str(path)!r} is missing; {fix}")
        found = sha256_file(path)
        if found != expected.lower():
            raise ModelError(
                f"{entry.label}: sha256 mismatch for {str(path)!r}: expected {expected}, found "
                f"{found}. The file is corrupted or was modified and is not loaded; {fix}"
            )


def _fetch_capped(url: str, dest: Path, cap: int, label: str):  # noqa: ANN202 - hashlib object
    """Stream ``url`` into ``dest`` (1 MiB blocks) and return its sha256; ModelError when the
    body exceeds ``cap`` bytes (the index's declared size) or the server stalls for
    :data:`DOWNLOAD_TIMEOUT_S` (a network error)."""
    digest, total = hashlib.sha256(), 0
    try:
        with _open_url(url) as response, dest.open("wb") as fh:
            declared = response.headers.get("Content-Length") if response.headers else None
            if declared is not None and declared.isdigit() and int(declared) > cap:
                raise ModelError(
                    f"{label}: {url!r} is {int(declared)} bytes, more than the {cap} bytes the "
                    "zoo index declares; nothing was cached. Ask the zoo maintainers to "
                    "re-publish the model"
                )
            while block := response.read(1 << 20):
                total += len(block)
                if total > cap:
                    raise ModelError(
                        f"{label}: {url!r} sends more than the {cap} bytes the zoo index "
                        "declares; download stopped and nothing was cached. Ask the zoo "
                        "maintainers to re-publish the model"
                    )
                digest.update(block)
                fh.write(block)
    except (TimeoutError, OSError) as exc:
        raise ModelError(
            f"{label}: network error while downloading {url!r} ({exc or type(exc).__name__}: "
            f"no data for {DOWNLOAD_TIMEOUT_S:g} s or the connection broke); nothing was "
            "cached. Check the network and the zoo URL, then try again"
        ) from None
    return digest


def _download(entry: ZooEntry, url: str) -> Path:
    """Download ``entry`` from the zoo at ``url`` into the cache, verified, atomically.

    Returns the cache folder ``<cache>/zoo/<name>/<version>``.
    """
    root = cache_dir()
    dest = root / entry.name / entry.version
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{entry.name}-{entry.version}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        for filename, expected in sorted(entry.files.items()):
            file_url = _join_url(url, f"{entry.path}/{filename}")
            cap = entry.sizes.get(filename, MAX_DOWNLOAD_BYTES)
            digest = _fetch_capped(file_url, tmp / filename, cap, entry.label)
            found = digest.hexdigest()
            if found != expected.lower():
                raise ModelError(
                    f"{entry.label}: sha256 mismatch for {file_url!r}: expected {expected}, "
                    f"found {found}. The zoo serves a corrupted or tampered file; nothing was "
                    "cached or loaded. Download again later, or ask the zoo maintainers to "
                    "re-publish the model"
                )
        record = entry.model_dump(mode="json", exclude={"source"})
        (tmp / CACHE_ENTRY_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
            # another process cached it meanwhile: use theirs (verified by the caller)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _cache_fix(folder: Path) -> str:
    return (
        f"delete the cache entry {str(folder)!r} (or the whole cache {str(cache_dir())!r}) "
        "and load it again to re-download it"
    )


def _available(entries: list[ZooEntry]) -> str:
    versions: dict[str, list[str]] = {}
    for e in entries:
        versions.setdefault(e.name, []).append(e.version)
    if not versions:
        return "(none)"
    return "; ".join(
        f"{n} ({', '.join(sorted(v, key=version_key))})" for n, v in sorted(versions.items())
    )


def _resolve_version(name: str, version: str, catalogue: _Catalogue) -> str:
    candidates = [e for e in catalogue.all() if e.name == name]
    note = ""
    if catalogue.remote_error is not None:
        note = f" (the zoo URL could not be read: {catalogue.remote_error})"
    if not candidates:
        raise ModelError(
            f"unknown model {name!r} in {catalogue.sources.describe()}{note}; available: "
            f"{_available(catalogue.all())}. Use one of these names (see 'xas models'), or "
            f"point --zoo / ${ZOO_ENV} / ${ZOO_URL_ENV} at the zoo that has it"
        )
    versions = sorted({e.version for e in candidates}, key=version_key)
    if version == "latest":
        if catalogue.remote_error is not None:
            warnings.warn(
                f"{catalogue.remote_error}; 'latest' is resolved among the local and cached "
                f"versions of {name} only",
                ZooWarning,
                stacklevel=4,
            )
        return versions[-1]
    wanted = version.removeprefix("v")
    if wanted not in versions:
        raise ModelError(
            f"model {name!r} has no version {version!r} in {catalogue.sources.describe()}{note}; "
            f"available versions: {', '.join(versions)} (or 'latest')"
        )
    return wanted


def _find(entries: list[ZooEntry] | None, name: str, version: str) -> ZooEntry | None:
    for entry in entries or []:
        if entry.name == name and entry.version == version:
            return entry
    return None


def _locate(
    name: str, version: str, zoo: str | os.PathLike[str] | None
) -> tuple[ZooEntry, Path, str]:
    """Resolve ``name``/``version`` to a verified local folder.

    Returns ``(entry, folder, origin)`` with origin ``"zoo"``, ``"cache"`` or ``"download"``.
    """
    sources = _sources(zoo)
    catalogue = _catalogue(sources, read_remote=False)
    wanted = version.removeprefix("v")
    have_it = _find(catalogue.local, name, wanted) or _find(catalogue.cached, name, wanted)
    if sources.url is not None and (version == "latest" or have_it is None):
        catalogue = _catalogue(sources, read_remote=True)
    chosen = _resolve_version(name, version, catalogue)

    entry = _find(catalogue.local, name, chosen)
    if entry is not None and sources.local is not None:
        _check_entry_paths(entry)
        folder = sources.local / entry.path
        _verify_folder(
            folder,
            entry,
            f"restore the file in the zoo folder {str(sources.local)!r} (e.g. from version "
            "control) or re-publish the model",
        )
        return entry, folder, "zoo"

    remote_entry = _find(catalogue.remote, name, chosen)
    cached_entry = _find(catalogue.cached, name, chosen)
    if cached_entry is not None:
        # the zoo's current index (when read) is the reference; else the entry cached with it
        entry = remote_entry or cached_entry
        _check_entry_paths(entry)
        folder = cache_dir() / entry.name / entry.version
        _verify_folder(folder, entry, _cache_fix(folder))
        return entry, folder, "cache"

    if remote_entry is None or sources.url is None:  # pragma: no cover - resolved above
        raise ModelError(f"model {name} {chosen} is not available; see 'xas models'")
    _check_entry_paths(remote_entry)
    folder = _download(remote_entry, sources.url)
    _verify_folder(folder, remote_entry, _cache_fix(folder))
    return remote_entry, folder, "download"


def load_pretrained_entry(
    name: str, version: str = "latest", zoo: str | os.PathLike[str] | None = None
) -> tuple[nn.Module, CheckpointMeta, ZooEntry]:
    """Like :func:`load_pretrained`, also returning the zoo entry (resolved version, source)."""
    from xas_models import xasblock  # noqa: F401 - registers the built-in architectures
    from xas_models.checkpoint import load_checkpoint

    if not isinstance(name, str) or not name:
        raise ModelError(f"model name must be a non-empty string, got {name!r}")
    entry, folder, origin = _locate(name, str(version), zoo)
    model, meta = load_checkpoint(folder)
    if entry.featurizer.key and meta.featurizer.key != entry.featurizer.key:
        raise ModelError(
            f"{entry.label}: the zoo index lists featurizer key {entry.featurizer.key!r} but "
            f"the checkpoint's model.json has {meta.featurizer.key!r}; re-publish the model"
        )
    where = str(folder) if origin != "cache" else f"cache:{folder}"
    return model, meta, entry.model_copy(update={"source": where})


def load_pretrained(
    name: str, version: str = "latest", zoo: str | os.PathLike[str] | None = None
) -> tuple[nn.Module, CheckpointMeta]:
    """Load a published model by name, after verifying the sha256 of each of its files.

    Args:
        name: the model name in the zoo index (see :func:`list_pretrained` or ``xas models``).
        version: a semantic version (``"0.1.0"``) or ``"latest"`` (highest version).
        zoo: a zoo folder or URL; ``None`` searches the local zoo, the cache and the zoo URL
            (see the module docstring).

    Returns:
        ``(model, meta)``: the model on CPU in eval mode and its checkpoint metadata.

    Raises:
        ModelError: unknown name/version (the message lists what is available), a file whose
            sha256 does not match the index (naming the file, both hashes and the fix), an
            unreachable zoo URL, or an unloadable checkpoint.
    """
    model, meta, _ = load_pretrained_entry(name, version, zoo)
    return model, meta


__all__ = [
    "ZooEntry",
    "ZooFeaturizer",
    "ZooGrid",
    "ZooWarning",
    "cache_dir",
    "checkout_zoo",
    "list_pretrained",
    "load_pretrained",
    "load_pretrained_entry",
    "version_key",
]
