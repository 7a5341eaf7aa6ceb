"""Material-level splits: the greedy OmniXAS rule, split id parsing and split files."""

from __future__ import annotations

import numpy as np
import pytest

from xas_data.errors import XASDataError
from xas_data.splits import (
    greedy_material_split,
    parse_site_id,
    read_split_file,
    split_site_rows,
    splits_from_lists,
)


def _site_list(sizes: dict[str, int], seed: int = 0) -> list[str]:
    """One entry per site (material id repeated n_sites times), in a shuffled order."""
    ids = [mid for mid, n in sizes.items() for _ in range(n)]
    order = np.random.default_rng(seed).permutation(len(ids))
    return [ids[i] for i in order]


@pytest.fixture(scope="module")
def synthetic_sizes() -> dict[str, int]:
    rng = np.random.default_rng(123)
    return {f"mp-{i}": int(n) for i, n in enumerate(rng.integers(1, 9, size=300))}


# ----------------------------------------------------------------------------- greedy split


def test_greedy_split_assigns_every_material_exactly_once(synthetic_sizes):
    site_ids = _site_list(synthetic_sizes)
    assignment = greedy_material_split(site_ids, seed=1)
    # one split per material (a dict cannot hold two), and every material is assigned
    assert set(assignment) == set(synthetic_sizes)
    assert set(assignment.values()) == {"train", "val", "test"}
    # per site: all sites of a material share one split, so no material straddles two splits
    rows = split_site_rows(site_ids, assignment)
    for split in ("train", "val", "test"):
        in_split = {m for m, s in zip(site_ids, rows, strict=True) if s == split}
        others = {m for m, s in zip(site_ids, rows, strict=True) if s != split}
        assert not in_split & others


def test_greedy_split_site_fractions_close_to_targets(synthetic_sizes):
    site_ids = _site_list(synthetic_sizes)
    assignment = greedy_material_split(site_ids, fractions=(0.8, 0.1, 0.1), seed=7)
    total = sum(synthetic_sizes.values())
    sites = {name: 0 for name in ("train", "val", "test")}
    for mid, n in synthetic_sizes.items():
        sites[assignment[mid]] += n
    assert sum(sites.values()) == total
    for name, target in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        assert abs(sites[name] / total - target) < 0.02, (name, sites, total)


def test_greedy_split_is_deterministic_for_a_seed(synthetic_sizes):
    site_ids = _site_list(synthetic_sizes)
    first = greedy_material_split(site_ids, seed=5)
    assert greedy_material_split(site_ids, seed=5) == first
    # the order of the site list does not matter either
    assert greedy_material_split(_site_list(synthetic_sizes, seed=99), seed=5) == first


def test_greedy_split_seed_breaks_ties():
    # ten one-site materials: all tied, targets 8/1/1 -> the seed decides who goes to val/test
    site_ids = [f"m{i}" for i in range(10)]
    results = []
    for seed in range(8):
        assignment = greedy_material_split(site_ids, seed=seed)
        counts = {s: list(assignment.values()).count(s) for s in ("train", "val", "test")}
        assert counts == {"train": 8, "val": 1, "test": 1}
        results.append(tuple(sorted(assignment.items())))
    assert len(set(results)) > 1


@pytest.mark.parametrize(
    ("fractions", "expected"),
    [
        # sizes A=5, B=3, C=2 (10 sites). Targets (5, 3, 2).
        # A (5): gains |5-0|-|5-5|=5, |3|-|3-5|=1, |2|-|2-5|=-1        -> train
        # B (3): filled (5,0,0): gains 0-3=-3, 3-0=3, 2-1=1          -> val
        # C (2): filled (5,3,0): gains 0-2=-2, 0-2=-2, 2-0=2          -> test
        ((0.5, 0.3, 0.2), {"A": "train", "B": "val", "C": "test"}),
        # Targets (2, 3, 5).
        # A (5): gains 2-3=-1, 3-2=1, 5-0=5                           -> test
        # B (3): filled (0,0,5): gains 2-1=1, 3-0=3, 0-3=-3           -> val
        # C (2): filled (0,3,5): gains 2-0=2, 0-2=-2, 0-2=-2          -> train
        ((0.2, 0.3, 0.5), {"A": "test", "B": "val", "C": "train"}),
        # Targets (6, 2, 2).
        # A (5): gains 6-1=5, 2-3=-1, 2-3=-1                          -> train
        # B (3): filled (5,0,0): gains 1-2=-1, 2-1=1, 2-1=1 (tie)     -> val (first)
        # C (2): filled (5,3,0): gains 1-1=0, 1-3=-2, 2-0=2           -> test
        ((0.6, 0.2, 0.2), {"A": "train", "B": "val", "C": "test"}),
    ],
)
def test_greedy_rule_hand_worked(fractions, expected):
    site_ids = _site_list({"A": 5, "B": 3, "C": 2})
    for seed in (0, 1, 2):  # no ties in size: the seed cannot matter
        assert greedy_material_split(site_ids, fractions=fractions, seed=seed) == expected


