"""User errors of the xas-train, xas-features and xas-eval command lines: one line on stderr,
exit status 2, no traceback (unless --debug / XAS_DEBUG=1), and torch is never imported before
the error is reported (issue 16 items 7/9, issue 25 item 5)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xas_data.cli import default_dataset_path

# runs the app in a fresh interpreter; prints whether torch was imported when it exited
PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('TORCH_IMPORTED', 'torch' in sys.modules))\n"
    "from {module} import app\n"
    "app({args!r}, prog_name='cli')\n"
)


def run_cli(module: str, args: list[str], cwd: Path, env: dict | None = None):
    """``(returncode, stdout, stderr)`` of the CLI ``module`` run with ``args`` in ``cwd``."""
    import os

    code = PROBE.format(module=module, args=args)
    full_env = {k: v for k, v in os.environ.items() if k != "XAS_DEBUG"} | (env or {})
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
    )
    return done.returncode, done.stdout, done.stderr


def write_config(path: Path, dataset: str, output_dir: str) -> Path:
    config = {
        "name": "t",
        "recipe": "universal",
        "data": {"dataset": dataset, "features": ["chgnet"], "fidelity": "FEFF-fast"},
        "model": {"architecture": "xasblock", "hidden_widths": [8]},
        "training": {"max_epochs": 1, "checkpoint_every": 0},
        "output_dir": output_dir,
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def damaged_store(tmp_path: Path, how: str) -> Path:
    store = tmp_path / f"{how}.zarr"
    shutil.copytree(default_dataset_path(), store)
    if how == "broken-json":
        (store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gro')
    else:  # truncate every intensity chunk of one group
        for chunk in (store / "spectra/Cu/FEFF-fast/intensity/c").rglob("*"):
            if chunk.is_file():
                chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    return store


def _case(tmp_path: Path, name: str) -> tuple[str, list[str], str]:
    """``(module, args, words expected in the error line)`` of one user-error case."""
    out = str(tmp_path / "runs")
    if name == "missing-config":
        return "xas_train.cli", ["train", "missing.yaml"], "not found"
    if name == "binary-config":
        (tmp_path / "bin.yaml").write_bytes(b"\x94\xff\x00\x13binary")
        return "xas_train.cli", ["train", "bin.yaml"], "not YAML text"
    if name == "dataset-is-a-file":
        (tmp_path / "a.txt").write_text("hello")
        cfg = write_config(tmp_path / "c.yaml", str(tmp_path / "a.txt"), out)
        return "xas_train.cli", ["train", str(cfg)], "not a Zarr"
    if name == "missing-dataset":
        cfg = write_config(tmp_path / "c.yaml", "work/none.zarr", out)
        return "xas_train.cli", ["train", str(cfg)], "not found"
    if name in ("broken-json", "truncated-chunk"):
        cfg = write_config(tmp_path / "c.yaml", str(damaged_store(tmp_path, name)), out)
        return "xas_train.cli", ["train", str(cfg)], "cannot train on"
    if name == "unwritable-output":
        (tmp_path / "file").write_text("")
        cfg = write_config(tmp_path / "c.yaml", "default", str(tmp_path / "file" / "runs"))
        return "xas_train.cli", ["train", str(cfg)], "is a file, not a folder"
    if name == "featurize-missing-store":
        args = ["featurize", "--dataset", "none.zarr", "--featurizer", "chgnet"]
        return "xas_features.cli", args, "no dataset store"
    if name == "features-list-missing-store":
        return "xas_features.cli", ["list", "--dataset", "none.zarr"], "no dataset store"
    if name == "eval-missing-store":
        args = ["compare-features", "--dataset", "none.zarr", "--element", "Cu"]
        return "xas_eval.cli", args, "no dataset store"
    raise AssertionError(name)


CASES = [
    "missing-config",
    "binary-config",
    "dataset-is-a-file",
    "missing-dataset",
    "broken-json",
    "truncated-chunk",
    "unwritable-output",
    "featurize-missing-store",
    "features-list-missing-store",
    "eval-missing-store",
]


@pytest.mark.parametrize("name", CASES)
def test_user_error_is_one_line_rc2_before_torch(tmp_path, name):
    module, args, words = _case(tmp_path, name)
    rc, out, err = run_cli(module, args, tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert "TORCH_IMPORTED False" in out, f"torch was imported before the error: {err}"


def test_debug_shows_the_traceback(tmp_path):
    args = ["--debug", "compare-features", "--dataset", "none.zarr", "--element", "Cu"]
    rc, _, err = run_cli("xas_eval.cli", args, tmp_path)
    assert rc != 0 and "Traceback" in err and "StoreError" in err, err
    rc, _, err = run_cli("xas_eval.cli", args[1:], tmp_path, env={"XAS_DEBUG": "1"})
    assert rc != 0 and "Traceback" in err, err


def test_help_keeps_bracketed_defaults():
    from typer.testing import CliRunner

    from xas_train.cli import app

    result = CliRunner().invoke(app, ["slurm", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    assert "[default: 8, fewer if the" in result.output  # brackets are not eaten as markup
