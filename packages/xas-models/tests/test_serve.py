"""``xas serve`` API through FastAPI's TestClient with the shipped zoo models: predictions equal
``xas_models.predict``'s for CIF, POSCAR and XYZ input, CSV download, descriptors of a measured
spectrum, the model list and cards, bearer tokens, and a one-line 4xx for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from xas_models.serve import ServeSettings
from xas_models.serve.app import create_app

ROOT = Path(__file__).resolve().parents[3]
ZOO = ROOT / "model-zoo"
CUO = ROOT / "docs/examples/CuO.cif"
FORWARD = "xasblock-chgnet-default-feff-fast-universal"
INVERSE = "spt-default-feff-fast"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServeSettings(zoo=str(ZOO)), warm_up=False)) as c:
        yield c


@pytest.fixture(scope="module")
def cuo_answer(client) -> dict:
    resp = client.post("/predict", files={"file": ("CuO.cif", CUO.read_bytes())})
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def measured_cuo(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """The measured CuO (tenorite) Cu K-edge spectrum of the XAS Data Library: (eV, mu)."""
    records = json.loads((shared_data / "experiment/xaslib/xaslib_K_edge.json").read_text())
    rec = next(r for r in records if r["file"].endswith("CuO_tenorite_13K_01.xdi"))
    return np.asarray(rec["energy"], dtype=float), np.asarray(rec["mu_raw"], dtype=float)


def _two_columns(energy: np.ndarray, mu: np.ndarray) -> bytes:
    return "\n".join(f"{e:.4f} {m:.6g}" for e, m in zip(energy, mu, strict=True)).encode()


def _assert_one_line_4xx(resp, status: int, *words: str) -> None:
    assert resp.status_code == status, resp.text
    detail = resp.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail.strip()
    for w in words:
        assert w in detail, detail


def test_health_and_page(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["ready"] is True
    page = client.get("/")
    assert page.status_code == 200 and 'src="static/plotly.min.js"' in page.text
    js = client.get("/static/app.js").text
    assert "Plotly.newPlot" in js and "https://" not in js + page.text  # nothing off the server
    assert 'src="http' not in page.text and "fetch(`http" not in js
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    assert "MIT" in client.get("/static/plotly.LICENSE.txt").text
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/describe", "/models", "/models/{name}", "/health"} <= set(schema["paths"])


def test_models_list_and_card(client):
    answer = client.get("/models").json()
    names = {m["name"] for m in answer["models"]}
    assert FORWARD in names and INVERSE in names
    assert answer["default_forward"] == FORWARD and answer["default_inverse"] == INVERSE
    one = client.get(f"/models/{INVERSE}", params={"version": "0.1.0"}).json()
    assert one["version"] == "0.1.0" and one["task"] == "inverse"
    assert one["card"].startswith("# ") and one["license"] == "BSD-3-Clause"
    _assert_one_line_4xx(client.get("/models/no-such-model"), 404, "no-such-model", FORWARD)


def test_predict_cif_equals_the_python_api(cuo_answer):
    from xas_models import predict

    assert cuo_answer["formula"] == "CuO" and cuo_answer["n_atoms"] == 8
    (p,) = cuo_answer["predictions"]
    assert p["element"] == "Cu" and p["model"] == FORWARD and p["source"] == "CuO.cif"
    (direct,) = predict(str(CUO), model=FORWARD, zoo=str(ZOO))
    np.testing.assert_allclose(p["energy_eV"], direct.average_energy)
    np.testing.assert_allclose(p["average_mu"], direct.average_mu, rtol=1e-6, atol=1e-7)
    assert [s["multiplicity"] for s in p["sites"]] == [4]
    assert p["energy_eV"][0] < p["average"]["e0_ev"] < p["energy_eV"][-1]
    assert p["average"]["white_line_mu"] == pytest.approx(max(p["average_mu"]))


def test_pasted_poscar_and_xyz_give_the_same_spectrum(client, cuo_answer):
    structure = Structure.from_file(CUO)
    poscar = structure.to(fmt="poscar")
    m = structure.lattice.matrix.ravel()
    xyz = f'{len(structure)}\nLattice="{" ".join(f"{v:.8f}" for v in m)}"\n' + "\n".join(
        f"{s.specie} {s.x:.8f} {s.y:.8f} {s.z:.8f}" for s in structure
    )
    expected = cuo_answer["predictions"][0]["average_mu"]
    for text, fmt in ((poscar, None), (xyz, "xyz")):
        form = {"text": text} | ({"format": fmt} if fmt else {})
        resp = client.post("/predict", data=form)
        assert resp.status_code == 200, resp.text
        np.testing.assert_allclose(resp.json()["predictions"][0]["average_mu"], expected, atol=1e-5)


def test_predict_csv_download(client, cuo_answer):
    resp = client.post(
        "/predict", params={"output": "csv"}, files={"file": ("CuO.cif", CUO.read_bytes())}
    )
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert 'filename="CuO-xas.csv"' in resp.headers["content-disposition"]
    lines = resp.text.strip().splitlines()
    assert lines[0] == "source,formula,element,model,site,multiplicity,energy_eV,mu"
    n_points = len(cuo_answer["predictions"][0]["energy_eV"])
    assert len(lines) == 1 + 2 * n_points  # one site and the average
    last = lines[-1].split(",")
    assert last[4] == "average" and float(last[7]) == pytest.approx(
        cuo_answer["predictions"][0]["average_mu"][-1], rel=1e-6
    )


def _supercell_poscar(n_atoms_min: int) -> bytes:
    s = Structure.from_file(CUO)
    k = int(np.ceil((n_atoms_min / len(s)) ** (1 / 3)))
    return s.make_supercell([k, k, k]).to(fmt="poscar").encode()


NACL = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0] * 3, [0.5] * 3])
#: case -> (file name, content builder, words the one-line message must hold)
BAD_STRUCTURES = {
    "empty": ("a.cif", lambda: b"", "empty"),
    "blank": ("a.cif", lambda: b"  \n\n", "empty"),
    "binary": ("a.cif", lambda: bytes(range(256)) * 4, "binary"),
    "garbage cif": (
        "a.cif",
        lambda: b"data_x\n_cell_length_a 3\nloop_\n_atom_site_label\nCu1 0",
        "cannot read",
    ),
    "no known element": ("nacl.cif", lambda: NACL.to(fmt="cif").encode(), "contains no element"),
    "5000 atoms": ("big.vasp", lambda: _supercell_poscar(5000), "exceed the limit of 500"),
}


@pytest.mark.parametrize("case", BAD_STRUCTURES)
def test_bad_structures_get_one_line_422(client, case):
    name, build, words = BAD_STRUCTURES[case]
    resp = client.post("/predict", files={"file": (name, build())})
    _assert_one_line_4xx(resp, 422, words)
    assert client.get("/health").json()["status"] == "ok"


def test_bad_requests(client):
    huge = b"0" * 3_000_000
    _assert_one_line_4xx(
        client.post("/predict", files={"file": ("big.cif", huge)}), 413, "exceeds the limit"
    )
    _assert_one_line_4xx(client.post("/predict"), 422, "no input")
    _assert_one_line_4xx(
        client.post("/predict", content=b"{not json", headers={"content-type": "application/json"}),
        422,
    )
    _assert_one_line_4xx(
        client.post("/predict", data={"text": "x", "model": "nope"}), 422, "cannot read"
    )
    cif = CUO.read_bytes()
    resp = client.post("/predict", files={"file": ("CuO.cif", cif)}, data={"model": "nope"})
    _assert_one_line_4xx(resp, 422, "'nope'", "not served")
    resp = client.post("/predict", params={"output": "xml"}, files={"file": ("CuO.cif", cif)})
    _assert_one_line_4xx(resp, 422, "json or csv")


def test_describe_measured_two_columns(client, measured_cuo):
    energy, mu = measured_cuo
    resp = client.post(
        "/describe",
        files={"file": ("cuo.txt", _two_columns(energy, mu))},
        data={"element": "Cu", "model": INVERSE},
    )
    assert resp.status_code == 200, resp.text
    (s,) = resp.json()["spectra"]
    assert s["element"] == "Cu" and s["model"] == INVERSE and 8975 < s["e0_ev"] < 8995
    norm = np.asarray(s["mu_norm"])
    assert len(norm) == len(s["energy_eV"]) and abs(norm[-20:].mean() - 1) < 0.3
    os_ = s["descriptors"]["OS"]
    assert os_["kind"] == "classification" and sum(os_["probabilities"].values()) == pytest.approx(
        1
    )
    assert f"{os_['value']:g}" in os_["probabilities"]
    # keV energies and a reversed axis are read as the xas-data reader reads them
    for e, m in ((energy / 1000, mu), (energy[::-1], mu[::-1])):
        again = client.post(
            "/describe", data={"text": _two_columns(e, m).decode(), "element": "Cu"}
        ).json()["spectra"][0]
        assert again["descriptors"]["OS"]["value"] == os_["value"]


def test_bad_spectra_get_one_line_422(client, measured_cuo):
    energy, mu = measured_cuo
    text = _two_columns(energy, mu)
    _assert_one_line_4xx(client.post("/describe", files={"file": ("s.txt", text)}), 422, "element")
    nan = mu.copy()
    nan[100] = np.nan
    resp = client.post(
        "/describe", files={"file": ("s.txt", _two_columns(energy, nan))}, data={"element": "Cu"}
    )
    _assert_one_line_4xx(resp, 422, "s.txt")
    resp = client.post("/describe", files={"file": ("s.txt", text)}, data={"element": "Xx"})
    _assert_one_line_4xx(resp, 422, "not an element symbol")
    resp = client.post("/describe", files={"file": ("s.txt", text)}, data={"element": "Zn"})
    _assert_one_line_4xx(resp, 422, "not Zn")
    resp = client.post(
        "/describe", files={"file": ("s.txt", text)}, data={"element": "Cu", "model": FORWARD}
    )
    _assert_one_line_4xx(resp, 422, "forward model")
    assert "/tmp" not in resp.json()["detail"]


def test_bearer_token():
    app = create_app(ServeSettings(zoo=str(ZOO), token="s3cret"), warm_up=False)
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        _assert_one_line_4xx(c.get("/models"), 401, "Bearer")
        _assert_one_line_4xx(c.get("/models", headers={"Authorization": "Bearer x"}), 401)
        assert c.get("/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_cli_warns_for_a_public_host(monkeypatch):
    import xas_models.serve as serve
    from xas_models.cli import app

    calls = []
    monkeypatch.setattr(serve, "run_server", lambda *a: calls.append(a))
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "8123", "-m", "a"])
    assert result.exit_code == 0, result.output
    assert "warning: --host 0.0.0.0" in result.stderr and "no --token" in result.stderr
    settings, host, port, workers = calls[0]
    assert (host, port, workers, settings.models) == ("0.0.0.0", 8123, 1, ["a"])
    quiet = CliRunner().invoke(app, ["serve"])
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr
