"""``XASDataset``: a Zarr v3 store of site spectra with structures (layout in SCHEMA.md).

One row order for all per-site arrays (``sites/*``, ``features/*``, ``descriptors/*``);
spectra live per (element, fidelity) group on that group's energy grid and point back to
their site rows. Readers open lazily and read only the rows they select.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import zarr

from xas_data.errors import StoreError
from xas_data.schema import SCHEMA_VERSION, check_element, check_energy, parse_fidelity

DEFAULT_CHUNK_ROWS = 1024

# Every chunk is written, even one that equals the fill value, so that in a store written by
# this xas-data a missing chunk file is damage (``xas_data.verify``), never silently zeros.
zarr.config.set({"array.write_empty_chunks": True})


def array_kwargs() -> dict:
    """Codec settings of every ``create_array`` of a store: zstd, then a CRC-32C checksum of
    the compressed chunk (Zarr v3 ``crc32c`` codec), so a flipped byte fails the read."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return {"compressors": (ZstdCodec(level=0), Crc32cCodec())}


SPLITS = ("train", "val", "test", "")
SITE_COLUMNS = {
    "material": "int32",
    "index": "int32",
    "element": str,
    "fidelity": str,
    "split": str,
    "multiplicity": "int32",
}


def lock_path(path: str | Path) -> Path:
    """The writer-lock file of the store ``path``: ``.<name>.lock`` beside it (the store
    folder itself is replaced by whole-store writers, so the lock cannot live inside it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextmanager
def store_writer(path: str | Path, timeout_s: float = 0.0) -> Iterator[None]:
    """One writer at a time for the store ``path``.

    Commands that rewrite a store (copy, write, rename: ``ingest-measured``) hold this lock
    from their first read of the store to the final rename, so two of them never lose each
    other's data. On entry it also cleans up after killed writers
    (:func:`xas_data.io_utils.recover_directory`): a store moved aside by a writer killed
    between its two renames is put back, half-written copies are removed.

    Raises:
        BusyError: ``store X is busy (another writer, pid N?) — retry when it finishes``.
    """
    from xas_data.io_utils import exclusive_lock, recover_directory

    path = Path(path)
    with exclusive_lock(lock_path(path), f"store {path}", timeout_s):
        recover_directory(path)
        yield


def _package_version() -> str:
    try:
        return version("xas-data")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _as_str(values) -> np.ndarray:
    """Fixed-width unicode array from zarr's variable-length strings (numpy StringDType)."""
    array = np.asarray(values)
    if array.dtype.kind == "U":
        return array
    if array.size == 0:
        return np.zeros(array.shape, dtype="<U1")
    width = max(1, max(len(str(v)) for v in array.ravel()))
    return array.astype(f"<U{width}")


@dataclass
class Batch:
    """A mini-batch of one (element, fidelity) group.

    Attributes:
        site_rows: rows in ``sites/`` (int64 [B]).
        intensity: spectra on the group's grid (float32 [B, K]).
        features: feature matrix (float32 [B, D]) or ``None``.
    """

    site_rows: np.ndarray
    intensity: np.ndarray
    features: np.ndarray | None = None


