"""OmniXAS Table I, Markdown rendering, plots and the ``xas-eval report`` command."""

import re
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from xas_eval import metrics as m
from xas_eval.cli import app
from xas_eval.predictions import Predictions
from xas_eval.report import render_markdown, table_one, write_report

N, K = 40, 60
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _spectra(rng: np.random.Generator, n: int, energy: np.ndarray) -> np.ndarray:
    """Smooth edge-like curves: a sigmoid step with a damped oscillation, [n, K]."""
    e0 = 8990.0 + rng.normal(0.0, 4.0, (n, 1))
    amp = 0.1 + 0.4 * rng.random((n, 1))
    period = 6.0 + 2.0 * rng.random((n, 1))
    step = 1.0 / (1.0 + np.exp(-(energy - e0) / 1.5))
    return step * (1.0 + amp * np.sin((energy - e0) / period) * np.exp(-(energy - e0) / 40.0))


def _make(element: str, fidelity: str, sigmas: dict[str, float], seed: int) -> list[Predictions]:
    """One Predictions per model label with Gaussian noise ``sigma`` on the true spectra;
    every model but the first gets its rows shuffled (the report must match by site id)."""
    rng = np.random.default_rng(seed)
    energy = np.linspace(8970.0, 9030.0, K)
    y_true = _spectra(rng, N, energy)
    y_train_mean = _spectra(rng, 200, energy).mean(axis=0)
    ids = np.array([f"mp-{seed}{i:03d}_{i % 4:03d}" for i in range(N)])
    out = []
    for j, (model, sigma) in enumerate(sigmas.items()):
        order = np.arange(N) if j == 0 else rng.permutation(N)
        y_pred = y_true + rng.normal(0.0, sigma, (N, K))
        out.append(
            Predictions(
                y_true=y_true[order],
                y_pred=y_pred[order],
                y_train_mean=y_train_mean,
                energy=energy,
                site_ids=ids[order],
                model=model,
                element=element,
                fidelity=fidelity,
            )
        )
    return out


@pytest.fixture
def cu() -> list[Predictions]:
    return _make("Cu", "FEFF", {"expert": 0.05, "universal": 0.06, "tuned": 0.03}, seed=1)


@pytest.fixture
def many(cu) -> list[Predictions]:
    fe = _make("Fe", "FEFF", {"expert": 0.04}, seed=2)
    ti = _make("Ti", "VASP", {"expert": 0.05, "cross-fidelity": 0.04}, seed=3)
    return ti + cu + fe


def _eta_independent(p: Predictions) -> float:
    return m.eta(p.y_true, p.y_pred, p.y_train_mean[None, :])


def _aligned_pred(ref: Predictions, other: Predictions) -> np.ndarray:
    index = {s: i for i, s in enumerate(other.site_ids)}
    return other.y_pred[[index[s] for s in ref.site_ids]]


def test_table_one_numbers(cu):
    (row,) = table_one(cu)
    expert, universal, tuned = cu
    eta_e, eta_t = _eta_independent(expert), _eta_independent(tuned)
    assert row["element"] == "Cu" and row["fidelity"] == "FEFF" and row["n_test"] == N
    assert row["eta expert"] == pytest.approx(eta_e)
    assert row["eta universal"] == pytest.approx(_eta_independent(universal))
    assert row["eta tuned"] == pytest.approx(eta_t)
    assert row["eta tuned"] > row["eta expert"] > row["eta universal"] > 1.0
    assert row["candidate"] == "tuned"
    assert row["improvement %"] == pytest.approx((eta_t / eta_e - 1.0) * 100.0)
    # squared noise ratio (0.05 / 0.03)^2 = 2.8 -> roughly +180 %
    assert 100.0 < row["improvement %"] < 300.0
    pred_t = _aligned_pred(expert, tuned)
    ws = 100.0 * m.win_rate_spectra(expert.y_true, pred_t, expert.y_pred)
    we = 100.0 * m.win_rate_energy(expert.y_true, pred_t, expert.y_pred)
    assert row["w_s %"] == pytest.approx(ws) and row["w_s %"] > 80.0
    assert row["w_e %"] == pytest.approx(we) and row["w_e %"] > 80.0
    assert list(row)[:6] == [
        "element",
        "fidelity",
        "n_test",
        "eta expert",
        "eta universal",
        "eta tuned",
    ]


