"""Store integrity: chunk checksums, missing chunks, consistent lengths, all-zero spectra.

Stores written by this xas-data carry a CRC-32C checksum per chunk (``store.array_kwargs``)
and write every chunk, so a flipped byte fails its read and a missing chunk file is damage.
Older stores have neither: they stay readable, ``verify_store`` warns that byte damage cannot
be detected there, and a missing float chunk (which Zarr would serve as zeros) is an error.

``quick_check`` lists chunk files and reads metadata only (milliseconds; run at every
read-only open and by ``xas-data info``); ``verify_store`` also decodes every chunk.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from xas_data.errors import StoreError

RESTORE = "restore the store from a backup or rebuild it (xas-data build/ingest)"


@dataclass(frozen=True)
class Finding:
    """One problem of one array; ``error`` False marks a warning."""

    array: str
    problem: str
    fix: str = RESTORE
    error: bool = True

    def __str__(self) -> str:
        return f"{self.array}: {self.problem}; {self.fix}"


@dataclass
class VerifyReport:
    """What ``verify_store`` / ``quick_check`` found."""

    path: str
    n_arrays: int = 0
    n_chunks_read: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.error]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if not f.error]

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        """One line per finding, then a summary line."""
        out = [f"{'error' if f.error else 'warning'}: {f}" for f in self.findings]
        read = f", {self.n_chunks_read} chunks decoded" if self.n_chunks_read else ""
        state = "OK" if self.ok else f"DAMAGED ({len(self.errors)} errors)"
        return [*out, f"{self.path}: {self.n_arrays} arrays{read}: {state}"]


# ----------------------------------------------------------------------------- metadata scan
@dataclass(frozen=True)
class ArrayMeta:
    """What ``zarr.json`` says about one array (read as JSON: no Zarr machinery, fast)."""

    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    fill_value: object
    codecs: tuple[str, ...]
    key_encoding: str
    separator: str

    @property
    def checksummed(self) -> bool:
        return "crc32c" in self.codecs

    def chunk_keys(self) -> list[str]:
        """Keys (relative to the array, e.g. ``c/3/0``) of every chunk the shape implies."""
        grid = [range(-(-n // c)) for n, c in zip(self.shape, self.chunks, strict=True)]
        keys = []
        for index in itertools.product(*grid):
            parts = [str(i) for i in index]
            if self.key_encoding == "v2":
                keys.append(self.separator.join(parts or ["0"]))
            else:
                keys.append(self.separator.join(["c", *parts]))
        return keys


def _array_meta(path: str, meta: dict) -> ArrayMeta:
    grid = meta.get("chunk_grid", {}).get("configuration", {})
    encoding = meta.get("chunk_key_encoding", {})
    default_sep = "." if encoding.get("name") == "v2" else "/"
    return ArrayMeta(
        path=path,
        shape=tuple(meta.get("shape", ())),
        chunks=tuple(grid.get("chunk_shape", meta.get("shape", ()))),
        dtype=str(meta.get("data_type")),
        fill_value=meta.get("fill_value"),
        codecs=tuple(c.get("name", "") for c in meta.get("codecs", ())),
        key_encoding=str(encoding.get("name", "default")),
        separator=encoding.get("configuration", {}).get("separator", default_sep),
    )


def scan_store(root: Path) -> tuple[dict[str, ArrayMeta], set[str]]:
    """Every array's metadata (by path) and every file (relative posix path) of a local store."""
    arrays: dict[str, ArrayMeta] = {}
    files: set[str] = set()
    for dirpath, _, names in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel == "." else f"{rel}/"
        files.update(prefix + n for n in names)
        if "zarr.json" in names and prefix:
            try:
                meta = json.loads((Path(dirpath) / "zarr.json").read_text())
            except (OSError, ValueError) as exc:
                raise StoreError(f"{prefix}zarr.json is unreadable ({exc}); {RESTORE}") from None
            if meta.get("node_type") == "array":
                arrays[rel] = _array_meta(rel, meta)
    return arrays, files


def _is_zero_fill_float(meta: ArrayMeta) -> bool:
    """A float array whose fill value is 0: an absent chunk would be served as zeros."""
    return meta.dtype.startswith("float") and meta.fill_value in (0, 0.0)


# ----------------------------------------------------------------------------- checks
def missing_chunks(meta: ArrayMeta, files: set[str]) -> list[Finding]:
    """A finding when chunk files the shape implies are absent."""
    expected = meta.chunk_keys()
    missing = [k for k in expected if f"{meta.path}/{k}" not in files]
    if not missing:
        return []
    what = f"{len(missing)} of {len(expected)} chunks missing ({', '.join(missing[:3])})"
    if meta.checksummed:
        return [Finding(meta.path, f"{what}; they would read as the fill value {meta.fill_value}")]
    if _is_zero_fill_float(meta):
        return [Finding(meta.path, f"{what}; Zarr would serve them as zeros")]
    return [
        Finding(
            meta.path,
            f"{what}; an older store omits chunks equal to the fill value "
            f"{meta.fill_value!r}, so this may be damage or not",
            "rewrite the store (xas-data verify STORE --rewrite NEW) to make it checkable",
            error=False,
        )
    ]