class Selection:
    """Rows of one (element, fidelity) spectra group, optionally restricted to one split."""

    def __init__(
        self,
        dataset: XASDataset,
        element: str,
        fidelity: str,
        spectrum_rows: np.ndarray,
        site_rows: np.ndarray,
    ) -> None:
        self.dataset = dataset
        self.element = element
        self.fidelity = fidelity
        self.spectrum_rows = spectrum_rows
        self.site_rows = site_rows

    def __len__(self) -> int:
        return int(self.site_rows.size)

    def __repr__(self) -> str:
        return f"Selection({self.element}, {self.fidelity}, n={len(self)})"

    @property
    def _group(self) -> zarr.Group:
        return self.dataset.root[f"spectra/{self.element}/{self.fidelity}"]

    @property
    def energy(self) -> np.ndarray:
        """The group's energy grid (eV), float64 [K]."""
        return _read_rows(self._group["energy"])

    def intensities(self, subset: np.ndarray | None = None) -> np.ndarray:
        """Spectra of the selected rows (float32 [n, K]); ``subset`` indexes into the selection."""
        rows = self.spectrum_rows if subset is None else self.spectrum_rows[subset]
        values = _read_rows(self._group["intensity"], rows)
        zero = ~values.any(axis=1) if values.ndim == 2 and values.shape[1] else None
        if zero is not None and zero.any():
            raise StoreError(
                f"{self._group['intensity'].path}: {int(zero.sum())} spectra read as all zeros "
                f"(spectrum row {int(rows[np.argmax(zero)])}...), a missing or damaged chunk; "
                "run 'xas-data verify' on the store and rebuild or restore it"
            )
        return values

    def extra(self, name: str) -> np.ndarray:
        """A per-spectrum extra array of the group: [n] (e.g. ``xsedge_norm``, ``e0``) or
        [n, R] (``raw_energy``/``raw_mu``: the simulation's own points, NaN-padded)."""
        return _read_rows(self._group[name], self.spectrum_rows)

    def extra_names(self) -> set[str]:
        """Names of the group's per-spectrum extras (e.g. ``xsedge_norm``, ``e0``, ``raw_mu``)."""
        return set(self._group.array_keys()) - {"energy", "rows", "intensity"}

    def features(self, name: str, subset: np.ndarray | None = None) -> np.ndarray:
        """Feature rows of the selection (float32 [n, D])."""
        rows = self.site_rows if subset is None else self.site_rows[subset]
        return self.dataset.read_features(name, rows)

    def sites(self) -> dict[str, np.ndarray]:
        """Site columns (material, index, element, fidelity, split, multiplicity) of the rows."""
        return self.dataset.sites(self.site_rows)

    def material_ids(self) -> np.ndarray:
        material_rows = self.dataset.sites(self.site_rows, ("material",))["material"]
        return self.dataset.material_ids[material_rows]

    def iter_batches(
        self,
        batch_size: int = 256,
        shuffle: bool = False,
        seed: int = 0,
        features: str | None = None,
        drop_last: bool = False,
        in_memory: bool = False,
    ) -> Iterator[Batch]:
        """Yield mini-batches; with ``shuffle`` the order is a seeded permutation.

        ``in_memory`` reads the whole selection once (chunk by chunk) and serves the batches
        from RAM: random batches then cost what a numpy fancy index costs, instead of
        decompressing every touched chunk again (see the benchmark in the README).
        """
        order = np.arange(len(self))
        if shuffle:
            order = np.random.default_rng(seed).permutation(len(self))
        if in_memory:
            all_y = self.intensities()
            all_x = None if features is None else self.features(features)
        for start in range(0, len(self), batch_size):
            idx = order[start : start + batch_size]
            if drop_last and idx.size < batch_size:
                break
            if in_memory:
                y, x = all_y[idx], None if all_x is None else all_x[idx]
            else:
                y = self.intensities(idx)
                x = None if features is None else self.features(features, idx)
            yield Batch(site_rows=self.site_rows[idx], intensity=y, features=x)


def _read_rows(array: zarr.Array, rows: np.ndarray | None = None) -> np.ndarray:
    """Read ``array[rows]`` (all rows for ``None``) touching only the chunks that hold them
    (rows in any order). A chunk failing its checksum raises ``StoreError`` naming the array."""
    try:
        return array[:] if rows is None else _read_selected(array, rows)
    except (ValueError, RuntimeError) as exc:
        raise StoreError(
            f"{array.path}: a chunk fails its checksum or does not decode "
            f"({type(exc).__name__}); run 'xas-data verify' on the store and restore it from a "
            "backup or rebuild it"
        ) from None


