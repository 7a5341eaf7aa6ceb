"""Dataset registry: named public datasets with URLs, sha256 hashes and a local cache.

A registry entry lists the files of one dataset, where each file can be downloaded from
(several URLs, tried in order), its sha256 hash and size, the name of the ingest converter
that turns the downloaded files into a store, and its license and citation. The shipped
entries live in ``registry.json`` next to this module.

``fetch`` downloads every file of an entry into ``<cache>/<name>/<filename>``. Files are
streamed into a temporary sibling while their sha256 is computed, checked against the
entry and only then renamed over the target, so a failed or tampered download never
replaces a good cached copy. Files already cached with the right hash are not downloaded
again.

Supported URL schemes:

- ``https://`` and ``http://`` (urllib, with a timeout),
- ``file:///absolute/path``,
- ``shared://<relative path>``, resolved against the folder named by the environment
  variable ``XAS_SHARED_DATA`` (the folder that holds ``omnixas-cu-feff/`` etc.).

An entry whose ``sha256`` is ``null`` is *unverified*: it is downloaded, a warning with the
computed hash is emitted, and the user is asked to pin that hash in the registry.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from xas_data.errors import RegistryError
from xas_data.io_utils import umask_mode

__all__ = [
    "SHARED_DATA_ENV",
    "CACHE_ENV",
    "RegistryFile",
    "RegistryEntry",
    "UnverifiedDownloadWarning",
    "load_registry",
    "list_datasets",
    "get_entry",
    "default_cache_dir",
    "resolve_url",
    "fetch",
    "sha256_file",
]

SHARED_DATA_ENV = "XAS_SHARED_DATA"
"""Environment variable naming the folder that ``shared://`` URLs are resolved against."""

CACHE_ENV = "XAS_DATA_CACHE"
"""Environment variable overriding the default download cache folder."""

REGISTRY_SCHEMA_VERSION = 1
"""Version of the registry JSON layout: ``{"schema_version": 1, "datasets": [entry, ...]}``."""

DEFAULT_TIMEOUT_S = 60.0
"""Network timeout in seconds for one http(s) request (connect and each read)."""

_CHUNK_BYTES = 1 << 20
_SCHEMES = ("https://", "http://", "file://", "shared://")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_USER_AGENT = "xas-data-registry/0.1"


class UnverifiedDownloadWarning(UserWarning):
    """A file was downloaded for an entry whose sha256 is not pinned (``null``)."""


def _check_relative_path(value: str, what: str) -> str:
    """Validate a POSIX relative path that must stay inside its parent folder."""
    if not value or value.strip() != value:
        raise ValueError(f"{what} {value!r} must be a non-empty path without surrounding spaces")
    if "\\" in value:
        raise ValueError(f"{what} {value!r} must use '/' as separator")
    pure = PurePosixPath(value)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in value.split("/")):
        raise ValueError(
            f"{what} {value!r} must be a relative path without '.', '..' or empty parts "
            "(e.g. 'spectra.npz' or 'splits/Cu_FEFF_train.txt')"
        )
    return value


