"""The Zarr v3 dataset store: materials, spectra groups, selections, batches, features."""

from __future__ import annotations

import functools
import json
import shutil
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr
from pymatgen.core import Lattice, Structure
from xas_testkit import Background, wait_all, wait_for

import xas_data.store as store_module
from xas_data.errors import SpectrumError, StoreError
from xas_data.schema import SCHEMA_VERSION, default_grid
from xas_data.store import XASDataset

CHUNK = 4


# ----------------------------------------------------------------------------- test data


def _structures() -> dict[str, Structure]:
    return dict(_make_structures())


@functools.cache
def _make_structures() -> dict[str, Structure]:
    # cached: Structure.from_spacegroup takes ~0.7 s
    return {
        "mp-19009": Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(4.2), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        "mp-30": Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]),
        "mp-CuNi": Structure(Lattice.cubic(3.0), ["Cu", "Ni"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "mp-NiCu3": Structure(
            Lattice.cubic(3.55),
            ["Ni", "Cu", "Cu", "Cu"],
            [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]],
        ),
        "mp-Cu2O": Structure(
            Lattice.cubic(4.27), ["Cu", "Cu", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.25] * 3]
        ),
    }


MATERIAL_SPLIT = {
    "mp-19009": "train",
    "mp-30": "train",
    "mp-CuNi": "val",
    "mp-NiCu3": "test",
    "mp-Cu2O": "",
}

GRIDS = {
    ("Ni", "FEFF"): default_grid("Ni", n_points=12).energies,
    ("Cu", "FEFF"): default_grid("Cu", n_points=12).energies,
    ("Ni", "FEFF-fast"): default_grid("Ni", n_points=9, step=0.5).energies,
    ("Cu", "FEFF-fast"): default_grid("Cu", n_points=9, step=0.5).energies,
}

# appends in this order, so that the site rows of each group are interleaved with others
APPENDS = [
    ("Ni", "FEFF", [("mp-19009", 0), ("mp-19009", 1), ("mp-19009", 2)]),
    (
        "Cu",
        "FEFF",
        [("mp-30", i) for i in range(4)]
        + [("mp-CuNi", 0), ("mp-NiCu3", 1), ("mp-NiCu3", 2), ("mp-NiCu3", 3)]
        + [("mp-Cu2O", 0), ("mp-Cu2O", 1)],
    ),
    ("Ni", "FEFF", [("mp-CuNi", 1), ("mp-19009", 3), ("mp-NiCu3", 0)]),
    ("Ni", "FEFF-fast", [("mp-19009", 0), ("mp-NiCu3", 0), ("mp-CuNi", 1), ("mp-19009", 1)]),
    ("Cu", "FEFF-fast", [("mp-30", 0), ("mp-Cu2O", 0)]),
]


@dataclass
class Row:
    element: str
    fidelity: str
    material: str
    index: int
    split: str
    intensity: np.ndarray
    xsedge: float


def _append_all(ds: XASDataset, seed: int = 0) -> list[Row]:
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for element, fidelity, sites in APPENDS:
        energy = GRIDS[(element, fidelity)]
        ids = [m for m, _ in sites]
        intensity = rng.uniform(0.0, 2.0, (len(sites), energy.size)).astype(np.float32)
        xsedge = rng.uniform(1e-4, 1e-3, len(sites))
        splits = [MATERIAL_SPLIT[m] for m in ids]
        extras = {"xsedge_norm": xsedge} if (element, fidelity) == ("Ni", "FEFF") else None
        new = ds.append_spectra(
            element,
            fidelity,
            energy,
            ids,
            [s for _, s in sites],
            intensity,
            splits=splits,
            multiplicities=[2] * len(sites),
            extras=extras,
        )
        assert new.size == len(sites)
        for k, (material, index) in enumerate(sites):
            rows.append(Row(element, fidelity, material, index, splits[k], intensity[k], xsedge[k]))
    return rows


def _build(path: Path) -> tuple[XASDataset, list[Row]]:
    ds = XASDataset.create(path, "tiny", license="CC-BY-4.0", chunk_rows=CHUNK)
    structures = _structures()
    ds.add_materials(list(structures), list(structures.values()), ["test"] * len(structures))
    return ds, _append_all(ds)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[Row]]:
    """A store of 5 materials, 22 sites, groups Ni/Cu x FEFF/FEFF-fast, 4-row chunks."""
    path = tmp_path_factory.mktemp("store") / "tiny.zarr"
    _, rows = _build(path)
    return path, rows


@pytest.fixture
def store_copy(built, tmp_path) -> tuple[Path, list[Row]]:
    """A private copy of the built store, for tests that modify it."""
    path, rows = built
    copy = tmp_path / "copy.zarr"
    shutil.copytree(path, copy)
    return copy, rows


def _expected(rows: list[Row], element: str, fidelity: str, split: str | None = None):
    """(site rows, rows) of a group, in site-row order."""
    picked = [
        (i, r)
        for i, r in enumerate(rows)
        if (r.element, r.fidelity) == (element, fidelity) and (split is None or r.split == split)
    ]
    return np.array([i for i, _ in picked], dtype=np.int64), [r for _, r in picked]


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- materials


def test_create_writes_attributes(built):
    path, rows = built
    ds = XASDataset.open(path)
    attrs = ds.attrs
    assert attrs["schema_version"] == SCHEMA_VERSION
    assert attrs["name"] == ds.name == "tiny"
    assert attrs["license"] == "CC-BY-4.0"
    assert attrs["edge"] == "K"
    assert ds.chunk_rows == CHUNK
    assert ds.n_sites == len(rows) == 22
    assert ds.n_materials == 5
    assert ds.root["sites/material"].chunks == (CHUNK,)
    assert ds.groups() == [("Cu", "FEFF"), ("Cu", "FEFF-fast"), ("Ni", "FEFF"), ("Ni", "FEFF-fast")]