def test_greedy_split_custom_names():
    assignment = greedy_material_split(
        ["a"] * 3 + ["b"], fractions=(0.75, 0.25), names=("fit", "holdout")
    )
    assert assignment == {"a": "fit", "b": "holdout"}


@pytest.mark.parametrize(
    "fractions",
    [(0.8, 0.1), (0.8, 0.1, 0.2), (1.2, -0.1, -0.1), (0.5, 0.5, 0.5, -0.5), (0.0, 0.0, 0.0)],
)
def test_greedy_split_bad_fractions(fractions):
    with pytest.raises(XASDataError) as info:
        greedy_material_split(["a", "b"], fractions=fractions)
    message = str(info.value)
    assert "must be 3 non-negative numbers summing to 1" in message
    assert "0.8 0.1 0.1" in message


def test_split_site_rows_unassigned_is_empty():
    rows = split_site_rows(["a", "b", "a", "z"], {"a": "train", "b": "test"})
    assert rows.tolist() == ["train", "test", "train", ""]


# ----------------------------------------------------------------------------- site ids


@pytest.mark.parametrize(
    ("site_id", "expected"),
    [
        ("mp-1234_005", ("mp-1234", 5)),
        ("mvc-6490_018", ("mvc-6490", 18)),
        ("mp-1_0", ("mp-1", 0)),
        ("my_material_12", ("my_material", 12)),
        ("  mp-7_003\n", ("mp-7", 3)),
    ],
)
def test_parse_site_id(site_id, expected):
    assert parse_site_id(site_id) == expected


@pytest.mark.parametrize(
    "site_id", ["mp-1234", "mp-1234_", "_005", "mp-1234_x5", "mp-1234_-5", "mp-1234_5.0", ""]
)
def test_parse_site_id_rejects_bad_ids(site_id):
    with pytest.raises(XASDataError) as info:
        parse_site_id(site_id)
    message = str(info.value)
    assert repr(site_id) in message
    assert "'<material>_<site index>'" in message


def test_parse_site_id_superscript_digit_is_an_xas_error():
    with pytest.raises(XASDataError):
        parse_site_id("mp-1_²")


# ----------------------------------------------------------------------------- split files


def test_read_split_file_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("# train sites\nmp-1_000\n\nmp-1_002\nmvc-6490_018\n")
    assert read_split_file(path) == [("mp-1", 0), ("mp-1", 2), ("mvc-6490", 18)]


def test_read_split_file_reports_file_and_line(tmp_path):
    path = tmp_path / "val.txt"
    path.write_text("mp-1_000\n\n# comment\nmp-2\nmp-3_001\n")
    with pytest.raises(XASDataError) as info:
        read_split_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: ")
    assert "'mp-2'" in message


def test_read_split_file_missing(tmp_path):
    with pytest.raises(XASDataError, match="split file not found"):
        read_split_file(tmp_path / "nope.txt")


def test_splits_from_lists_assigns_sites():
    splits = splits_from_lists(
        ["a", "a", "b", "c", "d"],
        [0, 1, 0, 4, 0],
        {"train": [("a", 0), ("a", 1), ("c", 4)], "test": [("b", 0)]},
    )
    assert splits.tolist() == ["train", "train", "test", "train", ""]


def test_splits_from_lists_rejects_a_material_in_two_lists():
    with pytest.raises(XASDataError) as info:
        splits_from_lists(
            ["a", "a"],
            [0, 1],
            {"train": [("a", 0), ("b", 0)], "val": [("c", 1)], "test": [("a", 1)]},
        )
    message = str(info.value)
    assert "material a is listed in both train and test" in message
    assert "exactly one split" in message