class RegistryFile(BaseModel):
    """One file of a registered dataset.

    Attributes:
        filename: relative POSIX path inside the dataset folder (sub-folders allowed,
            e.g. ``"splits/Cu_FEFF_train.txt"``).
        urls: download locations, tried in order.
        sha256: expected lowercase hex sha256 of the file, or ``None`` when not pinned
            (the download is then unverified and a warning shows the computed hash).
        size: expected size in bytes, or ``None`` when unknown.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    filename: str
    urls: tuple[str, ...] = Field(min_length=1)
    sha256: str | None = None
    size: int | None = Field(default=None, ge=0)

    @field_validator("filename")
    @classmethod
    def _valid_filename(cls, value: str) -> str:
        return _check_relative_path(value, "filename")

    @field_validator("urls")
    @classmethod
    def _valid_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(_SCHEMES):
                raise ValueError(
                    f"url {url!r} has an unsupported scheme; use one of {', '.join(_SCHEMES)}"
                )
        return value

    @field_validator("sha256")
    @classmethod
    def _valid_sha256(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower()
        if not _SHA256_RE.match(value):
            raise ValueError(
                f"sha256 {value!r} is not 64 hex characters; give the output of "
                "'sha256sum <file>' or null for an unpinned file"
            )
        return value


class RegistryEntry(BaseModel):
    """A registered dataset.

    Attributes:
        name: dataset name, also the folder name in the cache (lowercase, ``[a-z0-9._-]``).
        description: what the dataset holds.
        files: the files to download.
        converter: name of the ingest function that turns the downloaded files into a store
            (e.g. ``"omnixas_ml_arrays"``, ``"omnixas_cu_feff"``).
        converter_options: keyword arguments for the converter (e.g. the absorbing element
            of a two-column spectrum).
        license: license of the data (SPDX identifier or short text).
        citation: how to cite the data.
        homepage: where the data is described.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    files: tuple[RegistryFile, ...] = Field(min_length=1)
    converter: str
    converter_options: dict[str, Any] = Field(default_factory=dict)
    license: str
    citation: str
    homepage: str

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"dataset name {value!r} must be lowercase letters, digits, '.', '_' or '-' "
                "and start with a letter or digit"
            )
        return value

    @field_validator("files")
    @classmethod
    def _unique_files(cls, value: tuple[RegistryFile, ...]) -> tuple[RegistryFile, ...]:
        seen: set[str] = set()
        for item in value:
            if item.filename in seen:
                raise ValueError(f"filename {item.filename!r} is listed twice; list it once")
            seen.add(item.filename)
        return value

    def file(self, filename: str) -> RegistryFile:
        """Return the file entry called ``filename`` (RegistryError if absent)."""
        for item in self.files:
            if item.filename == filename:
                return item
        known = ", ".join(f.filename for f in self.files)
        raise RegistryError(
            f"dataset '{self.name}' has no file '{filename}'; its files are: {known}"
        )


# --------------------------------------------------------------------------- loading


def _parse_registry(data: Any, source: str) -> dict[str, RegistryEntry]:
    """Validate the JSON content of a registry file into entries keyed by name."""
    if isinstance(data, Mapping):
        items = data.get("datasets")
        version = data.get("schema_version", REGISTRY_SCHEMA_VERSION)
        if version != REGISTRY_SCHEMA_VERSION:
            raise RegistryError(
                f"registry file {source} has schema_version {version!r}, this xas-data reads "
                f"version {REGISTRY_SCHEMA_VERSION}; upgrade xas-data or convert the file"
            )
    else:
        items = None
    if not isinstance(items, list):
        raise RegistryError(
            f"registry file {source} must be a JSON object with a 'datasets' list; "
            "fix the file (see the packaged xas_data/registry.json for the layout)"
        )
    entries: dict[str, RegistryEntry] = {}
    for index, raw in enumerate(items):
        label = raw.get("name", f"#{index}") if isinstance(raw, Mapping) else f"#{index}"
        try:
            entry = RegistryEntry.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(entry)'}: {err['msg']}"
                for err in exc.errors(include_url=False)
            )
            raise RegistryError(
                f"registry file {source}, entry '{label}' is invalid: {problems}. "
                "Fix that entry (fields: name, description, files[filename, urls, sha256, "
                "size], converter, license, citation, homepage)"
            ) from exc
        if entry.name in entries:
            raise RegistryError(
                f"registry file {source} defines dataset '{entry.name}' twice; "
                "remove or rename one of the entries"
            )
        entries[entry.name] = entry
    return entries