def _equal_lengths(
    arrays: dict[str, ArrayMeta], paths: list[str], want: int | None
) -> list[Finding]:
    lengths = {p: arrays[p].shape[0] if arrays[p].shape else 0 for p in paths if p in arrays}
    if want is None:
        want = max(lengths.values(), default=0)
    return [
        Finding(p, f"{n} rows, but the store has {want}") for p, n in lengths.items() if n != want
    ]


def _spectra_groups(arrays: dict[str, ArrayMeta]) -> list[str]:
    """``spectra/<element>/<fidelity>`` group paths holding arrays."""
    return sorted({p.rsplit("/", 1)[0] for p in arrays if p.startswith("spectra/")})


def length_findings(arrays: dict[str, ArrayMeta]) -> list[Finding]:
    """Per-material, per-site and per-spectrum arrays must agree in length."""
    materials = [f"materials/{k}" for k in ("id", "structure", "source")]
    per_site = [
        p
        for p in arrays
        if p.startswith("sites/")
        or (p.startswith(("features/", "descriptors/")) and p.count("/") == 1)
        or (p.startswith(("features/", "descriptors/")) and p.endswith("/values"))
    ]
    n_sites = arrays["sites/material"].shape[0] if "sites/material" in arrays else None
    out = _equal_lengths(arrays, materials, None)
    out += _equal_lengths(arrays, sorted(per_site), n_sites)
    for group in _spectra_groups(arrays):
        out += _spectra_group_lengths(arrays, group)
    return out


def _spectra_group_lengths(arrays: dict[str, ArrayMeta], group: str) -> list[Finding]:
    keys = {p.rsplit("/", 1)[1] for p in arrays if p.rsplit("/", 1)[0] == group}
    if not {"energy", "rows", "intensity"} <= keys:
        return [Finding(group, f"holds {sorted(keys)}, lacking energy/rows/intensity")]
    n = arrays[f"{group}/rows"].shape[0]
    out = [
        Finding(f"{group}/{k}", f"{arrays[f'{group}/{k}'].shape[0]} rows, rows has {n}")
        for k in sorted(keys - {"energy"})
        if arrays[f"{group}/{k}"].shape[0] != n
    ]
    width, energy = arrays[f"{group}/intensity"].shape[1:], arrays[f"{group}/energy"].shape
    if width != energy:
        out.append(Finding(f"{group}/intensity", f"{width} points, energy has {energy}"))
    return out


def quick_check(dataset) -> VerifyReport:
    """Metadata and chunk listing only (no chunk is read): missing chunks, lengths, and a
    warning for arrays without checksums. ``dataset`` is an open ``XASDataset``."""
    arrays, files = scan_store(Path(dataset.path))
    report = VerifyReport(str(dataset.path), n_arrays=len(arrays))
    for meta in arrays.values():
        report.findings += missing_chunks(meta, files)
    report.findings += length_findings(arrays)
    legacy = sorted(p for p, m in arrays.items() if not m.checksummed)
    if legacy:
        report.findings.append(
            Finding(
                f"{len(legacy)} of {len(arrays)} arrays (e.g. {legacy[0]})",
                "carry no chunk checksums (written by an older xas-data): a flipped byte "
                "cannot be detected there",
                "copy the store with checksums: xas-data verify STORE --rewrite NEW",
                error=False,
            )
        )
    return report


def require_intact(dataset) -> None:
    """``quick_check`` and raise ``StoreError`` naming the first damaged array."""
    report = quick_check(dataset)
    if report.errors:
        first = report.errors[0]
        more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        raise StoreError(
            f"{dataset.path} is damaged: {first}{more}; details: xas-data verify {dataset.path}"
        )


def iter_arrays(group: zarr.Group, prefix: str = "") -> Iterator[tuple[str, zarr.Array]]:
    """``(path, array)`` of every array below ``group``, sorted by path."""
    for name, array in sorted(group.arrays(), key=lambda kv: kv[0]):
        yield f"{prefix}{name}", array
    for name, sub in sorted(group.groups(), key=lambda kv: kv[0]):
        yield from iter_arrays(sub, f"{prefix}{name}/")


def _chunk_slices(array: zarr.Array, index: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(i * c, min((i + 1) * c, n))
        for i, c, n in zip(index, array.chunks, array.shape, strict=True)
    )


