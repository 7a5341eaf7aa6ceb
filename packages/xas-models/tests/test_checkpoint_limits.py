"""model.json dimensions are checked against documented bounds before anything is allocated
(issue 16: hidden_widths [20000, 20000] allocated 1.5 GB before refusing; n_points 1e11 ended
in a MemoryError traceback)."""

from __future__ import annotations

import json
import resource

import pytest

from xas_models import (
    CheckpointMeta,
    EnergyGrid,
    FeaturizerInfo,
    ModelError,
    XASBlock,
    load_checkpoint,
    save_checkpoint,
)
from xas_models.checkpoint import MAX_GRID_POINTS, MAX_PARAMETERS


@pytest.fixture
def ckpt(tmp_path):
    cfg = {"input_dim": 6, "output_dim": 20, "hidden_widths": [8, 8], "dropout": 0.2}
    meta = CheckpointMeta(
        energy_grid=EnergyGrid(start=0.0, step=0.25, n_points=20),
        elements=["Cu"],
        fidelity="FEFF",
        featurizer=FeaturizerInfo(name="m3gnet", version="1.0"),
    )
    save_checkpoint(tmp_path / "c", XASBlock.from_config(cfg), meta)
    return tmp_path / "c"


def _edit(folder, change) -> None:
    path = folder / "model.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_huge_hidden_widths_are_refused_before_allocation(ckpt):
    _edit(ckpt, lambda d: d["config"].update(hidden_widths=[20000, 20000]))
    before = _peak_rss_mb()
    with pytest.raises(ModelError, match=f"more than the {MAX_PARAMETERS:,}") as info:
        load_checkpoint(ckpt)
    assert "\n" not in str(info.value)
    assert _peak_rss_mb() - before < 500  # 20000 x 20000 float32 alone would be 1.6 GB


def test_absurd_n_points_is_a_one_line_error(ckpt):
    _edit(ckpt, lambda d: d["energy_grid"].update(n_points=100_000_000_000))
    with pytest.raises(ModelError, match="n_points") as info:
        load_checkpoint(ckpt)
    assert str(MAX_GRID_POINTS) in str(info.value) and "\n" not in str(info.value)
