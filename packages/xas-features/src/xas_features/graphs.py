"""Periodic crystal graphs for graph models (CGXAS, XANE(3)) as torch-geometric ``Data``.

Nodes are the sites of a structure; a directed edge ``j -> i`` (source ``j``, target ``i``)
joins every periodic image of site ``j`` within ``cutoff`` of site ``i`` (neighbour search by
pymatgen, vectorised; no pyg-lib needed). For each target only the ``max_neighbors`` nearest
sources are kept, ties broken deterministically by (distance, source index, image).

Edge geometry convention (all in Angstrom)::

    edge_shift = edge_image @ cell                       # lattice translation of the source
    edge_vec   = pos[src] + edge_shift - pos[dst]        # from the target to the source image
    edge_dist  = |edge_vec|

``Data`` fields (N nodes, E edges, F = max_z + 7 + 4 node features)::

    x             float32 [N, F]  one-hot Z (1..max_z), one-hot period (1..7), valence s,p,d,f
    z             int64   [N]     atomic numbers
    pos           float32 [N, 3]  cartesian positions
    cell          float32 [1, 3, 3] lattice vectors as rows
    edge_index    int64   [2, E]  (source, target), sorted by target then neighbour rank
    edge_image    int64   [E, 3]  integer lattice image of the source
    edge_shift    float32 [E, 3]
    edge_vec      float32 [E, 3]
    edge_dist     float32 [E]
    absorber_mask bool    [N]     sites passed as ``absorber_sites``

Valence electron counts (node features): from pymatgen's ground-state configuration written
on a noble-gas core (``Element.electronic_structure``, e.g. Fe ``[Ar].3d6.4s2``), every
subshell outside the core is valence; the s and p counts are the occupations of the s and p
subshells outside the core (i.e. of the outermost shell), the d and f counts those of the d and
f subshells outside the core (there is at most one of each: the last-filled ones). Examples:
Fe s2 p0 d6 f0; O s2 p4; Cu s1 d10; Pd s0 d10 ([Kr].4d10); Ga s2 p1 d10; Ce s2 d1 f1;
Pb s2 p2 d10 f14; H s1.

Invariance: edges depend only on interatomic distances and species, so the per-node multiset
of (neighbour species, distance) is unchanged by rotations, translations, permutations of the
sites and supercells, up to relabelling. With ``max_neighbors`` truncation, neighbours tied at
the truncation distance with different species are chosen by index, which breaks this for the
species (not for the distances); ``include_ties=True`` keeps the whole tied shell instead.

torch and torch_geometric are imported inside the functions only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xas_features.errors import FeaturizerError, missing_extra

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from torch_geometric.data import Batch, Data

N_PERIODS = 7
VALENCE_ORBITALS = ("s", "p", "d", "f")


@dataclass(frozen=True)
class CrystalGraphConfig:
    """Settings of ``build_crystal_graph``.

    Attributes:
        cutoff: neighbour cutoff radius in Angstrom (8.0).
        max_neighbors: keep at most this many nearest neighbours per target atom (12);
            None keeps every neighbour within the cutoff.
        self_loops: add an edge ``i -> i`` (zero shift, distance 0) for every atom (False).
        max_z: largest atomic number of the one-hot encoding (100, at most 104).
        include_ties: with ``max_neighbors``, also keep neighbours tied (within
            ``tie_tolerance``) with the last kept one, so the graph is exactly invariant (False).
        tie_tolerance: distances closer than this (Angstrom) count as equal for ordering (1e-4).
    """

    cutoff: float = 8.0
    max_neighbors: int | None = 12
    self_loops: bool = False
    max_z: int = 100
    include_ties: bool = False
    tie_tolerance: float = 1e-4

    def __post_init__(self) -> None:
        if not self.cutoff > 0:
            raise FeaturizerError(f"cutoff must be positive (Angstrom), got {self.cutoff}")
        if self.max_neighbors is not None and self.max_neighbors < 1:
            raise FeaturizerError(f"max_neighbors must be >= 1 or None, got {self.max_neighbors}")
        if not 1 <= self.max_z <= 104:  # pymatgen has configurations up to Rf (Z = 104)
            raise FeaturizerError(f"max_z must be in 1..104, got {self.max_z}")
        if self.tie_tolerance < 0:
            raise FeaturizerError(f"tie_tolerance must be >= 0, got {self.tie_tolerance}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings."""
        return asdict(self)

    @property
    def node_dim(self) -> int:
        """Node feature dimension F = max_z + 7 + 4."""
        return self.max_z + N_PERIODS + len(VALENCE_ORBITALS)