def decode_findings(path: str, array: zarr.Array) -> tuple[list[Finding], int]:
    """Decode every chunk (checking its checksum); for spectra intensities also refuse
    all-zero or non-finite rows. Returns the findings and the number of chunks read."""
    bad: list[str] = []
    zero_rows = nonfinite_rows = 0
    is_intensity = path.startswith("spectra/") and path.endswith("/intensity")
    grid = [range(n) for n in array.cdata_shape]
    count = 0
    for index in itertools.product(*grid):
        count += 1
        try:
            block = array[_chunk_slices(array, index)]
        except Exception as exc:  # checksum mismatch, truncated zstd frame, bad VLen bytes
            why = "checksum mismatch" if "checksum" in str(exc) else type(exc).__name__
            bad.append(f"{array.metadata.encode_chunk_key(index)} ({why})")
            continue
        if is_intensity and block.ndim == 2 and block.shape[1]:
            zero_rows += int((~block.any(axis=1)).sum())
            nonfinite_rows += int((~np.isfinite(block).all(axis=1)).sum())
    out = []
    if bad:
        out.append(Finding(path, f"{len(bad)} chunk(s) fail to decode: {', '.join(bad[:3])}"))
    if zero_rows:
        out.append(Finding(path, f"{zero_rows} spectra are all zeros (lost or blanked chunks)"))
    if nonfinite_rows:
        out.append(Finding(path, f"{nonfinite_rows} spectra hold NaN or inf"))
    return out, count


def _row_pointer_findings(root: zarr.Group, arrays: dict[str, ArrayMeta]) -> list[Finding]:
    """Spectra rows point at existing sites; sites point at existing materials."""

    def length(path: str) -> int | None:
        return arrays[path].shape[0] if path in arrays else None

    checks = [("sites/material", length("materials/id"))] + [
        (f"{group}/rows", length("sites/material")) for group in _spectra_groups(arrays)
    ]
    out = []
    for path, limit in checks:
        if limit is None or path not in arrays or arrays[path].shape[0] == 0:
            continue
        try:
            values = root[path][:]
        except Exception:  # a damaged chunk: reported by decode_findings
            continue
        if values.min() < 0 or values.max() >= limit:
            out.append(Finding(path, f"points outside rows 0..{limit - 1} (max {values.max()})"))
    return out


def verify_store(path: str | Path) -> VerifyReport:
    """Check everything: the quick checks, then every chunk of every array decoded."""
    from xas_data.store import XASDataset

    dataset = XASDataset.open(path, check=False)
    report = quick_check(dataset)
    for array_path, array in iter_arrays(dataset.root):
        findings, n = decode_findings(array_path, array)
        report.findings += findings
        report.n_chunks_read += n
    arrays, _ = scan_store(Path(dataset.path))
    report.findings += _row_pointer_findings(dataset.root, arrays)
    report.findings.sort(key=lambda f: not f.error)
    return report


# ----------------------------------------------------------------------------- rewrite
def _copy_array(src: zarr.Array, dst_group: zarr.Group, name: str) -> None:
    from xas_data.store import array_kwargs

    kind = src.dtype.kind
    dtype = str if kind in "TUO" else src.dtype
    extra = {} if kind in "TUO" else {"fill_value": src.fill_value}
    out = dst_group.create_array(
        name, shape=src.shape, chunks=src.chunks, dtype=dtype, **extra, **array_kwargs()
    )
    out.attrs.update(dict(src.attrs))
    step = src.chunks[0] if src.ndim else 1
    if src.ndim == 0 or src.shape[0] == 0:
        return
    for start in range(0, src.shape[0], step):
        out[start : start + step] = src[start : start + step]


def _copy_group(src: zarr.Group, dst: zarr.Group) -> None:
    dst.attrs.update(dict(src.attrs))
    for name, array in src.arrays():
        _copy_array(array, dst, name)
    for name, sub in src.groups():
        _copy_group(sub, dst.require_group(name))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind == "f":
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))
    return a.shape == b.shape and bool(np.all(np.asarray(a) == np.asarray(b)))


def rewrite_store(src: str | Path, dst: str | Path) -> VerifyReport:
    """Copy store ``src`` to the new path ``dst`` with chunk checksums and every chunk written,
    then check that every array holds identical values and ``verify_store(dst)`` passes."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise StoreError(f"{dst} exists; choose a new path for the rewritten store")
    before = verify_store(src)
    if before.errors:
        raise StoreError(f"{src} is damaged ({before.errors[0]}); restore it before rewriting")
    source = zarr.open_group(str(src), mode="r", zarr_format=3)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _copy_group(source, zarr.open_group(str(tmp), mode="w", zarr_format=3))
    copy = zarr.open_group(str(tmp), mode="r", zarr_format=3)
    for path, array in iter_arrays(source):
        if not _same(array[:], copy[path][:]):
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"{path}: the copy differs from the source; nothing was written")
    tmp.rename(dst)
    return verify_store(dst)
