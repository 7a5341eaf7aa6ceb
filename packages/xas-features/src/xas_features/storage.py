"""Compute features for every site of a dataset and store them in site row order.

Features go to ``features/<name>-v<version>-<config hash>/values`` (float32 [n_sites, D]);
attributes record the featurizer name, version, config, hash, fitted state (e.g. PCA) and
whether the array is complete. An existing complete array is reused unless ``force``.
Under torchrun/srun each rank fills a disjoint chunk-aligned range of rows.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from xas_data.store import XASDataset, array_kwargs
from xas_features.distributed import barrier, init_distributed, rank_info
from xas_features.errors import FeaturizerError
from xas_features.featurizers.base import SiteFeaturizer, config_hash, feature_key


def find_features(ds: XASDataset, name: str) -> str:
    """Key of the complete features of featurizer ``name`` (or a full key) in ``ds``.

    With several versions/configs present, the most recently written one is returned.
    """
    if ds.has_features(name):
        return name
    candidates = []
    for key in ds.feature_names():
        attrs = ds.feature_attrs(key)
        if attrs.get("featurizer") == name and attrs.get("complete"):
            candidates.append((attrs.get("written", ""), key))
    if not candidates:
        raise FeaturizerError(
            f"{ds.path} has no complete {name!r} features (present: {ds.feature_names()}); "
            f"compute them with: xas-features featurize --dataset {ds.path} --featurizer {name}"
        )
    return max(candidates)[1]


def _site_table(ds: XASDataset, start: int, stop: int):
    cols = ds.sites(np.arange(start, stop), ("material", "index"))
    return cols["material"], cols["index"]


def _structures_for(ds: XASDataset, material_rows: np.ndarray, cache: dict):
    out = []
    for row in material_rows:
        row = int(row)
        if row not in cache:
            text = str(ds.root["materials/structure"][row])
            if not text:
                raise FeaturizerError(
                    f"material {ds.material_ids[row]} in {ds.path} has no structure; "
                    "structure-based features need stores made with structures"
                )
            cache[row] = ds.structure(row)
        out.append(cache[row])
    return out


def dataset_species(ds: XASDataset) -> list[str]:
    """Sorted element symbols of every material that has a structure."""
    import json

    symbols: set[str] = set()
    for text in ds.root["materials/structure"][:]:
        if str(text):
            for site in json.loads(str(text))["sites"]:
                symbols.update(sp["element"] for sp in site["species"])
    return sorted(symbols)


STATE_ARRAY_MIN = 64


def save_state(group, state: dict) -> None:
    """Fitted state: big numeric lists become Zarr arrays ``state/<name>``, the rest attrs."""
    small = {}
    for name, value in state.items():
        array = np.asarray(value) if isinstance(value, list) else None
        if array is not None and array.dtype.kind in "fi" and array.size >= STATE_ARRAY_MIN:
            group.create_array(
                f"state/{name}", data=array.astype(np.float32), overwrite=True, **array_kwargs()
            )
            small[name] = {"array": f"state/{name}"}
        else:
            small[name] = value
    group.attrs["state"] = small


def load_state(ds: XASDataset, key: str) -> dict:
    """Inverse of ``save_state``: the fitted state of stored features ``key``."""
    group = ds.root[f"features/{key}"]
    state = {}
    for name, value in dict(group.attrs.get("state", {})).items():
        if isinstance(value, dict) and set(value) == {"array"}:
            state[name] = group[value["array"]][:].astype(np.float64).tolist()
        else:
            state[name] = value
    return state


def fit_featurizer(ds: XASDataset, featurizer, split: str = "train", max_sites: int = 5000):
    """Fit a featurizer that needs it (``fit`` method) on at most ``max_sites`` rows of
    ``split`` (all rows if no split is assigned), deterministically."""
    if not hasattr(featurizer, "fit"):
        return
    if getattr(featurizer, "species", "") is None:
        # the chemical species of the descriptor come from every structure (no labels are
        # used, so nothing leaks); the PCA below is fitted on the training rows only
        featurizer.species = dataset_species(ds)
    splits = ds.sites(columns=("split",))["split"]
    rows = np.flatnonzero(splits == split)
    if rows.size == 0:
        rows = np.arange(ds.n_sites)
    if rows.size > max_sites:
        rows = np.sort(np.random.default_rng(0).choice(rows, max_sites, replace=False))
    cols = ds.sites(rows, ("material", "index"))
    cache: dict = {}
    featurizer.fit(_structures_for(ds, cols["material"], cache), cols["index"].tolist())


def featurize_dataset(
    path: str | Path,
    featurizer: SiteFeaturizer,
    force: bool = False,
    fit_split: str = "train",
    block_rows: int | None = None,
    progress: bool = True,
) -> str:
    """Featurize every site of the store at ``path``; returns the storage key.

    Safe to run as several ranks (torchrun/srun): rank 0 creates the array and records
    completion, every rank writes its own chunk-aligned rows.
    """
    info = rank_info()
    distributed = init_distributed(info)
    ds = XASDataset.open(path, mode="a")
    fit_featurizer(ds, featurizer, fit_split)
    key = feature_key(featurizer)
    if ds.has_features(key) and ds.feature_attrs(key).get("complete") and not force:
        if info.is_main and progress:
            print(f"{key}: already computed, skipping (use --force to recompute)")
        return key
    if info.is_main:
        attrs = {
            "featurizer": featurizer.name,
            "version": featurizer.version,
            "config": featurizer.config(),
            "config_hash": config_hash(featurizer.config()),
            "complete": False,
        }
        ds.create_features(key, featurizer.dim, attrs, overwrite=True)
        if hasattr(featurizer, "state"):
            save_state(ds.root[f"features/{key}"], featurizer.state())
    barrier(distributed)
    ds = XASDataset.open(path, mode="a")
    start, stop = ds.shard_rows(info.world_size, info.rank)
    block = block_rows or ds.chunk_rows
    block = max(ds.chunk_rows, block // ds.chunk_rows * ds.chunk_rows)
    from tqdm import tqdm

    bar = tqdm(
        total=stop - start,
        desc=f"{featurizer.name} rank {info.rank}",
        unit="site",
        disable=not progress,
    )
    cache: dict = {}
    t0 = time.perf_counter()
    for lo in range(start, stop, block):
        hi = min(lo + block, stop)
        materials, sites = _site_table(ds, lo, hi)
        structures = _structures_for(ds, materials, cache)
        values = np.asarray(featurizer.featurize(structures, sites.tolist()), dtype=np.float32)
        if values.shape != (hi - lo, featurizer.dim):
            raise FeaturizerError(
                f"{featurizer.name} returned {values.shape}, expected {(hi - lo, featurizer.dim)}"
            )
        ds.write_rows(f"features/{key}/values", lo, values)
        bar.update(hi - lo)
    bar.close()
    seconds = time.perf_counter() - t0
    barrier(distributed)
    if info.is_main:
        group = ds.root[f"features/{key}"]
        group.attrs.update(
            {
                "complete": True,
                "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "world_size": info.world_size,
            }
        )
        ds.add_provenance(
            "featurize",
            key=key,
            featurizer=featurizer.name,
            version=featurizer.version,
            world_size=info.world_size,
            seconds_rank0=seconds,
        )
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return key
