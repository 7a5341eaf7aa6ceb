"""predict(): inputs, sites and averages, grids, batching, refusals, writers."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import torch

from xas_data.structures import inequivalent_absorbing_sites
from xas_models import (
    ModelError,
    StructurePrediction,
    load_pretrained,
    predict,
    write_csv,
    write_json,
)

predict_module = sys.modules["xas_models.predict"]


@pytest.fixture(scope="module")
def batch(structures, tiny_zoo_source):
    """Predictions of the tiny Cu/Ni model for CuO, NiO and the spinel in one call."""
    items = [structures["cuo"], structures["nio"], structures["spinel"]]
    return predict(items, model="tiny-cuni", zoo=tiny_zoo_source)


def test_shapes_grid_and_sites(batch, structures):
    assert [(p.source, p.element) for p in batch] == [("CuO", "Cu"), ("NiO", "Ni"), ("Ni3O4", "Ni")]
    assert [p.structure_index for p in batch] == [0, 1, 2]
    cuo, nio, spinel = batch
    assert cuo.model_name == "tiny-cuni" and cuo.model_version == "0.10.0"
    assert cuo.edge == "K" and spinel.formula == "Ni3O4"
    np.testing.assert_allclose(cuo.average_energy, 8975.0 + 0.5 * np.arange(40))
    np.testing.assert_allclose(nio.average_energy, 8325.0 + 0.5 * np.arange(40))
    for p, name in zip(batch, ["cuo", "nio", "spinel"], strict=True):
        expected = inequivalent_absorbing_sites(structures[name], p.element)
        assert [(s.site_index, s.multiplicity) for s in p.sites] == [
            (s.index, s.multiplicity) for s in expected
        ]
        assert p.average_mu.shape == p.average_energy.shape == (40,)
        for s in p.sites:
            assert s.energy.shape == s.mu.shape == (40,)
            np.testing.assert_array_equal(s.energy, p.average_energy)
            assert np.all(np.isfinite(s.mu)) and np.all(s.mu >= 0)
    assert [s.multiplicity for s in spinel.sites] == [2, 4]
    assert spinel.n_sites == 6


def test_average_is_multiplicity_weighted(batch):
    spinel = batch[2]
    m = np.array([s.multiplicity for s in spinel.sites], dtype=float)
    mu = np.stack([s.mu for s in spinel.sites])
    np.testing.assert_allclose(spinel.average_mu, (m[:, None] * mu).sum(0) / m.sum(), rtol=1e-12)
    assert not np.allclose(spinel.average_mu, mu.mean(0))  # unequal weights matter here
    for p in batch[:2]:
        np.testing.assert_allclose(p.average_mu, p.sites[0].mu)


def test_batch_equals_one_at_a_time(batch, structures, tiny_zoo_source):
    model = load_pretrained("tiny-cuni", zoo=tiny_zoo_source)
    for i, name in enumerate(["cuo", "nio", "spinel"]):
        [single] = predict(structures[name], model=model)
        together = batch[i]
        assert single.element == together.element
        for a, b in zip(single.sites, together.sites, strict=True):
            np.testing.assert_allclose(a.mu, b.mu, atol=1e-5)
        np.testing.assert_allclose(single.average_mu, together.average_mu, atol=1e-5)


def test_model_output_equals_features_through_the_module(
    structures, tiny_zoo_source, chgnet_featurizer
):
    module, meta = load_pretrained("tiny-cuni", zoo=tiny_zoo_source)
    [p] = predict(structures["spinel"], model=(module, meta))
    sites = [s.site_index for s in p.sites]
    x = chgnet_featurizer.featurize([structures["spinel"]] * len(sites), sites)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).double().numpy()
    for s, row in zip(p.sites, expected, strict=True):
        np.testing.assert_allclose(s.mu, row, rtol=1e-6, atol=1e-6)


def test_cif_file_equals_structure(batch, structures, tiny_zoo_source, tmp_path):
    cif = tmp_path / "CuO.cif"
    structures["cuo"].to(filename=str(cif))
    [from_file] = predict(cif, model="tiny-cuni", zoo=tiny_zoo_source)
    assert from_file.source == "CuO.cif" and from_file.formula == "CuO"
    assert [s.multiplicity for s in from_file.sites] == [s.multiplicity for s in batch[0].sites]
    np.testing.assert_allclose(from_file.average_mu, batch[0].average_mu, atol=1e-5)
    [from_str] = predict(str(cif), model="tiny-cuni", zoo=tiny_zoo_source)
    np.testing.assert_allclose(from_str.average_mu, from_file.average_mu, atol=1e-12)


def test_ase_atoms_equals_structure(batch, structures, tiny_zoo_source):
    pytest.importorskip("ase")
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structures["nio"])
    [p] = predict(atoms, model="tiny-cuni", zoo=tiny_zoo_source)
    assert p.formula == "NiO" and p.element == "Ni"
    np.testing.assert_allclose(p.average_mu, batch[1].average_mu, atol=1e-5)


def test_element_selection(structures, tiny_zoo_source):
    mixed = structures["cuo"].copy()
    mixed.replace(0, "Ni")
    both = predict(mixed, model="tiny-cuni", zoo=tiny_zoo_source)
    assert [p.element for p in both] == ["Cu", "Ni"]
    only = predict(mixed, element="ni", model="tiny-cuni", zoo=tiny_zoo_source)
    assert [p.element for p in only] == ["Ni"]
    np.testing.assert_allclose(only[0].average_mu, both[1].average_mu, atol=1e-5)


def test_element_the_model_does_not_predict_is_refused(structures, tiny_zoo_source):
    with pytest.raises(ModelError, match=r"predicts \['Cu', 'Ni'\], not Fe"):
        predict(structures["cuo"], element="Fe", model="tiny-cuni", zoo=tiny_zoo_source)


def test_structure_without_the_element_is_refused(structures, tiny_zoo_source):
    with pytest.raises(ModelError, match="contains no Ni"):
        predict(structures["cuo"], element="Ni", model="tiny-cuni", zoo=tiny_zoo_source)
    from pymatgen.core import Lattice, Structure

    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    with pytest.raises(ModelError, match="contains none of the elements"):
        predict(nacl, model="tiny-cuni", zoo=tiny_zoo_source)


def test_featurizer_key_mismatch_is_refused(structures, tiny_zoo_source):
    with pytest.raises(ModelError, match="featurizer mismatch") as info:
        predict(structures["cuo"], model="tiny-badkey", zoo=tiny_zoo_source)
    assert "chgnet-v0.0.1-model0.3.0-deadbeef" in str(info.value)


def test_concatenated_features(structures, tiny_zoo_source, chgnet_featurizer):
    module, meta = load_pretrained("tiny-concat", zoo=tiny_zoo_source)
    [p] = predict(structures["nio"], model=(module, meta))
    site = p.sites[0].site_index
    x = chgnet_featurizer.featurize([structures["nio"]], [site])
    with torch.no_grad():
        expected = module(torch.from_numpy(np.concatenate([x, x], axis=1))).double().numpy()[0]
    np.testing.assert_allclose(p.sites[0].mu, expected, rtol=1e-6, atol=1e-6)


def test_checkpoint_folder_and_training_mode_restored(structures, tiny_zoo_source):
    folder = tiny_zoo_source / "tiny-cuni" / "0.9.0"
    [p] = predict(structures["nio"], model=folder)
    assert p.model_name == str(folder) and p.model_version == ""
    module, meta = load_pretrained("tiny-cuni", "0.9.0", zoo=tiny_zoo_source)
    module.train()
    [q] = predict(structures["nio"], model=(module, meta))
    assert module.training  # predict ran in eval mode and restored the mode
    np.testing.assert_allclose(p.average_mu, q.average_mu, atol=1e-6)
    with pytest.raises(ModelError, match="does not exist"):
        predict(structures["nio"], model=tiny_zoo_source / "missing")


def test_missing_backend_names_the_extra(structures, tiny_zoo_source, monkeypatch):
    from xas_data.errors import MissingExtraError

    def missing(name, **config):
        raise MissingExtraError("chgnet", "chgnet", package="xas-features")

    monkeypatch.setattr(predict_module, "_FEATURIZER_CACHE", {})
    monkeypatch.setattr("xas_features.get_featurizer", missing)
    with pytest.raises(ModelError, match=r'pip install "xas-models\[chgnet\]"'):
        predict(structures["nio"], model="tiny-cuni", zoo=tiny_zoo_source)


def test_bad_inputs(tiny_zoo_source, tmp_path):
    with pytest.raises(ModelError, match="pass a pymatgen Structure"):
        predict([42], model="tiny-cuni", zoo=tiny_zoo_source)
    from xas_data.errors import StructureError

    with pytest.raises(StructureError, match="no such file"):
        predict(tmp_path / "missing.cif", model="tiny-cuni", zoo=tiny_zoo_source)
    with pytest.raises(ModelError, match="no model given"):
        predict(tmp_path / "missing.cif")
    assert predict([], model="tiny-cuni", zoo=tiny_zoo_source) == []


def test_writers(batch, tmp_path):
    out = write_csv(batch, tmp_path / "out" / "spectra.csv")
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == [
        "source",
        "formula",
        "element",
        "model",
        "site",
        "multiplicity",
        "energy_eV",
        "mu",
    ]
    n_spectra = sum(len(p.sites) + 1 for p in batch)
    assert len(rows) == 40 * n_spectra
    spinel_avg = [r for r in rows if r["formula"] == "Ni3O4" and r["site"] == "average"]
    assert len(spinel_avg) == 40 and spinel_avg[0]["multiplicity"] == "6"
    np.testing.assert_allclose([float(r["mu"]) for r in spinel_avg], batch[2].average_mu, rtol=1e-7)
    assert float(spinel_avg[0]["energy_eV"]) == pytest.approx(8325.0)

    doc = json.loads(write_json(batch, tmp_path / "spectra.json").read_text())
    assert [p["element"] for p in doc["predictions"]] == ["Cu", "Ni", "Ni"]
    spinel = doc["predictions"][2]
    assert [s["multiplicity"] for s in spinel["sites"]] == [2, 4]
    np.testing.assert_allclose(spinel["average_mu"], batch[2].average_mu)
    np.testing.assert_allclose(spinel["energy_eV"], batch[2].average_energy)
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_plot(batch, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from xas_models import plot_predictions

    path = plot_predictions(batch, tmp_path / "spectra.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ModelError, match=r'pip install "xas-models\[plot\]"'):
        plot_predictions(batch, tmp_path / "again.png")


def test_result_type(batch):
    assert all(isinstance(p, StructurePrediction) for p in batch)
    d = batch[0].to_dict()
    assert d["model"] == "tiny-cuni" and len(d["energy_eV"]) == 40