def valence_electrons(z: int) -> tuple[float, float, float, float]:
    """(s, p, d, f) valence electron counts of element ``z`` (rule in the module docstring)."""
    return _valence_table(int(z))


@cache
def _valence_table(z: int) -> tuple[float, float, float, float]:
    from pymatgen.core import Element

    element = Element.from_Z(z)
    try:
        text = element.electronic_structure
    except KeyError as err:
        raise FeaturizerError(
            f"pymatgen has no electronic configuration for {element.symbol} (Z={z}); "
            "lower max_z or remove that element"
        ) from err
    counts = dict.fromkeys(VALENCE_ORBITALS, 0.0)
    for term in text.split("."):
        if term.startswith("["):
            continue  # noble-gas core
        orbital, occupation = term[1], term[2:]
        counts[orbital] += float(occupation)
    return counts["s"], counts["p"], counts["d"], counts["f"]


@lru_cache(maxsize=8)
def _node_table(max_z: int) -> np.ndarray:
    from pymatgen.core import Element

    table = np.zeros((max_z + 1, max_z + N_PERIODS + 4), dtype=np.float32)
    for z in range(1, max_z + 1):
        table[z, z - 1] = 1.0
        table[z, max_z + Element.from_Z(z).row - 1] = 1.0
        table[z, max_z + N_PERIODS :] = _valence_table(z)
    return table


def node_feature_names(config: CrystalGraphConfig | None = None) -> list[str]:
    """Names of the F columns of ``x``: ``Z=1..``, ``period=1..7``, ``valence_s/p/d/f``."""
    config = config or CrystalGraphConfig()
    return (
        [f"Z={z}" for z in range(1, config.max_z + 1)]
        + [f"period={p}" for p in range(1, N_PERIODS + 1)]
        + [f"valence_{o}" for o in VALENCE_ORBITALS]
    )


def node_features(z: np.ndarray, config: CrystalGraphConfig | None = None) -> np.ndarray:
    """CGXAS node features, float32 [N, F], for atomic numbers ``z`` (int [N])."""
    config = config or CrystalGraphConfig()
    z = np.asarray(z, dtype=np.int64)
    bad = z[(z < 1) | (z > config.max_z)]
    if bad.size:
        raise FeaturizerError(
            f"atomic number(s) {sorted(set(bad.tolist()))} outside 1..{config.max_z}; "
            "raise CrystalGraphConfig.max_z"
        )
    return _node_table(config.max_z)[z]