def load_registry(path: str | Path | None = None) -> dict[str, RegistryEntry]:
    """Load registry entries.

    Args:
        path: a registry JSON file; ``None`` reads the packaged ``xas_data/registry.json``.

    Returns:
        ``{name: RegistryEntry}`` in file order.

    Raises:
        RegistryError: the file is missing, not JSON, or an entry is invalid.
    """
    if path is None:
        source = "xas_data/registry.json (packaged)"
        try:
            text = resources.files("xas_data").joinpath("registry.json").read_text("utf-8")
        except OSError as exc:
            raise RegistryError(
                f"the packaged registry {source} cannot be read ({exc}); reinstall xas-data"
            ) from exc
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RegistryError(
                f"registry file {source} cannot be read ({exc}); check the path"
            ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(
            f"registry file {source} is not valid JSON ({exc}); fix the syntax"
        ) from exc
    return _parse_registry(data, source)


def list_datasets(path: str | Path | None = None) -> list[str]:
    """Names of the registered datasets, sorted (``path`` as in ``load_registry``)."""
    return sorted(load_registry(path))


def get_entry(name: str, path: str | Path | None = None) -> RegistryEntry:
    """Return the entry called ``name``.

    Raises:
        RegistryError: no such dataset; the message lists the known names.
    """
    entries = load_registry(path)
    try:
        return entries[name]
    except KeyError:
        known = ", ".join(sorted(entries)) or "(none)"
        raise RegistryError(
            f"unknown dataset '{name}'; known datasets: {known}. "
            "Use one of these names or add an entry to the registry"
        ) from None


def default_cache_dir() -> Path:
    """Download cache folder: ``$XAS_DATA_CACHE``, else the user cache dir for ``xas-data``.

    The user cache dir comes from ``platformdirs`` when it is installed and is
    ``~/.cache/xas-data`` otherwise.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:
        return Path.home() / ".cache" / "xas-data"
    return Path(platformdirs.user_cache_dir("xas-data", appauthor=False))


# --------------------------------------------------------------------------- hashing & URLs


def sha256_file(path: str | Path, chunk_size: int = _CHUNK_BYTES) -> str:
    """Lowercase hex sha256 of the file at ``path``, read in chunks of ``chunk_size`` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_url(url: str) -> str | Path:
    """Turn ``file://`` and ``shared://`` URLs into local paths; return http(s) URLs unchanged.

    Raises:
        RegistryError: unsupported scheme, a relative ``file://`` path, an unsafe
            ``shared://`` path, or ``XAS_SHARED_DATA`` unset for a ``shared://`` URL.
    """
    if url.startswith(("https://", "http://")):
        return url
    if url.startswith("file://"):
        parsed = urllib.parse.urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise RegistryError(
                f"file URL {url!r} names host {parsed.netloc!r}; use file:///absolute/path"
            )
        path = Path(urllib.request.url2pathname(parsed.path))
        if not path.is_absolute():
            raise RegistryError(f"file URL {url!r} is not absolute; use file:///absolute/path")
        return path
    if url.startswith("shared://"):
        rel = url[len("shared://") :]
        try:
            _check_relative_path(rel, "shared:// path")
        except ValueError as exc:
            raise RegistryError(f"URL {url!r}: {exc}") from None
        root = os.environ.get(SHARED_DATA_ENV)
        if not root:
            raise RegistryError(
                f"URL {url!r} needs the environment variable {SHARED_DATA_ENV}; set it to the "
                "folder that holds the shared data (the one containing omnixas-cu-feff/), "
                f"e.g. export {SHARED_DATA_ENV}=/path/to/shared/data"
            )
        return Path(root).expanduser() / PurePosixPath(rel)
    raise RegistryError(f"URL {url!r} has an unsupported scheme; use one of {', '.join(_SCHEMES)}")


def _open_url(url: str, timeout: float) -> IO[bytes]:
    """Open ``url`` for binary streaming reading (the caller closes it)."""
    target = resolve_url(url)
    if isinstance(target, Path):
        return open(target, "rb")
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)


# --------------------------------------------------------------------------- fetching


