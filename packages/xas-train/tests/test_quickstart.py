"""The main job end to end on the shipped default dataset (few epochs to keep CI short)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xas_data.store import XASDataset
from xas_train.quickstart import quickstart


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the longest test (~4 min at load 8): room for a loaded machine
def test_quickstart_featurizes_trains_reports_and_publishes(tmp_path):
    out, zoo = tmp_path / "qs", tmp_path / "zoo"
    result = quickstart(out, zoo, max_epochs=3, progress=None, allow_below_baseline=True)
    ds = XASDataset.open(result.data_path)
    chgnet = [k for k in ds.feature_names() if k.startswith("chgnet")]
    assert len(chgnet) == 1 and np.isfinite(ds.read_features(chgnet[0])).all()
    runs = result.cascade.runs
    recipes = {r.recipe for r in runs}
    assert recipes == {"expert", "universal", "tuned", "cross-fidelity"}
    assert sum(r.recipe == "tuned" for r in runs) == 8  # Ti..Cu
    assert all(r.status == "trained" for r in runs), [r.reason for r in runs]
    assert "| Cu | FEFF-fast |" in result.cascade.table_markdown
    assert Path(result.cascade.report_path).is_file()
    assert not (out / "zoo").exists()  # a given zoo: the run zoo is not used
    assert (out / "mlflow.db").is_file()
    index = json.loads((zoo / "index.json").read_text())
    names = {e["name"] for e in index["models"]}
    assert "xasblock-chgnet-default-feff-fast-universal" in names
    assert "xasblock-chgnet-default-feff-fast-tuned-cu" in names
    # 3 epochs: worse than the mean spectrum somewhere, so published only because allowed, and
    # flagged in the index
    flagged = [e for e in index["models"] if e.get("below_baseline")]
    assert flagged and all(
        set(e["below_baseline"]) <= set(e["elements"]) | {"all"} for e in flagged
    )
    index_bytes = (zoo / "index.json").read_bytes()
    again = quickstart(out, zoo, max_epochs=3, progress=None, allow_below_baseline=True)
    assert {r.status for r in again.cascade.runs} == {"reused"}
    assert (zoo / "index.json").read_bytes() == index_bytes  # the same models: a no-op
    local = quickstart(out, max_epochs=3, progress=None, allow_below_baseline=True)
    assert {e["path"] for e in local.published} == {e["path"] for e in again.published}
    assert (out / "zoo" / "index.json").is_file()  # default: the run's own zoo
    assert (zoo / "index.json").read_bytes() == index_bytes