def neighbor_edges(
    structure: Structure, config: CrystalGraphConfig | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Periodic edges of ``structure``: (src int64 [E], dst int64 [E], image int64 [E, 3],
    distance float64 [E] in Angstrom), sorted by target then (distance, source, image).

    Raises ``FeaturizerError`` naming the first atom without any neighbour within the cutoff.
    """
    config = config or CrystalGraphConfig()
    n = len(structure)
    center, neighbor, images, dist = structure.get_neighbor_list(float(config.cutoff))
    dst = np.asarray(center, dtype=np.int64)
    src = np.asarray(neighbor, dtype=np.int64)
    image = np.rint(np.asarray(images, dtype=np.float64)).astype(np.int64).reshape(-1, 3)
    dist = np.asarray(dist, dtype=np.float64)

    counts = np.bincount(dst, minlength=n)
    if (counts == 0).any():
        i = int(np.flatnonzero(counts == 0)[0])
        raise FeaturizerError(
            f"site {i} ({structure[i].species_string}) of "
            f"{structure.composition.reduced_formula} has no neighbour within the cutoff "
            f"{config.cutoff} A; raise CrystalGraphConfig.cutoff"
        )

    # 1) sort by (target, distance); 2) group distances equal within tie_tolerance;
    # 3) sort by (target, group, source, image) -> deterministic neighbour ranks.
    order = np.lexsort((dist, dst))
    src, dst, image, dist = src[order], dst[order], image[order], dist[order]
    new_group = np.ones(dst.size, dtype=bool)
    new_group[1:] = (dst[1:] != dst[:-1]) | (np.diff(dist) > config.tie_tolerance)
    group = np.cumsum(new_group)
    order = np.lexsort((image[:, 2], image[:, 1], image[:, 0], src, group))
    src, dst, image, dist, group = src[order], dst[order], image[order], dist[order], group[order]

    if config.max_neighbors is not None:
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rank = np.arange(dst.size) - starts[dst]
        keep = rank < config.max_neighbors
        if config.include_ties:
            last = np.minimum(counts, config.max_neighbors) - 1  # rank of last kept, per target
            keep = group <= group[starts + last][dst]
        src, dst, image, dist = src[keep], dst[keep], image[keep], dist[keep]

    if config.self_loops:
        loops = np.arange(n, dtype=np.int64)
        src = np.concatenate((loops, src))
        dst = np.concatenate((loops, dst))
        image = np.concatenate((np.zeros((n, 3), np.int64), image))
        dist = np.concatenate((np.zeros(n), dist))
        order = np.argsort(dst, kind="stable")
        src, dst, image, dist = src[order], dst[order], image[order], dist[order]
    return src, dst, image, dist


def build_crystal_graph(
    structure: Structure,
    absorber_sites: Sequence[int] | None = None,
    config: CrystalGraphConfig | None = None,
) -> Data:
    """The crystal graph of ``structure`` as a torch-geometric ``Data`` (fields: module doc).

    Args:
        structure: an ordered periodic pymatgen structure.
        absorber_sites: site indices flagged in ``absorber_mask`` (None: no site flagged).
        config: graph settings (default ``CrystalGraphConfig()``).
    """
    config = config or CrystalGraphConfig()
    _check_ordered(structure)
    mask = _absorber_mask(structure, [] if absorber_sites is None else absorber_sites)
    return _graph_from_edges(structure, neighbor_edges(structure, config), mask, config)


def build_site_graphs(
    structure: Structure,
    sites: Sequence[int],
    config: CrystalGraphConfig | None = None,
    edges: tuple[np.ndarray, ...] | None = None,
) -> list[Data]:
    """One graph per absorber site of ``structure``, equal to ``build_crystal_graph(structure,
    [site], config)`` each, from a single neighbour search (or the precomputed ``edges`` of
    :func:`neighbor_edges`); the graphs share every tensor but ``absorber_mask``."""
    config = config or CrystalGraphConfig()
    _check_ordered(structure)
    masks = [_absorber_mask(structure, [site]) for site in sites]
    if not masks:
        return []
    edges = neighbor_edges(structure, config) if edges is None else edges
    base = _graph_from_edges(structure, edges, masks[0], config)
    graphs = [base]
    for mask in masks[1:]:
        graphs.append(copy_with_mask(base, mask))
    return graphs


def copy_with_mask(graph: Data, mask: np.ndarray) -> Data:
    """A ``Data`` sharing ``graph``'s tensors with ``absorber_mask`` replaced (bool [N])."""
    import torch
    from torch_geometric.data import Data

    fields = {key: value for key, value in graph.items() if key != "absorber_mask"}
    return Data(**fields, absorber_mask=torch.from_numpy(mask))


def _check_ordered(structure: Structure) -> None:
    if not structure.is_ordered:
        raise FeaturizerError(
            f"{structure.composition.reduced_formula} is disordered (partial occupancies); "
            "order it before building a graph"
        )


def _absorber_mask(structure: Structure, absorber_sites: Sequence[int]) -> np.ndarray:
    n = len(structure)
    mask = np.zeros(n, dtype=bool)
    sites = np.asarray(list(absorber_sites), dtype=np.int64)
    bad = sites[(sites < 0) | (sites >= n)]
    if bad.size:
        raise FeaturizerError(
            f"absorber site(s) {bad.tolist()} out of range for "
            f"{structure.composition.reduced_formula} with {n} atoms; use 0..{n - 1}"
        )
    mask[sites] = True
    return mask


def _graph_from_edges(
    structure: Structure, edges: tuple[np.ndarray, ...], mask: np.ndarray, config
) -> Data:
    try:
        import torch
        from torch_geometric.data import Data
    except ImportError as err:
        raise missing_extra("torch_geometric", "graph") from err
    n = len(structure)
    z = np.asarray(structure.atomic_numbers, dtype=np.int64)
    x = node_features(z, config)
    pos = np.asarray(structure.cart_coords, dtype=np.float64)
    cell = np.asarray(structure.lattice.matrix, dtype=np.float64)
    src, dst, image, dist = edges
    shift = image.astype(np.float64) @ cell
    vec = pos[src] + shift - pos[dst]
    length = np.linalg.norm(vec, axis=1)
    if not np.allclose(length, dist, atol=1e-5):  # guards the convention against pymatgen
        raise FeaturizerError("internal error: edge vectors disagree with neighbour distances")

    return Data(
        x=torch.from_numpy(np.ascontiguousarray(x)),
        z=torch.from_numpy(z),
        pos=torch.from_numpy(pos.astype(np.float32)),
        cell=torch.from_numpy(cell.astype(np.float32)).reshape(1, 3, 3),
        edge_index=torch.from_numpy(np.stack((src, dst))),
        edge_image=torch.from_numpy(image),
        edge_shift=torch.from_numpy(shift.astype(np.float32)),
        edge_vec=torch.from_numpy(vec.astype(np.float32)),
        edge_dist=torch.from_numpy(length.astype(np.float32)),
        absorber_mask=torch.from_numpy(mask),
        num_nodes=n,
    )


# --------------------------------------------------------------------------- many structures
#: Environment variable naming the edge cache folder (``off`` disables the cache).
CACHE_ENV = "XAS_GRAPH_CACHE"
#: Fewer structures to search than this are searched in this process: on the default data
#: (327 materials, cutoff 8 A) a serial search takes ~1-2 s and starting a 2-process pool
#: costs more than it saves.
PARALLEL_MIN_STRUCTURES = 512


def default_cache_dir() -> Path | None:
    """``$XAS_GRAPH_CACHE`` (``off``: no cache), else ``$XDG_CACHE_HOME/xas-features/graphs``
    (``~/.cache/xas-features/graphs``)."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "off", "0", "none") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xas-features" / "graphs"


def edges_key(structure: Structure, config: CrystalGraphConfig) -> str:
    """sha256 (hex, 32 chars) of the graph settings (cutoff, max_neighbors, ...) and the
    structure (lattice, species, fractional coordinates, exact float64 bytes)."""
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    h.update(np.asarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    h.update(np.asarray(structure.atomic_numbers, dtype=np.int64).tobytes())
    h.update(np.asarray(structure.frac_coords, dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


def _read_cached(path: Path) -> tuple[np.ndarray, ...] | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            return tuple(f[k] for k in ("src", "dst", "image", "dist"))
    except (OSError, ValueError, KeyError):  # absent, or damaged: recompute
        return None


def _write_cached(path: Path, edges: tuple[np.ndarray, ...]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **dict(zip(("src", "dst", "image", "dist"), edges, strict=True)))
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache folder only costs the next run time
        pass


def _edges_task(item: tuple[Structure, CrystalGraphConfig]) -> tuple[np.ndarray, ...]:
    return neighbor_edges(*item)


def material_edges(
    structures: Sequence[Structure],
    config: CrystalGraphConfig | None = None,
    workers: int | None = None,
    cache_dir: Path | None | str = "default",
) -> list[tuple[np.ndarray, ...]]:
    """:func:`neighbor_edges` of every structure: read from the cache when there, else
    computed in a process pool and cached (``<cache_dir>/<edges_key>.npz``, numpy only).

    Args:
        workers: processes (None: the CPUs this process may use; 1: serial); the pool is
            used from :data:`PARALLEL_MIN_STRUCTURES` uncached structures on.
        cache_dir: cache folder; ``"default"``: :func:`default_cache_dir`; None: no cache.
    """
    config = config or CrystalGraphConfig()
    folder = default_cache_dir() if cache_dir == "default" else cache_dir
    folder = None if folder is None else Path(folder)
    keys = [edges_key(s, config) for s in structures]
    out: list[tuple[np.ndarray, ...] | None] = [
        None if folder is None else _read_cached(folder / f"{k}.npz") for k in keys
    ]
    todo = [i for i, edges in enumerate(out) if edges is None]
    n_workers = min(workers or len(os.sched_getaffinity(0)), len(todo))
    items = [(structures[i], config) for i in todo]
    if n_workers > 1 and len(todo) >= PARALLEL_MIN_STRUCTURES:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(n_workers) as pool:
            computed = list(
                pool.map(_edges_task, items, chunksize=max(1, len(items) // (4 * n_workers)))
            )
    else:
        computed = [_edges_task(item) for item in items]
    for i, edges in zip(todo, computed, strict=True):
        out[i] = edges
        if folder is not None:
            _write_cached(folder / f"{keys[i]}.npz", edges)
    return out  # type: ignore[return-value]


def collate_graphs(graphs: Sequence[Data]) -> Batch:
    """Batch graphs (``Batch.from_data_list``): edge indices offset, ``cell`` -> [B, 3, 3]."""
    try:
        from torch_geometric.data import Batch
    except ImportError as err:
        raise missing_extra("torch_geometric", "graph") from err
    if len(graphs) == 0:
        raise FeaturizerError("collate_graphs got no graphs; pass at least one")
    return Batch.from_data_list(list(graphs))


__all__ = [
    "CrystalGraphConfig",
    "build_crystal_graph",
    "build_site_graphs",
    "collate_graphs",
    "material_edges",
    "neighbor_edges",
    "node_feature_names",
    "node_features",
    "valence_electrons",
]