def test_materials_are_stored_once(tmp_path):
    ds = XASDataset.create(tmp_path / "m.zarr", "m", chunk_rows=CHUNK)
    structures = _structures()
    ids = list(structures)
    first = ds.add_materials(ids[:3], [structures[m] for m in ids[:3]], ["a"] * 3)
    np.testing.assert_array_equal(first, [0, 1, 2])
    # again, with duplicates inside one call and two new ones
    again = ds.add_materials(
        [ids[1], ids[3], ids[0], ids[3], ids[4]],
        [structures[m] for m in (ids[1], ids[3], ids[0], ids[3], ids[4])],
        ["b"] * 5,
    )
    np.testing.assert_array_equal(again, [1, 3, 0, 3, 4])
    assert ds.n_materials == 5
    assert ds.material_ids.tolist() == ids
    # the first source wins; nothing is rewritten
    assert ds.root["materials/source"][:].tolist() == ["a", "a", "a", "b", "b"]
    # persisted
    reopened = XASDataset.open(tmp_path / "m.zarr")
    assert reopened.material_ids.tolist() == ids
    assert reopened.material_row(ids[3]) == 3
    with pytest.raises(StoreError, match="material 'mp-nope' is not in"):
        reopened.material_row("mp-nope")


def test_structure_round_trips(built):
    path, _ = built
    ds = XASDataset.open(path)
    for row, (material, original) in enumerate(_structures().items()):
        for key in (material, row, np.int64(row)):
            restored = ds.structure(key)
            assert restored == original
            assert restored.composition == original.composition
            np.testing.assert_allclose(restored.lattice.matrix, original.lattice.matrix)
            np.testing.assert_allclose(restored.frac_coords, original.frac_coords)
    assert len(ds.structure("mp-19009")) == 8


def test_structure_given_as_json_text(tmp_path):
    ds = XASDataset.create(tmp_path / "t.zarr", "t")
    original = _structures()["mp-CuNi"]
    ds.add_materials(["x"], [json.dumps(original.as_dict())], ["s"])
    assert ds.structure("x") == original


# ----------------------------------------------------------------------------- appending


def test_site_columns_as_written(built):
    path, rows = built
    ds = XASDataset.open(path)
    sites = ds.sites()
    assert ds.material_ids[sites["material"]].tolist() == [r.material for r in rows]
    assert sites["index"].tolist() == [r.index for r in rows]
    assert sites["element"].tolist() == [r.element for r in rows]
    assert sites["fidelity"].tolist() == [r.fidelity for r in rows]
    assert sites["split"].tolist() == [r.split for r in rows]
    assert sites["multiplicity"].tolist() == [2] * len(rows)
    assert ds.site_keys() == {(r.material, r.index, r.fidelity) for r in rows}
    # a subset of rows, in any order
    subset = np.array([21, 3, 7, 0])
    part = ds.sites(subset, columns=("index", "element"))
    assert set(part) == {"index", "element"}
    assert part["index"].tolist() == [rows[i].index for i in subset]
    assert part["element"].tolist() == [rows[i].element for i in subset]


def test_append_skip_existing_is_resumable(store_copy):
    path, rows = store_copy
    ds = XASDataset.open(path, mode="a")
    n_before = ds.n_sites
    # re-appending rows that are stored adds nothing (intensities are not compared)
    _, ni_rows = _expected(rows, "Ni", "FEFF")
    energy = GRIDS[("Ni", "FEFF")]
    again = ds.append_spectra(
        "Ni",
        "FEFF",
        energy,
        [r.material for r in ni_rows],
        [r.index for r in ni_rows],
        np.zeros((len(ni_rows), energy.size)),
        extras={"xsedge_norm": np.zeros(len(ni_rows))},
    )
    assert again.size == 0
    assert ds.n_sites == n_before
    # a superset: only the new sites are appended, in the given order
    ids = ["mp-19009", "mp-NiCu3", "mp-Cu2O", "mp-CuNi", "mp-19009", "mp-CuNi"]
    indices = [0, 0, 7, 1, 2, 3]  # the 3rd and the last are new
    intensity = np.arange(len(ids) * energy.size, dtype=np.float32).reshape(len(ids), -1)
    new = ds.append_spectra(
        "Ni",
        "FEFF",
        energy,
        ids,
        indices,
        intensity,
        splits=[MATERIAL_SPLIT[m] for m in ids],
        extras={"xsedge_norm": np.arange(len(ids), dtype=float)},
    )
    np.testing.assert_array_equal(new, [n_before, n_before + 1])
    assert ds.n_sites == n_before + 2
    sites = ds.sites(new)
    assert ds.material_ids[sites["material"]].tolist() == ["mp-Cu2O", "mp-CuNi"]
    assert sites["index"].tolist() == [7, 3]
    assert sites["split"].tolist() == ["", "val"]
    sel = ds.select("Ni", "FEFF")
    np.testing.assert_array_equal(sel.site_rows[-2:], new)
    np.testing.assert_array_equal(sel.intensities()[-2:], intensity[[2, 5]])
    np.testing.assert_array_equal(sel.extra("xsedge_norm")[-2:], [2.0, 5.0])
    # the old rows are untouched
    np.testing.assert_array_equal(sel.intensities()[:-2], np.stack([r.intensity for r in ni_rows]))
    # the same site at another fidelity is a different row
    other = ds.append_spectra(
        "Ni", "FEFF-fast", GRIDS[("Ni", "FEFF-fast")], ["mp-19009"], [3], np.ones((1, 9))
    )
    assert other.size == 1