def _read_selected(array: zarr.Array, rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return np.empty((0, *array.shape[1:]), dtype=array.dtype)
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    if sorted_rows[-1] - sorted_rows[0] + 1 == sorted_rows.size and np.all(
        np.diff(sorted_rows) == 1
    ):
        block = array[int(sorted_rows[0]) : int(sorted_rows[-1]) + 1]
    else:
        selector = (sorted_rows,) + (slice(None),) * (array.ndim - 1)
        block = array.oindex[selector]
    out = np.empty_like(block)
    out[order] = block
    return out


class XASDataset:
    """A dataset store. Create with ``XASDataset.create``, open with ``XASDataset.open``."""

    def __init__(self, root: zarr.Group, path: Path, mode: str) -> None:
        self.root = root
        self.path = path
        self.mode = mode
        self._material_ids: np.ndarray | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(
        cls,
        path: str | Path,
        name: str,
        edge: str = "K",
        license: str = "",
        description: str = "",
        overwrite: bool = False,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> XASDataset:
        """Create an empty store at ``path``; an existing path is an error unless ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise StoreError(
                f"{path} already exists; open it with XASDataset.open(path, mode='a') to append, "
                "or pass overwrite=True to replace it"
            )
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.attrs.update(
            {
                "schema_version": SCHEMA_VERSION,
                "name": name,
                "edge": edge,
                "license": license,
                "description": description,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "xas_data_version": _package_version(),
                "chunk_rows": chunk_rows,
                "provenance": [],
            }
        )
        codecs = array_kwargs()
        root.create_array("materials/id", shape=(0,), chunks=(chunk_rows,), dtype=str, **codecs)
        root.create_array("materials/structure", shape=(0,), chunks=(256,), dtype=str, **codecs)
        root.create_array("materials/source", shape=(0,), chunks=(chunk_rows,), dtype=str, **codecs)
        for column, dtype in SITE_COLUMNS.items():
            root.create_array(
                f"sites/{column}", shape=(0,), chunks=(chunk_rows,), dtype=dtype, **codecs
            )
        root.require_group("spectra")
        root.require_group("features")
        root.require_group("descriptors")
        return cls(root, path, "a")

    @classmethod
    def open(cls, path: str | Path, mode: str = "r", check: bool = True) -> XASDataset:
        """Open an existing store lazily (``mode`` 'r' or 'a'); checks the schema version.

        Read-only opens (with ``check``) also run ``xas_data.verify.quick_check``: chunk files
        are listed (no data is read) and a missing chunk or per-site arrays of unequal length
        raise ``StoreError`` naming the array. ``xas-data verify`` checks every byte.
        """
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no dataset store here; create one or check the path")
        try:
            root = zarr.open_group(str(path), mode="r" if mode == "r" else "r+", zarr_format=3)
        except Exception as exc:
            raise StoreError(f"{path}: not a Zarr v3 dataset store ({exc})") from exc
        found = root.attrs.get("schema_version")
        if found != SCHEMA_VERSION:
            raise StoreError(
                f"{path}: store schema version {found!r}, but xas-data "
                f"{_package_version()} reads version {SCHEMA_VERSION}; rebuild the store with "
                "this version (xas-data ingest/curate) or install the xas-data that wrote it "
                f"({root.attrs.get('xas_data_version', 'unknown')})"
            )
        dataset = cls(root, path, mode)
        if check and mode == "r":
            from xas_data.verify import require_intact

            require_intact(dataset)
        return dataset

    def _require_writable(self) -> None:
        if self.mode == "r":
            raise StoreError(f"{self.path} is open read-only; open it with mode='a' to write")

    # ------------------------------------------------------------------ attributes
    @property
    def attrs(self) -> dict:
        return dict(self.root.attrs)

    @property
    def name(self) -> str:
        return str(self.root.attrs["name"])

    @property
    def chunk_rows(self) -> int:
        return int(self.root.attrs.get("chunk_rows", DEFAULT_CHUNK_ROWS))

    @property
    def provenance(self) -> list[dict]:
        return list(self.root.attrs.get("provenance", []))

    def add_provenance(self, step: str, **details) -> None:
        """Append a provenance entry (step name, UTC time, details) to the store attributes."""
        self._require_writable()
        entry = {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        entry |= json.loads(json.dumps(details, default=_json_default))
        self.root.attrs["provenance"] = [*self.provenance, entry]

    @property
    def n_materials(self) -> int:
        return int(self.root["materials/id"].shape[0])

    @property
    def n_sites(self) -> int:
        return int(self.root["sites/material"].shape[0])

    # ------------------------------------------------------------------ materials
    @property
    def material_ids(self) -> np.ndarray:
        if self._material_ids is None or self._material_ids.size != self.n_materials:
            self._material_ids = _as_str(_read_rows(self.root["materials/id"]))
        return self._material_ids

    def material_row(self, material_id: str) -> int:
        material_id = str(material_id)
        rows = np.flatnonzero(self.material_ids == material_id)
        if rows.size == 0:
            raise StoreError(f"material {material_id!r} is not in {self.path}")
        return int(rows[0])

    def add_materials(self, ids: Sequence[str], structures: Sequence, sources: Sequence[str]):
        """Add materials whose id is not yet present; return the row of every given id.

        ``Structure`` objects are validated first (``check_structure``): a NaN coordinate or a
        singular lattice is refused here rather than crashing a later featurizer or spglib.
        """
        from xas_data.structures import check_structure

        self._require_writable()
        known = {mid: i for i, mid in enumerate(self.material_ids)}
        new_ids, new_structs, new_sources = [], [], []
        for mid, structure, source in zip(ids, structures, sources, strict=True):
            if mid in known or mid in new_ids:
                continue
            if not isinstance(structure, str):
                check_structure(structure, f"material {mid}")
            text = structure if isinstance(structure, str) else json.dumps(structure.as_dict())
            new_ids.append(mid)
            new_structs.append(text)
            new_sources.append(source)
        if new_ids:
            start = self.n_materials
            for key, values in (
                ("id", new_ids),
                ("structure", new_structs),
                ("source", new_sources),
            ):
                _append(self.root[f"materials/{key}"], np.array(values, dtype=str), start)
            self._material_ids = None
        known = {mid: i for i, mid in enumerate(self.material_ids)}
        return np.array([known[mid] for mid in ids], dtype=np.int64)

    def structure(self, material: int | str):
        """pymatgen ``Structure`` of a material (row or id), or ``Molecule`` for a
        non-periodic one (``is_molecule``), validated (``check_structure``)."""
        from xas_data.molecules import structure_from_json
        from xas_data.structures import check_structure

        row = self.material_row(material) if isinstance(material, str) else int(material)
        structure = structure_from_json(str(self.root["materials/structure"][row]))
        return check_structure(structure, f"material {self.material_ids[row]} in {self.path}")

    def is_molecule(self, material: int | str) -> bool:
        """Whether a material (row or id) is stored as a non-periodic ``Molecule``."""
        from xas_data.molecules import structure_kind

        row = self.material_row(material) if isinstance(material, str) else int(material)
        return structure_kind(str(self.root["materials/structure"][row])) == "molecule"

    # ------------------------------------------------------------------ sites and spectra
    def sites(self, rows: np.ndarray | None = None, columns: Sequence[str] | None = None):
        """Site columns as a dict of arrays (all rows, or ``rows``)."""
        out = {}
        for column in columns or SITE_COLUMNS:
            array = self.root[f"sites/{column}"]
            values = _read_rows(array, None if rows is None else np.asarray(rows))
            out[column] = _as_str(values) if SITE_COLUMNS[column] is str else values
        return out

    def site_keys(self) -> set[tuple[str, int, str]]:
        """(material id, site index, fidelity) of every stored site."""
        cols = self.sites(columns=("material", "index", "fidelity"))
        ids = self.material_ids[cols["material"]] if self.n_sites else np.array([], dtype=str)
        return set(
            zip(ids.tolist(), cols["index"].tolist(), cols["fidelity"].tolist(), strict=True)
        )

    def groups(self) -> list[tuple[str, str]]:
        """(element, fidelity) pairs that hold spectra."""
        pairs = []
        spectra = self.root["spectra"]
        for element in sorted(spectra.group_keys()):
            for fidelity in sorted(spectra[element].group_keys()):
                pairs.append((element, fidelity))
        return pairs

    def append_spectra(
        self,
        element: str,
        fidelity: str,
        energy: np.ndarray,
        material_ids: Sequence[str],
        site_indices: Sequence[int],
        intensities: np.ndarray,
        splits: Sequence[str] | None = None,
        multiplicities: Sequence[int] | None = None,
        extras: dict[str, np.ndarray] | None = None,
        skip_existing: bool = True,
    ) -> np.ndarray:
        """Append spectra of one (element, fidelity) group on grid ``energy`` (eV, [K]).

        ``intensities`` is [n, K]. Materials must have been added first. With
        ``skip_existing`` rows whose (material, site, fidelity) is already stored are skipped
        (resumable appends). Returns the new site rows.
        """
        self._require_writable()
        element = check_element(element)
        parse_fidelity(fidelity)
        energy = check_energy(energy, f"{element} {fidelity} grid")
        intensities = np.asarray(intensities, dtype=np.float32)
        n = len(material_ids)
        if intensities.shape != (n, energy.size):
            raise StoreError(
                f"intensities shape {intensities.shape} != ({n}, {energy.size}) "
                "(n material ids, n grid points)"
            )
        if not np.all(np.isfinite(intensities)):
            raise StoreError(f"{element} {fidelity}: NaN/inf intensities; curate them first")
        splits = [""] * n if splits is None else list(splits)
        bad = sorted(set(splits) - set(SPLITS))
        if bad:
            raise StoreError(f"unknown split names {bad}; use train, val, test or ''")
        multiplicities = np.ones(n, np.int32) if multiplicities is None else multiplicities
        keep = np.ones(n, dtype=bool)
        if skip_existing and self.n_sites:
            keys = self.site_keys()
            keep = np.array(
                [
                    (m, int(s), fidelity) not in keys
                    for m, s in zip(material_ids, site_indices, strict=True)
                ],
                dtype=bool,
            )
        if not keep.any():
            return np.empty(0, dtype=np.int64)
        mat_rows = np.array([self.material_row(str(m)) for m in np.asarray(material_ids)[keep]])
        group = self._spectra_group(element, fidelity, energy, extras)
        self._check_extras(group, extras)
        self._drop_orphans(group)
        start_site = self.n_sites
        n_new = int(keep.sum())
        columns = {
            "material": mat_rows.astype(np.int32),
            "index": np.asarray(site_indices, dtype=np.int32)[keep],
            "element": np.array([element] * n_new, dtype=str),
            "fidelity": np.array([fidelity] * n_new, dtype=str),
            "split": np.asarray(splits, dtype=str)[keep],
            "multiplicity": np.asarray(multiplicities, dtype=np.int32)[keep],
        }
        new_site_rows = np.arange(start_site, start_site + n_new, dtype=np.int64)
        start_spec = int(group["rows"].shape[0])
        _append(group["intensity"], intensities[keep], start_spec)
        for key, values in (extras or {}).items():
            _append(group[key], np.asarray(values)[keep], start_spec)
        _append(group["rows"], new_site_rows, start_spec)
        # site columns last: a crash before here leaves no site pointing at missing spectra
        for column, values in columns.items():
            _append(self.root[f"sites/{column}"], values, start_site)
        self._grow_per_site_arrays()
        return new_site_rows

    @staticmethod
    def _check_extras(group: zarr.Group, extras: dict | None) -> None:
        """The extras given must be exactly the group's extra arrays (checked before writing)."""
        have = set(group.array_keys()) - {"energy", "rows", "intensity"}
        given = set(extras or {})
        if have != given:
            raise StoreError(
                f"{group.path}: extras {sorted(given)} given, but the group stores "
                f"{sorted(have)}; pass exactly those per-spectrum arrays"
            )
        for key, values in (extras or {}).items():
            tail = np.shape(values)[1:]
            if tail != group[key].shape[1:]:
                raise StoreError(
                    f"{group.path}/{key}: rows of shape {tail} given, the group stores "
                    f"{group[key].shape[1:]}; pad or crop them to the stored width"
                )

    def _drop_orphans(self, group: zarr.Group) -> None:
        """Truncate spectra written by an append that died before its site rows were written.

        Spectra are written before site columns, so orphans are always at the group's end and
        point at site rows >= n_sites; removing them makes a re-run append them cleanly.
        """
        orphan = group["rows"][:] >= self.n_sites
        n_valid = int(np.argmax(orphan)) if orphan.any() else orphan.size
        if n_valid < orphan.size:
            for key in group.array_keys():
                if key != "energy":
                    array = group[key]
                    array.resize((n_valid, *array.shape[1:]))

    def _spectra_group(self, element, fidelity, energy, extras) -> zarr.Group:
        path = f"spectra/{element}/{fidelity}"
        if path in self.root:
            group = self.root[path]
            stored = group["energy"][:]
            if stored.shape != energy.shape or not np.allclose(stored, energy, atol=1e-9):
                raise StoreError(
                    f"{element} {fidelity}: grid differs from the stored one "
                    f"({stored[0]:.3f}..{stored[-1]:.3f} eV, {stored.size} points); "
                    "interpolate onto the stored grid first"
                )
            return group
        group = self.root.require_group(path)
        group.create_array("energy", data=energy, **array_kwargs())
        rows = self.chunk_rows
        group.create_array("rows", shape=(0,), chunks=(rows,), dtype="int64", **array_kwargs())
        group.create_array(
            "intensity",
            shape=(0, energy.size),
            chunks=(rows, energy.size),
            dtype="float32",
            **array_kwargs(),
        )
        for key, values in (extras or {}).items():
            values = np.asarray(values)
            dtype = values.dtype if values.dtype.kind != "U" else str
            tail = values.shape[1:]  # e.g. raw spectra: [n, R] with NaN padding
            group.create_array(
                key, shape=(0, *tail), chunks=(rows, *tail), dtype=dtype, **array_kwargs()
            )
        return group

    def set_splits(self, splits: np.ndarray, method: str, **details) -> None:
        """Write the split name of every site row ([n_sites] str) and record it in provenance."""
        self._require_writable()
        splits = np.asarray(splits, dtype=str)
        if splits.shape != (self.n_sites,):
            raise StoreError(f"need one split per site ({self.n_sites}), got {splits.shape}")
        bad = sorted(set(splits.tolist()) - set(SPLITS))
        if bad:
            raise StoreError(f"unknown split names {bad}; use train, val, test or ''")
        self.root["sites/split"][:] = splits
        counts = {s: int((splits == s).sum()) for s in ("train", "val", "test")}
        self.add_provenance("split", method=method, counts=counts, **details)

    def select(
        self, element: str, fidelity: str | None = None, split: str | None = None
    ) -> Selection:
        """Rows of one (element, fidelity) group, optionally one split; reads no spectra.

        ``fidelity`` may be omitted when the element has exactly one fidelity.
        """
        element = check_element(element)
        available = self.groups()
        fidelities = [f for e, f in available if e == element]
        if not fidelities:
            raise StoreError(
                f"no {element} spectra in {self.path}; elements present: "
                f"{sorted({e for e, _ in available})}"
            )
        if fidelity is None:
            if len(fidelities) > 1:
                raise StoreError(f"{element} has fidelities {fidelities}; pass fidelity=...")
            fidelity = fidelities[0]
        if fidelity not in fidelities:
            raise StoreError(f"no {element} {fidelity} spectra; {element} has {fidelities}")
        group = self.root[f"spectra/{element}/{fidelity}"]
        site_rows = _read_rows(group["rows"])
        spectrum_rows = np.arange(site_rows.size, dtype=np.int64)
        if split is not None:
            if split not in SPLITS:
                raise StoreError(f"unknown split {split!r}; use train, val or test")
            split_of = _as_str(_read_rows(self.root["sites/split"], site_rows))
            mask = split_of == split
            site_rows, spectrum_rows = site_rows[mask], spectrum_rows[mask]
        return Selection(self, element, fidelity, spectrum_rows, site_rows)

    def iter_selections(self, split: str | None = None) -> Iterator[Selection]:
        for element, fidelity in self.groups():
            yield self.select(element, fidelity, split)

    # ------------------------------------------------------------------ per-site arrays
    def _grow_per_site_arrays(self) -> None:
        n = self.n_sites
        for kind in ("features", "descriptors"):
            for name in self.root[kind].array_keys():
                _grow_with_fill(self.root[f"{kind}/{name}"], n)
            for name in self.root[kind].group_keys():
                _grow_with_fill(self.root[f"{kind}/{name}/values"], n)

    def create_features(
        self, name: str, dim: int, attrs: dict | None = None, overwrite: bool = False
    ) -> zarr.Array:
        """Pre-allocate ``features/<name>/values`` (float32 [n_sites, dim], NaN = not computed).

        Writers may then fill disjoint chunk-aligned row ranges concurrently (``write_rows``).
        """
        self._require_writable()
        path = f"features/{name}"
        if path in self.root:
            if not overwrite:
                raise StoreError(f"features {name!r} exist; pass overwrite=True to recompute")
            del self.root[path]
        group = self.root.require_group(path)
        group.attrs.update(json.loads(json.dumps(attrs or {}, default=_json_default)))
        values = group.create_array(
            "values",
            shape=(self.n_sites, dim),
            chunks=(self.chunk_rows, dim),
            dtype="float32",
            fill_value=np.nan,
            **array_kwargs(),
        )
        values[:] = np.nan  # write every chunk: a missing one is then damage, not "not computed"
        return values

    def has_features(self, name: str) -> bool:
        return f"features/{name}/values" in self.root

    def feature_names(self) -> list[str]:
        return sorted(self.root["features"].group_keys())

    def feature_attrs(self, name: str) -> dict:
        return dict(self.root[f"features/{name}"].attrs)

    def write_rows(self, array_path: str, start: int, values: np.ndarray) -> None:
        """Write ``values`` into rows ``start:start+len(values)`` of a per-site array.

        Safe for concurrent writers on disjoint ranges because every range must begin and end
        on a chunk boundary (or at the array's end): no two writers touch one chunk.
        """
        self._require_writable()
        array = self.root[array_path]
        stop = start + len(values)
        chunk = array.chunks[0]
        bad_end = stop % chunk and stop != array.shape[0]
        if start < 0 or start % chunk or bad_end or stop > array.shape[0]:
            raise StoreError(
                f"rows {start}:{stop} of {array_path} are not chunk-aligned (chunk {chunk} "
                f"rows, {array.shape[0]} rows in all); use shard_rows() to split the work"
            )
        array[start:stop] = values

    def shard_rows(self, n_shards: int, shard: int, array_path: str = "sites/material"):
        """Chunk-aligned ``(start, stop)`` of shard ``shard`` of ``n_shards`` over all sites."""
        chunk = self.chunk_rows
        n_chunks = -(-self.n_sites // chunk)
        first = shard * n_chunks // n_shards
        last = (shard + 1) * n_chunks // n_shards
        return min(first * chunk, self.n_sites), min(last * chunk, self.n_sites)

    def read_features(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Feature rows (float32 [n, D]); a clear error if the features were never computed."""
        path = f"features/{name}/values"
        if path not in self.root:
            raise StoreError(
                f"{self.path} has no features {name!r} (present: {self.feature_names()}); "
                f"compute them with: xas-features featurize --dataset {self.path} ..."
            )
        array = self.root[path]
        return _read_rows(array, None if rows is None else np.asarray(rows))

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict:
        """Counts per element, fidelity and split, grids and the provenance steps."""
        cols = self.sites(columns=("element", "fidelity", "split"))
        counts: dict[str, dict[str, dict[str, int]]] = {}
        for el, fid, sp in zip(cols["element"], cols["fidelity"], cols["split"], strict=True):
            bucket = counts.setdefault(str(el), {}).setdefault(str(fid), {})
            bucket[sp or "unassigned"] = bucket.get(sp or "unassigned", 0) + 1
        grids = {}
        for element, fidelity in self.groups():
            energy = self.root[f"spectra/{element}/{fidelity}/energy"][:]
            grids[f"{element}/{fidelity}"] = {
                "start": float(energy[0]),
                "stop": float(energy[-1]),
                "n_points": int(energy.size),
            }
        return {
            "name": self.name,
            "path": str(self.path),
            "schema_version": self.root.attrs.get("schema_version"),
            "n_materials": self.n_materials,
            "n_sites": self.n_sites,
            "counts": counts,
            "grids": grids,
            "features": self.feature_names(),
            "provenance": [p.get("step") for p in self.provenance],
        }


def _grow_with_fill(array: zarr.Array, n: int) -> None:
    """Resize ``array`` to ``n`` rows and write the fill value into the new rows, so that every
    chunk exists (a missing chunk is damage: ``xas_data.verify``)."""
    old = array.shape[0]
    if old < n:
        array.resize((n, *array.shape[1:]))
        array[old:n] = array.fill_value


def _append(array: zarr.Array, values: np.ndarray, start: int) -> None:
    stop = start + len(values)
    if array.shape[0] < stop:
        array.resize((stop, *array.shape[1:]))
    array[start:stop] = values


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