def _stream_to_temp(
    url: str, dest: Path, timeout: float, opener: Callable[[str, float], IO[bytes]]
) -> tuple[Path, str, int]:
    """Stream ``url`` into a temporary sibling of ``dest``; return (temp path, sha256, size)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out, opener(url, timeout) as src:
            while chunk := src.read(_CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest(), size


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{type(exc).__name__}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def _fetch_file(
    entry: RegistryEntry,
    item: RegistryFile,
    urls: Iterable[str],
    dest: Path,
    timeout: float,
    opener: Callable[[str, float], IO[bytes]],
) -> None:
    """Download one file into ``dest`` (verified, atomic); raise RegistryError on failure."""
    failures: list[str] = []
    mismatch = False
    for url in urls:
        try:
            tmp, actual, size = _stream_to_temp(url, dest, timeout, opener)
        except (OSError, http.client.HTTPException, RegistryError, ValueError) as exc:
            failures.append(f"  {url}: {_describe_error(exc)}")
            continue
        if item.size is not None and size != item.size:
            tmp.unlink(missing_ok=True)
            mismatch = True
            failures.append(
                f"  {url}: size mismatch for '{item.filename}': expected {item.size} bytes, "
                f"got {size} bytes"
            )
            continue
        if item.sha256 is not None and actual != item.sha256:
            tmp.unlink(missing_ok=True)
            mismatch = True
            failures.append(
                f"  {url}: sha256 mismatch for '{item.filename}': expected {item.sha256}, "
                f"got {actual}"
            )
            continue
        os.chmod(tmp, umask_mode())
        os.replace(tmp, dest)
        if item.sha256 is None:
            warnings.warn(
                f"dataset '{entry.name}', file '{item.filename}' is unverified: the registry "
                f"pins no sha256. Downloaded from {url}, computed sha256 = {actual} "
                f"({size} bytes). Check the file and pin this hash in the registry entry.",
                UnverifiedDownloadWarning,
                stacklevel=3,
            )
        return
    if mismatch:
        fix = (
            "The source differs from the registered file: if the upstream file was "
            "legitimately updated, re-pin its sha256/size in the registry; otherwise use a "
            f"trusted copy (urls_override={{'{item.filename}': ['file:///path/to/good/copy']}})."
        )
    else:
        fix = (
            "Check the network or the paths, pass working locations with "
            f"urls_override={{'{item.filename}': [url, ...]}}, or place a verified copy at "
            f"{dest}."
        )
    raise RegistryError(
        f"could not fetch file '{item.filename}' of dataset '{entry.name}'; every URL "
        f"failed:\n" + "\n".join(failures) + f"\n{fix}"
    )


def fetch(
    name_or_entry: str | RegistryEntry,
    cache_dir: str | Path | None = None,
    urls_override: Mapping[str, list[str]] | None = None,
    force: bool = False,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Download every file of a dataset into the cache and verify it.

    Args:
        name_or_entry: a registered dataset name or a ``RegistryEntry``.
        cache_dir: cache root (default: ``default_cache_dir()``); files go to
            ``<cache_dir>/<name>/<filename>``, keeping sub-folders of ``filename``.
        urls_override: ``{filename: [url, ...]}`` replacing the registered URLs of those
            files (e.g. local mirrors); every key must be a filename of the entry.
        force: download again even when a cached copy has the right hash.
        timeout: network timeout in seconds for http(s) URLs.

    Returns:
        The dataset folder ``<cache_dir>/<name>``.

    Raises:
        RegistryError: unknown dataset, an override for an unknown file, or a file that no
            URL delivers with the registered sha256 (a good cached copy is left intact).

    A cached file whose sha256 matches is reused. A cached file of an entry with no pinned
    sha256 is reused (with a warning showing its hash) unless ``force`` is set.
    """
    entry = get_entry(name_or_entry) if isinstance(name_or_entry, str) else name_or_entry
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dataset_dir = root / entry.name
    overrides = dict(urls_override or {})
    known = {f.filename for f in entry.files}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise RegistryError(
            f"urls_override names files not in dataset '{entry.name}': {', '.join(unknown)}; "
            f"its files are: {', '.join(sorted(known))}"
        )
    for key, value in overrides.items():
        if isinstance(value, str) or not value:
            raise RegistryError(
                f"urls_override['{key}'] must be a non-empty list of URLs, got {value!r}"
            )

    for item in entry.files:
        dest = dataset_dir / PurePosixPath(item.filename)
        if dest.is_file() and not force:
            cached = sha256_file(dest)
            if item.sha256 is None:
                warnings.warn(
                    f"dataset '{entry.name}', file '{item.filename}' is unverified: the "
                    f"registry pins no sha256; reusing cached {dest} with sha256 = {cached}. "
                    "Pin this hash in the registry entry (or fetch with force=True).",
                    UnverifiedDownloadWarning,
                    stacklevel=2,
                )
                continue
            if cached == item.sha256:
                continue
        urls = overrides.get(item.filename, list(item.urls))
        _fetch_file(entry, item, urls, dest, timeout, _open_url)
    return dataset_dir