def test_table_one_rows_missing_models_and_cross_fidelity(many):
    rows = table_one(many)
    assert [(r["element"], r["fidelity"]) for r in rows] == [
        ("Fe", "FEFF"),
        ("Cu", "FEFF"),
        ("Ti", "VASP"),
    ]
    fe, _, ti = rows
    assert list(fe)[3:7] == ["eta expert", "eta universal", "eta tuned", "eta cross-fidelity"]
    assert fe["eta tuned"] is None and fe["candidate"] is None
    assert fe["improvement %"] is None and fe["w_e %"] is None and fe["w_s %"] is None
    ti_expert, ti_cross = many[0], many[1]
    assert ti["candidate"] == "cross-fidelity" and ti["eta tuned"] is None
    expected = (_eta_independent(ti_cross) / _eta_independent(ti_expert) - 1.0) * 100.0
    assert ti["improvement %"] == pytest.approx(expected) and ti["improvement %"] > 0
    # another candidate / reference pair
    (cu_row,) = [
        r
        for r in table_one(many, reference="universal", candidate="expert")
        if r["element"] == "Cu"
    ]
    assert cu_row["candidate"] == "expert" and cu_row["w_s %"] > 50.0


def test_mismatched_sites_raise(cu):
    expert, _, tuned = cu
    tuned.site_ids = np.array([f"other-{i}" for i in range(N)])
    with pytest.raises(ValueError, match="site sets differ"):
        table_one([expert, tuned])


def test_duplicate_models_raise(cu):
    with pytest.raises(ValueError, match="two predictions for model 'expert'"):
        table_one([cu[0], cu[0]])


def test_render_markdown(many):
    rows = table_one(many)
    text = render_markdown(rows)
    lines = text.strip().splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[0].startswith("| element | fidelity | n_test | eta expert |")
    assert set(lines[1]) <= set("|-:")
    fe_line = next(line for line in lines if line.startswith("| Fe |"))
    assert "n/a" in fe_line
    cu_line = next(line for line in lines if line.startswith("| Cu |"))
    cu = rows[1]
    assert f"| {cu['eta tuned']:.2f} |" in cu_line
    assert f"| {cu['improvement %']:.1f} |" in cu_line
    assert f"| {cu['w_s %']:.1f} |" in cu_line
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert render_markdown([{"eta a": None, "x %": 12.345, "eta b": 3.14159}]).splitlines()[2] == (
        "| n/a | 12.3 | 3.14 |"
    )


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    cu = _make("Cu", "FEFF", {"expert": 0.05, "tuned": 0.03}, seed=1)
    ti = _make("Ti", "VASP", {"expert": 0.05}, seed=3)
    out = tmp_path_factory.mktemp("report")
    return write_report(cu + ti, out), out


def test_write_report_files(report_dir):
    path, out = report_dir
    assert path == out / "report.md"
    expected = {
        "report.md",
        "eta_per_element.png",
        "error_distribution_Cu_FEFF.png",
        "error_distribution_Ti_VASP.png",
        "energy_improvement_Cu_FEFF.png",
        "spectra_by_decile_Cu_FEFF_expert.png",
        "spectra_by_decile_Cu_FEFF_tuned.png",
        "spectra_by_decile_Ti_VASP_expert.png",
    }
    assert {p.name for p in out.iterdir()} == expected  # nothing else, no temporary files
    for name in expected - {"report.md"}:
        width, height = _png_size(out / name)
        assert width > 500 and height > 400
    # 150 dpi: the 17 x 6.5 inch decile figure
    assert _png_size(out / "spectra_by_decile_Cu_FEFF_tuned.png") == (2550, 975)


def test_write_report_markdown(report_dir):
    path, out = report_dir
    text = path.read_text()
    assert text.startswith("# OmniXAS evaluation report")
    assert "## Table I" in text and "## Per-model metrics" in text
    assert "mean RSE" in text and "median Pearson r" in text and "edge-energy error (eV)" in text
    assert "n/a" in text  # no tuned for Ti VASP
    assert "**w_e %**" in text and "**improvement %**" in text
    links = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert len(links) == 7
    assert all((out / link).is_file() for link in links)


def test_cli_report(cu, tmp_path):
    expert, _, tuned = cu
    expert.save(tmp_path / "runs" / "expert" / "predictions.npz")
    tuned.save(tmp_path / "runs" / "tuned" / "predictions.npz")
    out = tmp_path / "out"
    args = ["report", str(tmp_path / "runs"), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--reference", "expert", "--candidate", "tuned"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| element | fidelity | n_test | eta expert | eta tuned |")
    (row,) = table_one([expert, tuned])
    assert lines[2].startswith("| Cu | FEFF | 40 |")
    assert f"| {row['improvement %']:.1f} |" in lines[2]
    assert (out / "report.md").is_file() and (out / "eta_per_element.png").is_file()
    assert "report written to" in result.stderr

    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "empty"), "--out", str(out)])
    assert result.exit_code == 1
    assert "no predictions.npz files found" in result.stderr
