"""``pip install xas-models`` for a user who has never seen the repository.

Builds wheels and sdists of every package with ``uv build``, checks their metadata, creates a
fresh virtual environment outside the workspace and installs ``xas-models[chgnet]`` from the
built wheels (the sibling packages resolved from the same folder, third-party packages pinned
to the versions of ``uv.lock`` so the uv cache serves them offline), then runs ``xas predict``
on a CIF with a zoo model from the repository's ``model-zoo/``.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from xas_testkit import run_logged

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["xas-data", "xas-features", "xas-models", "xas-train", "xas-eval"]
UV = shutil.which("uv")


def _run(cmd: list[str], logs: Path, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group (uv's build backends and installers with it),
    stdout and stderr in files under ``logs``; fails with their tails on a non-zero exit or
    when it outlasts the testkit deadline, leaving no process behind."""
    logs.mkdir(parents=True, exist_ok=True)
    stem = f"{len(list(logs.glob('*.out'))):02d}-{Path(cmd[0]).name}"
    return run_logged(cmd, logs / f"{stem}.out", stderr_log=logs / f"{stem}.err", **kw)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    if UV is None:
        pytest.fail("uv is not on PATH; install it (pip install uv) to build the packages")
    out = tmp_path_factory.mktemp("dist")
    logs = tmp_path_factory.mktemp("dist-logs")
    _run([UV, "build", "--all-packages", "--out-dir", str(out)], logs, cwd=ROOT)
    return out


def _metadata(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(zf.read(name).decode())
    return {
        "name": msg["Name"],
        "version": msg["Version"],
        "license": msg.get("License-Expression") or msg.get("License"),
        "requires": msg.get_all("Requires-Dist") or [],
        "readme": msg.get_payload(),
        "classifiers": msg.get_all("Classifier") or [],
        "keywords": msg.get("Keywords") or "",
        "license_files": msg.get_all("License-File") or [],
    }


@pytest.mark.slow
def test_every_package_builds_a_wheel_and_sdist_with_metadata(dist):
    for package in PACKAGES:
        module = package.replace("-", "_")
        [wheel] = dist.glob(f"{module}-*.whl")
        [sdist] = dist.glob(f"{module}-*.tar.gz")
        meta = _metadata(wheel)
        assert meta["name"] == package and meta["version"]
        assert meta["license"] == "BSD-3-Clause"
        assert package in meta["readme"] or module in meta["readme"]
        siblings = [r for r in meta["requires"] if r.split("[")[0].split(">")[0] in PACKAGES]
        assert all(">=" in r and "<" in r for r in siblings), siblings
        assert "LICENSE" in meta["license_files"], f"{wheel.name} ships no LICENSE"
        assert any(c.startswith("Topic :: Scientific/Engineering") for c in meta["classifiers"])
        assert "XANES" in meta["keywords"]
        with zipfile.ZipFile(wheel) as zf:
            assert any(n.endswith(".dist-info/licenses/LICENSE") for n in zf.namelist())
        with tarfile.open(sdist) as tf:
            assert any(n.endswith("pyproject.toml") for n in tf.getnames())
            assert any(n.endswith("/LICENSE") for n in tf.getnames()), f"{sdist.name}: no LICENSE"
    base = _metadata(next(dist.glob("xas_models-*.whl")))["requires"]
    hard = [r for r in base if "extra ==" not in r]
    for heavy in ("deepspeed", "mlflow", "dscribe", "chgnet", "matgl"):
        assert not any(r.startswith(heavy) for r in hard), f"{heavy} must not be required"


@pytest.mark.slow
def test_pip_install_xas_models_in_a_fresh_venv_and_predict(dist, tmp_path):
    venv = tmp_path / "user-venv"
    logs = tmp_path / "logs"
    _run([UV, "venv", "--python", sys.executable, str(venv)], logs, cwd=tmp_path)
    python = venv / "bin" / "python"
    constraints = tmp_path / "constraints.txt"
    _run(
        [
            UV,
            "export",
            "--frozen",
            "--no-hashes",
            "--no-emit-workspace",
            "--all-extras",
            "--all-groups",
            "-o",
            str(constraints),
        ],
        logs,
        cwd=ROOT,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    _run(
        [
            UV,
            "pip",
            "install",
            "--python",
            str(python),
            "--find-links",
            str(dist),
            "-c",
            str(constraints),
            "xas-models[chgnet]",
        ],
        logs,
        cwd=tmp_path,
        env=env,
    )
    listed = _run([UV, "pip", "list", "--python", str(python)], logs, cwd=tmp_path, env=env).stdout
    assert "xas-models" in listed and "deepspeed" not in listed and "mlflow" not in listed
    where = _run(
        [str(python), "-c", "import xas_models; print(xas_models.__file__)"],
        logs,
        cwd=tmp_path,
        env=env,
    ).stdout
    assert str(venv) in where, "xas_models must come from the fresh venv, not the workspace"

    from pymatgen.core import Lattice, Structure

    cuo = Structure.from_spacegroup(
        "C2/c",
        Lattice.monoclinic(4.684, 3.423, 5.129, 99.54),
        ["Cu", "O"],
        [[0.25, 0.25, 0], [0, 0.4184, 0.25]],
    )
    cif = tmp_path / "CuO.cif"
    cuo.to(filename=str(cif))
    out = tmp_path / "cuo.csv"
    env.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    proc = _run(
        [
            str(venv / "bin" / "xas"),
            "predict",
            str(cif),
            "--model",
            "xasblock-chgnet-default-feff-fast-tuned-cu",
            "--zoo",
            str(ROOT / "model-zoo"),
            "--out",
            str(out),
        ],
        logs,
        cwd=tmp_path,
        env=env,
    )
    assert "Cu" in proc.stdout
    rows = list(csv.DictReader(out.open()))
    average = [r for r in rows if r["site"] == "average"]
    assert len(average) == 141
    energies = [float(r["energy_eV"]) for r in average]
    assert energies[0] == pytest.approx(8983.173, abs=1e-3)
    assert all(float(r["mu"]) >= 0 for r in average)


@pytest.mark.slow
def test_twine_accepts_every_distribution(dist, tmp_path):
    """What a package index checks on upload (metadata, README rendering), as the release
    workflow runs it."""
    files = sorted(str(f) for f in dist.iterdir() if f.suffix in (".whl", ".gz"))
    assert len(files) == 2 * len(PACKAGES)
    proc = _run([sys.executable, "-m", "twine", "check", "--strict", *files], tmp_path / "logs")
    assert proc.stdout.count("PASSED") == len(files), proc.stdout


def test_release_workflow_is_a_valid_github_workflow(tmp_path):
    """The release workflow cannot run here; check it against GitHub's workflow schema
    (vendored in check-jsonschema, offline) and that it publishes through trusted publishing."""
    workflow = ROOT / ".github" / "workflows" / "release.yml"
    _run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(workflow),
        ],
        tmp_path / "logs",
    )
    text = workflow.read_text()
    assert "id-token: write" in text and "pypa/gh-action-pypi-publish" in text
    assert "twine check --strict" in text