def _group_lengths(ds: XASDataset) -> dict:
    out = {"n_sites": ds.n_sites}
    for element, fidelity in ds.groups():
        group = ds.root[f"spectra/{element}/{fidelity}"]
        out[(element, fidelity)] = (group["rows"].shape[0], group["intensity"].shape[0])
    return out


@pytest.mark.parametrize(
    ("change", "error", "fragments"),
    [
        (
            {"energy": GRIDS[("Ni", "FEFF")] + 0.1},
            StoreError,
            ["Ni FEFF: grid differs from the stored one", "12 points", "interpolate"],
        ),
        (
            {"energy": default_grid("Ni", n_points=13).energies, "intensity": np.ones((2, 13))},
            StoreError,
            ["grid differs from the stored one", "12 points"],
        ),
        ({"splits": ["train", "bogus"]}, StoreError, ["unknown split names ['bogus']"]),
        ({"splits": ["Train", "test"]}, StoreError, ["unknown split names ['Train']"]),
        (
            {"intensity": np.array([[np.nan] + [1.0] * 11, [1.0] * 12])},
            StoreError,
            ["Ni FEFF: NaN/inf intensities", "curate them first"],
        ),
        ({"intensity": np.full((2, 12), np.inf)}, StoreError, ["NaN/inf intensities"]),
        ({"intensity": np.ones((2, 11))}, StoreError, ["intensities shape (2, 11) != (2, 12)"]),
        ({"intensity": np.ones((3, 12))}, StoreError, ["intensities shape (3, 12) != (2, 12)"]),
        ({"ids": ["mp-19009", "mp-404"]}, StoreError, ["mp-404", "is not in"]),
        ({"fidelity": "feff"}, SpectrumError, ["fidelity 'feff' is not valid"]),
        ({"element": "Nx"}, SpectrumError, ["'Nx' is not a chemical element"]),
        (
            {"energy": GRIDS[("Ni", "FEFF")][::-1].copy()},
            SpectrumError,
            ["Ni FEFF grid: energies not strictly increasing at index 1"],
        ),
    ],
)
def test_append_errors_write_nothing(store_copy, change, error, fragments):
    path, _ = store_copy
    ds = XASDataset.open(path, mode="a")
    before = _group_lengths(ds)
    args = {
        "element": "Ni",
        "fidelity": "FEFF",
        "energy": GRIDS[("Ni", "FEFF")],
        "ids": ["mp-19009", "mp-30"],
        "intensity": np.ones((2, 12)),
        "splits": ["train", "train"],
    } | change
    with pytest.raises(error) as info:
        ds.append_spectra(
            args["element"],
            args["fidelity"],
            args["energy"],
            args["ids"],
            [6, 5],  # new sites
            args["intensity"],
            splits=args["splits"],
            extras={"xsedge_norm": np.ones(2)},
        )
    for fragment in fragments:
        assert fragment in str(info.value)
    assert _group_lengths(XASDataset.open(path)) == before


def test_set_splits(store_copy):
    path, rows = store_copy
    ds = XASDataset.open(path, mode="a")
    with pytest.raises(StoreError, match=r"need one split per site \(22\)"):
        ds.set_splits(np.array(["train"] * 3), method="x")
    with pytest.raises(StoreError, match=r"unknown split names \['dev'\]"):
        ds.set_splits(np.array(["dev"] * 22), method="x")
    new = np.array(["test" if r.material == "mp-30" else "train" for r in rows])
    ds.set_splits(new, method="manual", seed=3)
    assert ds.sites(columns=("split",))["split"].tolist() == new.tolist()
    assert len(ds.select("Cu", "FEFF", "test")) == 4
    entry = ds.provenance[-1]
    assert entry["step"] == "split"
    assert entry["method"] == "manual"
    assert entry["seed"] == 3
    assert entry["counts"] == {"train": 17, "val": 0, "test": 5}


# ----------------------------------------------------------------------------- selections


@pytest.mark.parametrize(
    ("element", "fidelity"), [("Ni", "FEFF"), ("Cu", "FEFF"), ("Ni", "FEFF-fast")]
)
@pytest.mark.parametrize("split", [None, "train", "val", "test", ""])
def test_select_returns_exactly_the_rows(built, element, fidelity, split):
    path, rows = built
    ds = XASDataset.open(path)
    sel = ds.select(element, fidelity, split)
    site_rows, expected = _expected(rows, element, fidelity, split)
    assert len(sel) == len(expected)
    np.testing.assert_array_equal(sel.site_rows, site_rows)
    np.testing.assert_array_equal(sel.energy, GRIDS[(element, fidelity)])
    assert sel.material_ids().tolist() == [r.material for r in expected]
    sites = sel.sites()
    assert sites["index"].tolist() == [r.index for r in expected]
    assert set(sites["element"].tolist()) <= {element}
    assert set(sites["fidelity"].tolist()) <= {fidelity}
    if split is not None:
        assert set(sites["split"].tolist()) <= {split}
    intensities = sel.intensities()
    assert intensities.dtype == np.float32
    assert intensities.shape == (len(expected), GRIDS[(element, fidelity)].size)
    if expected:
        np.testing.assert_array_equal(intensities, np.stack([r.intensity for r in expected]))
    if (element, fidelity) == ("Ni", "FEFF"):
        np.testing.assert_array_equal(sel.extra("xsedge_norm"), [r.xsedge for r in expected])


