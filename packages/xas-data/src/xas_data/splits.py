"""Material-level train/val/test splits: never one material in two splits.

``greedy_material_split`` follows OmniXAS: materials sorted by their number of sites (largest
first, ties broken by a seeded shuffle), each assigned to the split whose gap to its target
site count shrinks most. ``read_split_file`` imports given lists of ``<material>_<site>`` ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xas_data.errors import XASDataError

SPLIT_NAMES = ("train", "val", "test")


def greedy_material_split(
    material_ids: Sequence[str],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 42,
    names: Sequence[str] = SPLIT_NAMES,
) -> dict[str, str]:
    """Assign every distinct material of ``material_ids`` (one entry per site) to a split.

    Targets are ``fraction * n_sites``. Deterministic for a given ``seed``. Returns
    ``{material_id: split_name}``.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.size != len(names) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1):
        raise XASDataError(
            f"split fractions {fractions.tolist()} must be {len(names)} non-negative numbers "
            "summing to 1 (e.g. 0.8 0.1 0.1)"
        )
    unique, counts = np.unique(np.asarray(material_ids, dtype=str), return_counts=True)
    rng = np.random.default_rng(seed)
    tie_break = rng.permutation(unique.size)
    order = np.lexsort((tie_break, -counts))
    targets = fractions * counts.sum()
    filled = np.zeros(len(names))
    assignment: dict[str, str] = {}
    for idx in order:
        n = counts[idx]
        # how much each group's distance to its target would shrink if it took this material
        gain = np.abs(targets - filled) - np.abs(targets - filled - n)
        group = int(np.argmax(gain))
        filled[group] += n
        assignment[str(unique[idx])] = names[group]
    return assignment


def two_pool_split(
    material_ids: Sequence[str],
    priority_ids: set[str],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    priority_fractions: Sequence[float] = (0.6, 0.15, 0.25),
    seed: int = 42,
) -> dict[str, str]:
    """``greedy_material_split`` run separately on two pools of materials.

    Materials in ``priority_ids`` (e.g. those simulated at both fidelities, which cross-fidelity
    models need in their test split) are split with ``priority_fractions``, the others with
    ``fractions``. Still one split per material.
    """
    ids = [str(m) for m in material_ids]
    first = [m for m in ids if m in priority_ids]
    rest = [m for m in ids if m not in priority_ids]
    assignment = greedy_material_split(first, priority_fractions, seed) if first else {}
    if rest:
        assignment |= greedy_material_split(rest, fractions, seed)
    return assignment


def split_site_rows(site_material_ids: Sequence[str], assignment: dict[str, str]) -> np.ndarray:
    """Split name of each site from a material assignment ([n_sites] str); '' if unassigned."""
    return np.array([assignment.get(str(m), "") for m in site_material_ids], dtype=object).astype(
        str
    )


def parse_site_id(site_id: str) -> tuple[str, int]:
    """``"mp-1234_005"`` -> ``("mp-1234", 5)`` (the site is a 0-based index into the structure)."""
    material, sep, site = site_id.strip().rpartition("_")
    if not sep or not (site.isascii() and site.isdecimal()) or not material:
        raise XASDataError(
            f"split id {site_id!r} is not '<material>_<site index>' such as 'mp-1234_005'"
        )
    return material, int(site)


def read_split_file(path: str | Path) -> list[tuple[str, int]]:
    """Read one id per line (``<material>_<site>``, e.g. ``mp-1234_005``) into (material id, site index) pairs."""
    path = Path(path)
    if not path.is_file():
        raise XASDataError(f"{path}: split file not found")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip() and not line.startswith("#"):
            try:
                pairs.append(parse_site_id(line))
            except XASDataError as exc:
                raise XASDataError(f"{path}:{number}: {exc}") from None
    return pairs


def splits_from_lists(
    site_material_ids: Sequence[str],
    site_indices: Sequence[int],
    lists: dict[str, Sequence[tuple[str, int]]],
) -> np.ndarray:
    """Split name per site from given (material, site) lists; checks materials never straddle.

    Sites absent from every list get ''.
    """
    where: dict[tuple[str, int], str] = {}
    material_split: dict[str, str] = {}
    for name, pairs in lists.items():
        for material, site in pairs:
            previous = material_split.setdefault(material, name)
            if previous != name:
                raise XASDataError(
                    f"material {material} is listed in both {previous} and {name}; "
                    "a material must belong to exactly one split"
                )
            where[(material, int(site))] = name
    return np.array(
        [
            where.get((str(m), int(s)), "")
            for m, s in zip(site_material_ids, site_indices, strict=True)
        ]
    ).astype(str)
