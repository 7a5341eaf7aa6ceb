"""The xas-train command line: help speed-independent checks, slurm, lr-find, train errors."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from xas_train.cli import app

runner = CliRunner()


def test_help_lists_every_command_and_imports_nothing_heavy():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "cascade", "tune", "quickstart", "publish", "slurm", "lr-find"):
        assert command in result.output
    code = "import sys, xas_train.cli; print(sorted(m for m in ('torch','deepspeed','mlflow','optuna') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_slurm_writes_a_submittable_script(write_config, tmp_path):
    cfg = write_config("slurm")
    out = tmp_path / "job.sbatch"
    result = runner.invoke(
        app,
        [
            "slurm",
            str(cfg),
            "--nodes",
            "4",
            "--gpus-per-node",
            "8",
            "--out",
            str(out),
            "--partition",
            "gpu",
            "--time",
            "12:00:00",
            "--no-check",  # a script for another cluster: not checked against a Slurm here
        ],
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "#SBATCH --nodes=4" in text and "#SBATCH --gpus-per-node=8" in text
    assert "#SBATCH --partition=gpu" in text and "--rdzv-backend=c10d" in text
    assert str(cfg) in text
    subprocess.run(["bash", "-n", str(out)], check=True)
    bad = runner.invoke(app, ["slurm", str(cfg), "--nodes", "0", "--out", str(out)])
    assert bad.exit_code == 2 and "nodes" in bad.output


def test_train_reports_config_errors_without_a_traceback(write_config):
    cfg = write_config("badcli", training={"lr": "fast"})
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2
    assert "training.lr" in result.output and "Traceback" not in result.output


def test_lr_find_prints_a_suggestion(write_config):
    result = runner.invoke(app, ["lr-find", str(write_config("lrf"))])
    assert result.exit_code == 0, result.output
    assert "suggested lr:" in result.output