def test_select_splits_partition_the_group(built):
    path, rows = built
    ds = XASDataset.open(path)
    for element, fidelity in ds.groups():
        parts = [ds.select(element, fidelity, s).site_rows for s in ("train", "val", "test", "")]
        merged = np.sort(np.concatenate(parts))
        np.testing.assert_array_equal(merged, ds.select(element, fidelity).site_rows)
    assert sum(len(s) for s in ds.iter_selections()) == len(rows)
    assert sum(len(s) for s in ds.iter_selections("train")) == sum(r.split == "train" for r in rows)


def test_intensities_of_unsorted_subsets(built):
    path, rows = built
    ds = XASDataset.open(path)
    sel = ds.select("Cu", "FEFF")
    _, expected = _expected(rows, "Cu", "FEFF")
    full = np.stack([r.intensity for r in expected])
    rng = np.random.default_rng(1)
    subsets = [
        rng.permutation(len(sel)),
        np.array([9, 0, 5]),
        np.array([3, 2, 1]),
        np.array([4, 5, 6, 7]),  # contiguous
        np.array([8]),
        np.array([], dtype=np.int64),
    ]
    for subset in subsets:
        np.testing.assert_array_equal(sel.intensities(subset), full[subset])
    # a split selection indexes into its own rows
    test_sel = ds.select("Cu", "FEFF", "test")
    _, test_rows = _expected(rows, "Cu", "FEFF", "test")
    np.testing.assert_array_equal(
        test_sel.intensities(np.array([2, 0])),
        np.stack([test_rows[2].intensity, test_rows[0].intensity]),
    )


def test_select_errors(built):
    path, _ = built
    ds = XASDataset.open(path)
    with pytest.raises(StoreError) as info:
        ds.select("Ni")
    assert "Ni has fidelities ['FEFF', 'FEFF-fast']; pass fidelity=" in str(info.value)
    with pytest.raises(StoreError) as info:
        ds.select("Fe", "FEFF")
    assert "no Fe spectra" in str(info.value)
    assert "['Cu', 'Ni']" in str(info.value)
    with pytest.raises(StoreError, match=r"no Ni VASP spectra; Ni has \['FEFF', 'FEFF-fast'\]"):
        ds.select("Ni", "VASP")
    with pytest.raises(StoreError, match="unknown split 'training'"):
        ds.select("Ni", "FEFF", "training")


def test_select_single_fidelity_needs_no_fidelity(tmp_path):
    ds = XASDataset.create(tmp_path / "z.zarr", "z", chunk_rows=CHUNK)
    ds.add_materials(["m"], ["{}"], ["s"])
    ds.append_spectra("Zn", "EXP", [1.0, 2.0, 3.0], ["m", "m"], [0, 1], np.ones((2, 3)))
    sel = ds.select("Zn")
    assert (sel.element, sel.fidelity, len(sel)) == ("Zn", "EXP", 2)
    assert repr(sel) == "Selection(Zn, EXP, n=2)"


def _corrupt_chunks(array_dir: Path) -> int:
    chunks = [p for p in (array_dir / "c").rglob("*") if p.is_file()]
    for chunk in chunks:
        chunk.write_bytes(b"\x00not a chunk\xff" * 7)
    return len(chunks)


def test_reading_a_group_touches_no_other_group(store_copy):
    path, rows = store_copy
    spectra = path / "spectra"
    # Cu/FEFF: every chunk of its intensities and row pointers is garbage
    assert _corrupt_chunks(spectra / "Cu" / "FEFF" / "intensity") == 3
    assert _corrupt_chunks(spectra / "Cu" / "FEFF" / "rows") == 3
    # the FEFF-fast groups have no chunk files at all
    for element in ("Cu", "Ni"):
        shutil.rmtree(spectra / element / "FEFF-fast" / "intensity" / "c")
        shutil.rmtree(spectra / element / "FEFF-fast" / "rows" / "c")
    with pytest.raises(StoreError, match="chunks missing"):
        XASDataset.open(path)  # the open-time check sees the missing chunks...
    ds = XASDataset.open(path, check=False)  # ...skipped here to test lazy reads
    # the damage is real
    with pytest.raises(Exception):  # noqa: B017 - any decoding error will do
        ds.select("Cu", "FEFF").intensities()
    with pytest.raises(Exception):  # noqa: B017
        ds.select("Cu", "FEFF", "train")
    # Ni FEFF (all of it, and each split) is read intact
    for split in (None, "train", "val", "test"):
        sel = ds.select("Ni", "FEFF", split)
        site_rows, expected = _expected(rows, "Ni", "FEFF", split)
        np.testing.assert_array_equal(sel.site_rows, site_rows)
        np.testing.assert_array_equal(sel.intensities(), np.stack([r.intensity for r in expected]))
        batches = list(sel.iter_batches(batch_size=2, shuffle=True, seed=4))
        assert sum(len(b.site_rows) for b in batches) == len(expected)


def test_intensities_read_only_the_chunks_of_the_rows(store_copy):
    path, rows = store_copy
    # Cu FEFF spectrum rows 0-3 (chunk 0) are mp-30 = train; damage chunks 1 and 2
    intensity = path / "spectra" / "Cu" / "FEFF" / "intensity" / "c"
    for chunk in ("1", "2"):
        (intensity / chunk / "0").write_bytes(b"garbage")
    ds = XASDataset.open(path)
    train = ds.select("Cu", "FEFF", "train")
    _, expected = _expected(rows, "Cu", "FEFF", "train")
    np.testing.assert_array_equal(train.intensities(), np.stack([r.intensity for r in expected]))
    with pytest.raises(Exception):  # noqa: B017 - the test rows live in the damaged chunks
        ds.select("Cu", "FEFF", "test").intensities()


