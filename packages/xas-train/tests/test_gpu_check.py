"""benchmarks/gpu_check.py (the one-GPU check) in its --small CPU mode, so that it cannot rot
while no GPU runs it: one row per model, finite throughput and metric, the precision used."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from xas_testkit import run_logged

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_check.py"


def test_gpu_check_small_mode_runs_every_model_on_the_cpu(tmp_path, subprocess_env):
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, str(SCRIPT), "--small", "--out", str(out)]
    cmd += ["--work-dir", str(tmp_path / "runs")]
    run_logged(cmd, tmp_path / "gpu_check.log", env=subprocess_env | {"CUDA_VISIBLE_DEVICES": ""})
    result = json.loads(out.read_text())
    assert result["mode"] == "small" and result["cuda"] is False
    rows = {row["model"]: row for row in result["rows"]}
    assert sorted(rows) == ["cgxas", "xane3", "xasblock"]
    for model, row in rows.items():
        assert row["precision"] == "fp32" and row["device"] == "cpu", row
        assert row["epochs"] == 2 and row["n_train"] > 0
        assert math.isfinite(row["samples_per_s"]) and row["samples_per_s"] > 0, row
        assert math.isfinite(row["val_loss"]) and math.isfinite(row["val_mse"]), row
        assert row["peak_gpu_mib"] is None and row["cpu_fp32_val_loss"] is None
        if model == "xasblock":
            assert row["graphs_per_s"] is None
        else:
            assert row["graphs_per_s"] == row["samples_per_s"]
