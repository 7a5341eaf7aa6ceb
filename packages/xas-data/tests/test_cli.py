"""The xas-data command line: info, split, ingest, fetch, curate and error reporting."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from xas_data.cli import app
from xas_data.store import XASDataset

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("simulate", "build", "curate", "split", "ingest", "fetch", "info"):
        assert command in result.output


def test_help_does_not_import_heavy_libraries():
    code = "import sys; from xas_data.cli import app; print('pymatgen' in sys.modules, 'zarr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_ingest_info_split_curate(shared_data, tmp_path):
    store = tmp_path / "exp.zarr"
    src = shared_data / "experiment/xaslib/xaslib_K_edge.json"
    result = runner.invoke(app, ["ingest", "xaslib", str(src), "--out", str(store)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["info", str(store)])
    assert result.exit_code == 0
    assert "Cr      EXP" in result.output and "88" in result.output
    result = runner.invoke(app, ["split", str(store), "--fractions", "0.6,0.2,0.2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output.strip().splitlines()[-1])
    assert sum(counts.values()) == 88 and counts["train"] > counts["val"]
    result = runner.invoke(app, ["info", str(store), "--json"])
    assert json.loads(result.output)["provenance"][-1] == "split"
    out = tmp_path / "cur.zarr"
    result = runner.invoke(app, ["curate", str(store), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert XASDataset.open(out).n_sites <= 88


def test_errors_are_one_clear_line(tmp_path):
    result = runner.invoke(app, ["info", str(tmp_path / "missing.zarr")])
    assert result.exit_code == 2
    assert "no dataset store here" in result.output
    result = runner.invoke(app, ["fetch", "no-such-dataset", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2 and "omnixas-cu-feff" in result.output


def test_fetch_lists_registry():
    result = runner.invoke(app, ["fetch"])
    assert result.exit_code == 0
    assert "omnixas-3dtm-xanes-ml2024" in result.output