# ----------------------------------------------------------------------------- batches


def _batches(sel, **kwargs):
    return list(sel.iter_batches(**kwargs))


@pytest.mark.parametrize("split", [None, "test"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_iter_batches_covers_every_row_once(built, split, shuffle):
    path, rows = built
    ds = XASDataset.open(path)
    ds_sel = ds.select("Cu", "FEFF", split)
    site_rows, expected = _expected(rows, "Cu", "FEFF", split)
    by_site = {int(s): r for s, r in zip(site_rows, expected, strict=True)}
    batches = _batches(ds_sel, batch_size=3, shuffle=shuffle, seed=11)
    sizes = [len(b.site_rows) for b in batches]
    assert sizes == [3] * (len(expected) // 3) + ([len(expected) % 3] if len(expected) % 3 else [])
    seen = np.concatenate([b.site_rows for b in batches])
    assert sorted(seen.tolist()) == sorted(site_rows.tolist())  # each exactly once
    if not shuffle:
        np.testing.assert_array_equal(seen, site_rows)
    for batch in batches:
        assert batch.features is None
        assert batch.intensity.shape == (len(batch.site_rows), 12)
        np.testing.assert_array_equal(
            batch.intensity, np.stack([by_site[int(s)].intensity for s in batch.site_rows])
        )


def test_iter_batches_shuffle_is_seeded(built):
    path, _ = built
    sel = XASDataset.open(path).select("Cu", "FEFF")

    def order(seed):
        return np.concatenate([b.site_rows for b in sel.iter_batches(4, shuffle=True, seed=seed)])

    first = order(3)
    np.testing.assert_array_equal(order(3), first)
    assert not np.array_equal(first, sel.site_rows)  # 10! orders: seed 3 is not the identity
    assert any(not np.array_equal(order(s), first) for s in range(4, 10))


@pytest.mark.parametrize("shuffle", [False, True])
def test_iter_batches_drop_last(built, shuffle):
    path, _ = built
    sel = XASDataset.open(path).select("Cu", "FEFF")  # 10 rows
    batches = _batches(sel, batch_size=3, shuffle=shuffle, seed=2, drop_last=True)
    assert [len(b.site_rows) for b in batches] == [3, 3, 3]
    seen = np.concatenate([b.site_rows for b in batches])
    assert len(set(seen.tolist())) == 9
    assert set(seen.tolist()) < set(sel.site_rows.tolist())
    # an exact multiple drops nothing
    assert sum(len(b.site_rows) for b in _batches(sel, batch_size=5, drop_last=True)) == 10
    assert _batches(sel, batch_size=11, drop_last=True) == []


def test_iter_batches_with_features(store_copy):
    path, _ = store_copy
    ds = XASDataset.open(path, mode="a")
    ds.create_features("f", 2)
    values = np.stack([np.arange(ds.n_sites), -np.arange(ds.n_sites)], axis=1).astype(np.float32)
    ds.write_rows("features/f/values", 0, values)
    sel = ds.select("Cu", "FEFF", "test")
    for batch in sel.iter_batches(2, shuffle=True, seed=0, features="f"):
        np.testing.assert_array_equal(batch.features, values[batch.site_rows])
    np.testing.assert_array_equal(sel.features("f"), values[sel.site_rows])


# ----------------------------------------------------------------------------- summary, provenance


def test_summary(built):
    path, rows = built
    summary = XASDataset.open(path).summary()
    assert summary["name"] == "tiny"
    assert summary["path"] == str(path)
    assert summary["schema_version"] == SCHEMA_VERSION
    assert summary["n_materials"] == 5
    assert summary["n_sites"] == 22
    assert summary["counts"] == {
        "Ni": {
            "FEFF": {"train": 4, "val": 1, "test": 1},
            "FEFF-fast": {"train": 2, "val": 1, "test": 1},
        },
        "Cu": {
            "FEFF": {"train": 4, "val": 1, "test": 3, "unassigned": 2},
            "FEFF-fast": {"train": 1, "unassigned": 1},
        },
    }
    assert summary["grids"]["Cu/FEFF"] == {
        "start": 8983.173,
        "stop": pytest.approx(8983.173 + 11 * 0.25),
        "n_points": 12,
    }
    assert summary["grids"]["Ni/FEFF-fast"]["n_points"] == 9
    assert summary["features"] == []
    assert summary["provenance"] == []


def test_provenance_entries_are_appended(store_copy):
    path, _ = store_copy
    ds = XASDataset.open(path, mode="a")
    assert ds.provenance == []
    ds.add_provenance("ingest", n=np.int64(3), values=np.arange(2), source=Path("/data/x"))
    ds.add_provenance("curate", method="omnixas")
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        ds.add_provenance("bad", thing=object())
    reopened = XASDataset.open(path)
    entries = reopened.provenance
    assert [e["step"] for e in entries] == ["ingest", "curate"]
    assert entries[0]["n"] == 3
    assert entries[0]["values"] == [0, 1]
    assert entries[0]["source"] == "/data/x"
    assert entries[1]["method"] == "omnixas"
    assert time.strptime(entries[0]["time"], "%Y-%m-%dT%H:%M:%SZ")
    assert reopened.summary()["provenance"] == ["ingest", "curate"]


# ----------------------------------------------------------------------------- open / create


def test_read_only_refuses_writes(store_copy):
    path, _ = store_copy
    before = _snapshot(path)
    ds = XASDataset.open(path)  # mode "r"
    energy = GRIDS[("Ni", "FEFF")]
    writes = [
        lambda: ds.add_materials(["new"], ["{}"], ["s"]),
        lambda: ds.append_spectra("Ni", "FEFF", energy, ["mp-30"], [9], np.ones((1, 12))),
        lambda: ds.create_features("f", 3),
        lambda: ds.write_rows("sites/multiplicity", 0, np.ones(4, np.int32)),
        lambda: ds.add_provenance("x"),
        lambda: ds.set_splits(np.array([""] * 22), method="x"),
    ]
    for write in writes:
        with pytest.raises(StoreError) as info:
            write()
        assert "open read-only" in str(info.value)
        assert "mode='a'" in str(info.value)
    assert _snapshot(path) == before


def test_open_missing_path(tmp_path):
    with pytest.raises(StoreError) as info:
        XASDataset.open(tmp_path / "nowhere.zarr")
    assert str(tmp_path / "nowhere.zarr") in str(info.value)
    assert "no dataset store here" in str(info.value)
    assert not (tmp_path / "nowhere.zarr").exists()


@pytest.mark.parametrize("mode", ["r", "a"])
def test_open_a_directory_that_is_no_store(tmp_path, mode):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hi")
    with pytest.raises(StoreError, match="not a Zarr v3 dataset store"):
        XASDataset.open(tmp_path / "plain", mode=mode)
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["notes.txt"]


def _edit_zarr_json(path: Path, value):
    meta = json.loads((path / "zarr.json").read_text())
    if value is None:
        del meta["attributes"]["schema_version"]
    else:
        meta["attributes"]["schema_version"] = value
    (path / "zarr.json").write_text(json.dumps(meta))


def _set_with_zarr(path: Path, value):
    zarr.open_group(str(path), mode="r+").attrs["schema_version"] = value


@pytest.mark.parametrize(
    ("edit", "value"),
    [(_edit_zarr_json, 2), (_edit_zarr_json, None), (_set_with_zarr, 99), (_set_with_zarr, "1")],
)
@pytest.mark.parametrize("mode", ["r", "a"])
def test_open_other_schema_version(store_copy, edit, value, mode):
    path, _ = store_copy
    edit(path, value)
    before = _snapshot(path)
    with pytest.raises(StoreError) as info:
        XASDataset.open(path, mode=mode)
    message = str(info.value)
    assert f"store schema version {value!r}" in message
    assert f"reads version {SCHEMA_VERSION}" in message
    assert "rebuild the store" in message
    assert "(0.1.0)" in message or "(unknown)" in message  # the version that wrote it
    assert _snapshot(path) == before


def test_create_on_existing_path_keeps_it(store_copy):
    path, _ = store_copy
    before = _snapshot(path)
    with pytest.raises(StoreError) as info:
        XASDataset.create(path, "other")
    assert "already exists" in str(info.value)
    assert "overwrite=True" in str(info.value)
    assert _snapshot(path) == before
    assert XASDataset.open(path).n_sites == 22
    # overwrite replaces it
    fresh = XASDataset.create(path, "fresh", overwrite=True, chunk_rows=8)
    assert (fresh.n_sites, fresh.n_materials, fresh.groups()) == (0, 0, [])
    reopened = XASDataset.open(path)
    assert (reopened.name, reopened.chunk_rows, reopened.n_sites) == ("fresh", 8, 0)


# ----------------------------------------------------------------------------- features


def test_features_create_write_read(store_copy):
    path, rows = store_copy
    ds = XASDataset.open(path, mode="a")
    array = ds.create_features("soap", 3, attrs={"cutoff": np.float64(5.0), "src": Path("/a")})
    assert array.shape == (22, 3)
    assert array.chunks == (CHUNK, 3)
    assert ds.has_features("soap")
    assert not ds.has_features("acsf")
    assert ds.feature_names() == ["soap"]
    assert ds.feature_attrs("soap") == {"cutoff": 5.0, "src": "/a"}
    assert np.isnan(ds.read_features("soap")).all()
    values = np.arange(8 * 3, dtype=np.float32).reshape(8, 3) + 0.5
    ds.write_rows("features/soap/values", 4, values)
    ds.write_rows("features/soap/values", 20, np.full((2, 3), 7.0))  # the last, partial chunk
    reopened = XASDataset.open(path)
    out = reopened.read_features("soap")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[4:12], values)
    np.testing.assert_array_equal(out[20:], 7.0)
    assert np.isnan(out[:4]).all()
    assert np.isnan(out[12:20]).all()
    np.testing.assert_array_equal(
        reopened.read_features("soap", np.array([11, 4, 5])), values[[7, 0, 1]]
    )
    assert reopened.summary()["features"] == ["soap"]
    # a selection's features follow its site rows
    sel = reopened.select("Ni", "FEFF")
    np.testing.assert_array_equal(sel.features("soap"), out[sel.site_rows])
    np.testing.assert_array_equal(sel.features("soap", np.array([1])), out[sel.site_rows[[1]]])


def test_create_features_twice(store_copy):
    path, _ = store_copy
    ds = XASDataset.open(path, mode="a")
    ds.create_features("f", 2)
    ds.write_rows("features/f/values", 0, np.zeros((4, 2)))
    with pytest.raises(StoreError, match="features 'f' exist; pass overwrite=True"):
        ds.create_features("f", 2)
    assert (ds.read_features("f")[:4] == 0).all()
    ds.create_features("f", 5, overwrite=True)
    out = ds.read_features("f")
    assert out.shape == (22, 5)
    assert np.isnan(out).all()


def test_read_missing_features_names_the_fix(built):
    path, _ = built
    with pytest.raises(StoreError) as info:
        XASDataset.open(path).read_features("acsf")
    assert "has no features 'acsf'" in str(info.value)
    assert "xas-features featurize" in str(info.value)


@pytest.mark.parametrize(
    ("start", "n"),
    [(1, 3), (1, 4), (0, 3), (0, 5), (2, 2), (20, 4), (16, 8), (24, 1)],
)
def test_write_rows_refuses_unaligned_ranges(store_copy, start, n):
    path, _ = store_copy
    ds = XASDataset.open(path, mode="a")
    ds.create_features("f", 2)
    with pytest.raises(StoreError) as info:
        ds.write_rows("features/f/values", start, np.ones((n, 2)))
    message = str(info.value)
    assert f"rows {start}:{start + n} of features/f/values are not chunk-aligned" in message
    assert "chunk 4 rows, 22 rows in all" in message
    assert "shard_rows()" in message
    assert np.isnan(ds.read_features("f")).all()


def test_write_rows_refuses_a_negative_start(store_copy):
    path, _ = store_copy
    ds = XASDataset.open(path, mode="a")
    ds.create_features("f", 2)
    with pytest.raises(StoreError):
        ds.write_rows("features/f/values", -4, np.ones((4, 2)))


@pytest.mark.parametrize("n_sites", [22, 24, 3, 1])
def test_shard_rows_cover_all_rows(tmp_path, n_sites):
    ds = XASDataset.create(tmp_path / "s.zarr", "s", chunk_rows=CHUNK)
    ds.add_materials(["m"], ["{}"], ["s"])
    ds.append_spectra(
        "Cu", "FEFF", [1.0, 2.0], ["m"] * n_sites, list(range(n_sites)), np.ones((n_sites, 2))
    )
    for n_shards in (1, 2, 3, 8):
        ranges = [ds.shard_rows(n_shards, k) for k in range(n_shards)]
        covered = np.concatenate([np.arange(a, b) for a, b in ranges])
        np.testing.assert_array_equal(covered, np.arange(n_sites))  # disjoint, in order, complete
        for start, stop in ranges:
            assert start <= stop
            assert start % CHUNK == 0 or start == n_sites
            assert stop % CHUNK == 0 or stop == n_sites
        if n_shards <= -(-n_sites // CHUNK):
            assert all(stop > start for start, stop in ranges)  # no idle shard when avoidable
        # every shard is writable as one range
        ds.create_features("f", 1, overwrite=True)
        for k, (start, stop) in enumerate(ranges):
            ds.write_rows("features/f/values", start, np.full((stop - start, 1), k))
        expected = np.concatenate([np.full(b - a, k) for k, (a, b) in enumerate(ranges)])
        np.testing.assert_array_equal(ds.read_features("f")[:, 0], expected)


def test_append_after_features_grows_them(store_copy):
    path, _ = store_copy
    ds = XASDataset.open(path, mode="a")
    ds.create_features("f", 3)
    old = np.arange(22 * 3, dtype=np.float32).reshape(22, 3)
    ds.write_rows("features/f/values", 0, old)
    energy = GRIDS[("Cu", "FEFF")]
    new = ds.append_spectra(
        "Cu", "FEFF", energy, ["mp-Cu2O"] * 3, [5, 6, 7], np.ones((3, 12)), splits=[""] * 3
    )
    np.testing.assert_array_equal(new, [22, 23, 24])
    reopened = XASDataset.open(path)
    out = reopened.read_features("f")
    assert out.shape == (25, 3)
    np.testing.assert_array_equal(out[:22], old)
    assert np.isnan(out[22:]).all()
    # the new rows can be filled (the old end was not chunk-aligned: 20:25 is one writer's range)
    ds.write_rows("features/f/values", 20, np.zeros((5, 3)))
    assert not np.isnan(ds.read_features("f")).any()


# ----------------------------------------------------------------------------- concurrency

_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import numpy as np

    from xas_data.store import XASDataset

    path, shard, n_shards, sync = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    DEADLINE_S = 600  # generous: a loaded machine is slow, not wrong


    def await_file(name):
        deadline = time.monotonic() + DEADLINE_S
        while not (sync / name).exists():
            if time.monotonic() > deadline:
                sys.exit(f"writer {shard}: gave up after {DEADLINE_S} s waiting for {sync / name}")
            time.sleep(0.001)


    ds = XASDataset.open(path, mode="a")
    start, stop = ds.shard_rows(n_shards, shard)
    chunk = ds.chunk_rows
    dim = ds.root["features/conc/values"].shape[1]
    (sync / f"ready{shard}").touch()
    await_file("go")
    began = time.time()
    n_writes = 0
    for step in range(3):  # placeholders twice, then the final values
        if step:  # all writers are in the same pass: the writes overlap however slow the machine
            (sync / f"pass{step}-shard{shard}").touch()
            for other in range(n_shards):
                await_file(f"pass{step}-shard{other}")
        for lo in range(start, stop, chunk):
            hi = min(lo + chunk, stop)
            rows = np.arange(lo, hi)
            if step < 2:
                values = np.full((hi - lo, dim), -1.0 - step - shard)
            else:
                values = 1000.0 * (shard + 1) + rows[:, None] + np.arange(dim) / 8
            ds.write_rows("features/conc/values", lo, values)
            n_writes += 1
            time.sleep(0.004)  # leave the other writer room to interleave within the pass
    (sync / f"result{shard}").write_text(f"{began} {time.time()} {n_writes}")
    """
)


def test_concurrent_writers_on_disjoint_shards(tmp_path):
    path = tmp_path / "conc.zarr"
    n_sites, dim = 62, 5  # 16 chunks of 4, the last one partial
    ds = XASDataset.create(path, "conc", chunk_rows=CHUNK)
    ds.add_materials(["m"], ["{}"], ["s"])
    ds.append_spectra(
        "Cu", "FEFF", [1.0, 2.0, 3.0], ["m"] * n_sites, list(range(n_sites)), np.ones((n_sites, 3))
    )
    ds.create_features("conc", dim)
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [
        Background(
            [sys.executable, "-c", _WRITER, path, str(k), "2", sync], tmp_path / f"writer{k}.log"
        )
        for k in range(2)
    ]
    try:  # events, not the clock: each writer says it is ready, then both get "go"
        for k, p in enumerate(procs):
            wait_for(
                lambda k=k: (sync / f"ready{k}").exists(), f"writer {k} to be ready", process=p
            )
        (sync / "go").touch()
        codes = wait_all(procs, "both writers to finish")
    finally:
        for p in procs:
            p.stop(grace_s=5)
    assert codes == [0, 0], "\n".join(p.tail() for p in procs)
    windows = [tuple(float(x) for x in (sync / f"result{k}").read_text().split()) for k in range(2)]
    assert [int(w[2]) for w in windows] == [24, 24]  # 8 chunks x 3 passes each
    assert max(w[0] for w in windows) < min(w[1] for w in windows), "writes did not overlap"

    reopened = XASDataset.open(path)
    values = reopened.read_features("conc")
    assert values.shape == (n_sites, dim)
    assert not np.isnan(values).any()
    for shard in range(2):
        start, stop = reopened.shard_rows(2, shard)
        rows = np.arange(start, stop)
        expected = 1000.0 * (shard + 1) + rows[:, None] + np.arange(dim) / 8
        np.testing.assert_array_equal(values[start:stop], expected.astype(np.float32))
    # the store is intact
    assert reopened.n_sites == n_sites
    assert reopened.feature_names() == ["conc"]
    assert reopened.summary()["counts"] == {"Cu": {"FEFF": {"unassigned": n_sites}}}
    np.testing.assert_array_equal(reopened.select("Cu").intensities(), np.ones((n_sites, 3)))


# ----------------------------------------------------------------------------- known bugs


def test_append_resumes_after_a_crash_without_duplicates(store_copy, monkeypatch):
    path, _ = store_copy
    ds = XASDataset.open(path, mode="a")
    n_before = ds.n_sites
    real_append = store_module._append

    def crash_on_sites(array, values, start):
        if array.path.startswith("sites/"):
            raise RuntimeError("killed")
        real_append(array, values, start)

    energy = GRIDS[("Cu", "FEFF-fast")]
    args = ("Cu", "FEFF-fast", energy, ["mp-CuNi"], [0], np.full((1, 9), 3.0))
    monkeypatch.setattr(store_module, "_append", crash_on_sites)
    with pytest.raises(RuntimeError, match="killed"):
        ds.append_spectra(*args)
    monkeypatch.setattr(store_module, "_append", real_append)
    assert ds.n_sites == n_before  # no site was written
    new = ds.append_spectra(*args)  # the resumed run
    np.testing.assert_array_equal(new, [n_before])
    sel = ds.select("Cu", "FEFF-fast")
    assert sel.site_rows.tolist() == sorted(set(sel.site_rows.tolist()))
    assert len(sel) == 3


def test_append_without_the_groups_extras_stays_consistent(store_copy):
    path, _ = store_copy
    ds = XASDataset.open(path, mode="a")
    n_before = ds.n_sites
    try:
        ds.append_spectra("Ni", "FEFF", GRIDS[("Ni", "FEFF")], ["mp-Cu2O"], [9], np.ones((1, 12)))
    except StoreError:
        assert XASDataset.open(path).n_sites == n_before
        return
    sel = ds.select("Ni", "FEFF")
    assert sel.extra("xsedge_norm").shape == (len(sel),)


def test_unknown_material_message_is_plain(store_copy):
    path, _ = store_copy
    ds = XASDataset.open(path, mode="a")
    with pytest.raises(StoreError) as info:
        ds.append_spectra("Cu", "FEFF", GRIDS[("Cu", "FEFF")], ["mp-404"], [0], np.ones((1, 12)))
    assert "material 'mp-404' is not in" in str(info.value)


def test_in_memory_batches_equal_lazy_batches(tmp_path):
    from pymatgen.core import Lattice, Structure

    ds = XASDataset.create(tmp_path / "m.zarr", "m", chunk_rows=4)
    ids = [f"m{i}" for i in range(11)]
    s = Structure(Lattice.cubic(4), ["Cu"], [[0, 0, 0]])
    ds.add_materials(ids, [s] * 11, ["t"] * 11)
    y = np.random.default_rng(0).random((11, 5)).astype(np.float32)
    ds.append_spectra("Cu", "FEFF", np.arange(5.0), ids, [0] * 11, y)
    feats = ds.create_features("f", 2)
    feats[:] = np.arange(22, dtype=np.float32).reshape(11, 2)
    sel = ds.select("Cu")
    lazy = list(sel.iter_batches(3, shuffle=True, seed=5, features="f"))
    eager = list(sel.iter_batches(3, shuffle=True, seed=5, features="f", in_memory=True))
    assert len(lazy) == len(eager) == 4
    for a, b in zip(lazy, eager, strict=True):
        np.testing.assert_array_equal(a.site_rows, b.site_rows)
        np.testing.assert_array_equal(a.intensity, b.intensity)
        np.testing.assert_array_equal(a.features, b.features)
