"""Allowed classes per element and the training-domain check (xas_models.domain)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from xas_models import ModelError
from xas_models.domain import (
    CN_RANGE,
    OXIDATION_STATES,
    DomainCheck,
    allowed_classes,
    allowed_classes_from_labels,
    calibrate_domain,
    check_domain,
    domain_annotations,
    domain_distance,
    fit_domain,
    restrict_probabilities,
)

TASKS = [
    SimpleNamespace(name="OS", classes=[1, 2, 3, 4, 5, 6]),
    SimpleNamespace(name="CN", classes=[2, 4, 6, 12, 13]),
    SimpleNamespace(name="PSGO", classes=[1, 2, 48]),
    SimpleNamespace(name="NNRS", classes=None),
]


def test_recorded_training_classes_win():
    td = {"allowed_classes": {"V": {"OS": [3, 4, 5], "CN": [4, 6]}}}
    got, source = allowed_classes(td, ["Cu", "V"], TASKS, "V")
    assert got == {"OS": (3.0, 4.0, 5.0), "CN": (4.0, 6.0)} and source == "training data"


def test_single_element_checkpoint_uses_its_task_classes():
    got, source = allowed_classes({}, ["Cu"], TASKS, "Cu")
    assert got["OS"] == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0) and "NNRS" not in got
    assert source == "training data"


def test_chemical_table_for_older_multi_element_checkpoints():
    got, source = allowed_classes({}, ["Ni", "V"], TASKS, "V")
    assert source == "chemical table"
    assert got["OS"] == (2.0, 3.0, 4.0, 5.0)  # no V(VI), no V(I) among the ICSD states
    assert got["CN"] == (2.0, 4.0, 6.0, 12.0)  # CN 13 is outside CN_RANGE
    assert "PSGO" not in got  # not limited by the table
    ni, _ = allowed_classes({}, ["Ni", "V"], TASKS, "Ni")
    assert ni["OS"] == (1.0, 2.0, 3.0, 4.0)  # no Ni(V)
    assert allowed_classes({}, ["Ti", "V"], TASKS, "Ti")[0]["OS"] == (2.0, 3.0, 4.0)
    assert set(OXIDATION_STATES) >= {"Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn"}
    assert CN_RANGE == (1, 12)
    # an element outside the 3d table: pymatgen's ICSD states
    assert allowed_classes({}, ["Mo", "V"], TASKS, "Mo")[0]["OS"]


def test_allowed_classes_from_training_labels():
    labels = {"OS": np.array([2, 3, np.nan, 4, 2.0]), "CN": np.array([6, 6, 4, np.nan, 4.0])}
    got = allowed_classes_from_labels(labels, np.array(["V", "V", "V", "Ni", "Ni"]), ["OS", "CN"])
    assert got == {"Ni": {"OS": [2.0, 4.0], "CN": [4.0]}, "V": {"OS": [2.0, 3.0], "CN": [4.0, 6.0]}}


def test_restrict_probabilities_renormalises_over_the_allowed_classes():
    proba = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    sub, kept = restrict_probabilities(proba, [2, 3, 6], [2, 3, 4, 5])
    assert kept == [2.0, 3.0]
    np.testing.assert_allclose(sub, [[1 / 3, 2 / 3], [0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ModelError, match="none of the classes"):
        restrict_probabilities(proba, [2, 3, 6], [7])


def _spectra(rng, n, k=60, shift=0.0):
    """Smooth edges with a random position and white-line height (a 2-parameter family)."""
    e = np.linspace(0, 1, k)
    pos = 0.3 + 0.05 * rng.standard_normal((n, 1)) + shift
    height = 0.3 + 0.1 * rng.standard_normal((n, 1))
    edge = 1 / (1 + np.exp(-(e - pos) / 0.03))
    return edge + height * np.exp(-(((e - pos - 0.05) / 0.04) ** 2)) + 0.01 * rng.random((n, k))


def test_fit_and_calibrate_domain_flags_shifted_spectra():
    rng = np.random.default_rng(0)
    train = {"Cu": _spectra(rng, 300), "Ni": _spectra(rng, 200) + 0.1}
    hold = {"Cu": _spectra(rng, 60), "Ni": _spectra(rng, 40) + 0.1}
    dom = fit_domain(train, n_components=4)
    assert dom["n_components"] == 4 and len(dom["components"]) == 4
    assert set(dom["means"]) == {"Cu", "Ni"} and dom["noise"] > 0
    dom = calibrate_domain(dom, {"train": train, "val": hold}, quantile=0.99)
    assert dom["calibration"]["n"] == 600
    pooled = np.concatenate([domain_distance(dom, el, x) for el, x in {**train}.items()])
    assert 0.97 <= np.mean(pooled <= dom["threshold"]) <= 1.0
    # typical spectra sit near d = 1; a shifted edge (a measured spectrum's E0 offset) does not
    assert 0.5 < np.median(pooled) < 1.5
    far = domain_distance(dom, "Cu", _spectra(rng, 20, shift=0.4))
    assert (far > dom["threshold"]).all()
    checks = check_domain({"domain": dom}, "Cu", _spectra(rng, 3, shift=0.4))
    assert len(checks) == 3 and not any(c.in_domain for c in checks)
    assert "OUTSIDE the training domain" in checks[0].message
    with pytest.raises(ModelError, match="no Fe"):
        domain_distance(dom, "Fe", train["Cu"])


def test_check_domain_is_none_without_calibrated_statistics():
    x = np.ones((2, 10))
    assert check_domain({}, "Cu", x) is None
    assert check_domain({"domain": {"means": {"Cu": [0.0] * 10}}}, "Cu", x) is None  # no threshold
    check = DomainCheck(distance=1.0, threshold=2.0)
    assert check.in_domain and check.message.startswith("inside")


def test_domain_annotations_from_inverse_data_splits():
    rng = np.random.default_rng(1)

    def split(n):
        el = np.array(["Cu"] * n + ["V"] * n)
        os_ = np.where(el == "Cu", 2.0, rng.choice([3.0, 5.0], 2 * n))
        return SimpleNamespace(spectra=_spectra(rng, 2 * n), element=el, labels={"OS": os_})

    ann = domain_annotations({"train": split(50), "val": split(10)}, ["OS"])
    assert ann["allowed_classes"] == {"Cu": {"OS": [2.0]}, "V": {"OS": [3.0, 5.0]}}
    assert ann["domain"]["threshold"] > 0 and set(ann["domain"]["calibration"]["in_domain"]) == {
        "train",
        "val",
    }
    with pytest.raises(ModelError, match="no 'train' split"):
        domain_annotations({"val": split(5)}, ["OS"])
    with pytest.raises(ModelError, match=">= 2 spectra"):
        fit_domain({"Cu": np.ones((1, 10))})
