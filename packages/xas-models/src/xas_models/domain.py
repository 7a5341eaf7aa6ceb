"""Where an inverse model may answer: the classes allowed per element and the training domain.

**Allowed classes.** An inverse model predicts, for a spectrum of element X, only the classes
(OS, CN, ...) that X can take; probabilities are renormalised over them and a regressed value
of a descriptor with classes (RankAAE OS / CN) more than 0.5 outside their range is clipped
into it, with a warning. The classes come,
first found wins, from:

1. ``training_data.allowed_classes[X]`` of the checkpoint: task -> the class values of X's
   sites in the training split (:func:`allowed_classes_from_labels`);
2. a single-element checkpoint: its tasks' classes (these are the training split's classes);
3. the chemical table: OS in :data:`OXIDATION_STATES` (the ICSD oxidation states of
   pymatgen's ``Element.icsd_oxidation_states``, pymatgen 2025.x; pymatgen itself for an
   element not listed), CN in :data:`CN_RANGE`; other tasks are not limited.

**Training domain.** The distance of a model input (the spectrum on the element's grid divided
by its post-edge level) from the training spectra is a Mahalanobis distance under a
probabilistic-PCA covariance (:func:`fit_domain`): per-element means, ``k`` principal
directions of the pooled within-element deviations with their variances ``lambda_i`` and an
isotropic rest ``sigma^2`` (the mean of the remaining eigenvalues)::

    c = x - mean[X];  p_i = v_i . c;  r = c - sum_i p_i v_i
    d = sqrt((sum_i p_i^2 / lambda_i + |r|^2 / sigma^2) / K)

(``d`` is about 1 for a typical training spectrum). :func:`calibrate_domain` sets the
threshold to the 99 % quantile of ``d`` over the training and holdout (val/test) spectra, so
99 % of them are in-domain; the statistics live in ``training_data.domain`` of the checkpoint.
A checkpoint without them is not checked (``domain`` None).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xas_models.errors import ModelError

#: ICSD oxidation states of the 3d elements (pymatgen ``Element.icsd_oxidation_states``): the
#: OS a K-edge site of that element is allowed when the checkpoint records no training classes.
OXIDATION_STATES: dict[str, tuple[int, ...]] = {
    "Sc": (2, 3),
    "Ti": (2, 3, 4),
    "V": (2, 3, 4, 5),
    "Cr": (2, 3, 4, 5, 6),
    "Mn": (2, 3, 4, 7),
    "Fe": (2, 3),
    "Co": (1, 2, 3, 4),
    "Ni": (1, 2, 3, 4),
    "Cu": (1, 2, 3),
    "Zn": (2,),
}

#: Coordination numbers allowed by the chemical table (inclusive range).
CN_RANGE: tuple[int, int] = (1, 12)

#: Default number of principal directions of :func:`fit_domain`.
DOMAIN_COMPONENTS = 8

#: Default share of training and holdout spectra inside the domain (:func:`calibrate_domain`).
DOMAIN_QUANTILE = 0.99

_SIG = 6  # significant digits of the statistics written to model.json


# --------------------------------------------------------------------------- allowed classes


def table_oxidation_states(element: str) -> tuple[int, ...]:
    """Oxidation states of ``element`` from :data:`OXIDATION_STATES`, else pymatgen's ICSD
    states (``()`` when neither knows it)."""
    if element in OXIDATION_STATES:
        return OXIDATION_STATES[element]
    try:
        from pymatgen.core import Element

        return tuple(int(v) for v in Element(element).icsd_oxidation_states)
    except Exception:  # no pymatgen or not an element: no limit
        return ()


def chemical_classes(element: str, tasks: Sequence[Any]) -> dict[str, tuple[float, ...]]:
    """Task name -> the classes of OS / CN tasks that the chemical table allows for
    ``element`` (other tasks and an element the table lacks: no entry)."""
    out: dict[str, tuple[float, ...]] = {}
    for task in tasks:
        classes = [float(c) for c in (task.classes or ())]
        if task.name == "OS" and table_oxidation_states(element):
            allowed = {float(v) for v in table_oxidation_states(element)}
            out["OS"] = tuple(c for c in classes if c in allowed)
        elif task.name == "CN" and classes:
            out["CN"] = tuple(c for c in classes if CN_RANGE[0] <= c <= CN_RANGE[1])
    return out


def allowed_classes(
    training_data: Mapping[str, Any], elements: Sequence[str], tasks: Sequence[Any], element: str
) -> tuple[dict[str, tuple[float, ...]], str]:
    """``(task -> allowed class values, source)`` for spectra of ``element`` (module
    docstring); ``source`` is ``"training data"`` or ``"chemical table"``. A task without an
    entry is not limited."""
    recorded = (training_data.get("allowed_classes") or {}).get(element)
    if recorded:
        return {k: tuple(float(c) for c in v) for k, v in recorded.items()}, "training data"
    if len(elements) == 1:
        single = {t.name: tuple(float(c) for c in t.classes) for t in tasks if t.classes}
        return single, "training data"
    return chemical_classes(element, tasks), "chemical table"


def allowed_classes_from_labels(
    labels: Mapping[str, np.ndarray], element: np.ndarray, names: Sequence[str]
) -> dict[str, dict[str, list[float]]]:
    """``element -> {task -> sorted class values}`` of the training labels (NaN = missing) of
    the classification tasks ``names``, for ``training_data.allowed_classes``."""
    element = np.asarray(element).astype(str)
    out: dict[str, dict[str, list[float]]] = {}
    for el in sorted(set(element.tolist())):
        rows = element == el
        out[el] = {}
        for name in names:
            v = np.asarray(labels[name], dtype=np.float64)[rows]
            out[el][name] = sorted({float(c) for c in v[np.isfinite(v)]})
    return out


def restrict_probabilities(
    proba: np.ndarray, classes: Sequence[float], allowed: Sequence[float]
) -> tuple[np.ndarray, list[float]]:
    """``(probabilities [N, C'] renormalised over the allowed classes, those classes)`` of
    ``proba [N, C]`` over ``classes``. ModelError when no class is allowed."""
    keep = [i for i, c in enumerate(classes) if float(c) in {float(a) for a in allowed}]
    if not keep:
        raise ModelError(f"none of the classes {list(classes)} is allowed ({list(allowed)})")
    sub = np.asarray(proba, dtype=np.float64)[:, keep]
    total = sub.sum(axis=1, keepdims=True)
    uniform = np.full_like(sub, 1.0 / len(keep))
    sub = np.where(total > 0, sub / np.where(total > 0, total, 1.0), uniform)
    return sub, [float(classes[i]) for i in keep]


# --------------------------------------------------------------------------- training domain


@dataclass(frozen=True)
class DomainCheck:
    """How far one spectrum lies from the model's training spectra.

    Attributes:
        distance: the PPCA Mahalanobis distance ``d`` (module docstring; ~1 in the domain).
        threshold: ``d`` above which a spectrum is outside the domain (the calibration
            quantile over training and holdout spectra).
        quantile: share of training/holdout spectra at or below ``threshold``.
        method: how ``distance`` is computed.
    """

    distance: float
    threshold: float
    quantile: float = DOMAIN_QUANTILE
    method: str = "ppca-mahalanobis"

    @property
    def in_domain(self) -> bool:
        """True when ``distance <= threshold``."""
        return bool(self.distance <= self.threshold)

    @property
    def message(self) -> str:
        """One line for a user: in or outside the training domain, with the numbers."""
        where = "inside" if self.in_domain else "OUTSIDE"
        text = (
            f"{where} the training domain (distance {self.distance:.2f}, threshold "
            f"{self.threshold:.2f} = {self.quantile:.0%} of training/holdout spectra)"
        )
        if not self.in_domain:
            text += "; the model extrapolates: treat the values with caution"
        return text


def _rounded(a: np.ndarray) -> list:
    return np.asarray([float(f"{v:.{_SIG}g}") for v in np.ravel(a)]).reshape(a.shape).tolist()


def fit_domain(
    spectra: Mapping[str, np.ndarray], n_components: int = DOMAIN_COMPONENTS
) -> dict[str, Any]:
    """PPCA statistics (module docstring) of training inputs ``element -> [n, K]`` (the
    model's inputs): per-element ``means``, pooled ``components`` ``[k, K]``, ``variances``
    ``[k]``, ``noise``; no threshold yet (:func:`calibrate_domain`)."""
    if not spectra:
        raise ModelError("no training spectra to fit the domain statistics on")
    arrays = {el: np.asarray(x, dtype=np.float64) for el, x in spectra.items()}
    widths = {x.shape[1] for x in arrays.values() if x.ndim == 2}
    if len(widths) != 1 or any(x.ndim != 2 or len(x) < 2 for x in arrays.values()):
        raise ModelError("domain statistics need >= 2 spectra [n, K] of one K per element")
    means = {el: x.mean(axis=0) for el, x in arrays.items()}
    dev = np.concatenate([x - means[el] for el, x in arrays.items()])
    _, s, vt = np.linalg.svd(dev, full_matrices=False)
    lam = s**2 / len(dev)
    k = max(1, min(n_components, len(dev) - 1, dev.shape[1] - 1))
    rest = float(lam[k:].sum()) / (dev.shape[1] - k)
    floor = 1e-9 * float(lam[0]) + 1e-30
    return {
        "method": "ppca-mahalanobis",
        "space": "model input: spectrum on the element grid / post-edge level",
        "n_components": k,
        "means": {el: _rounded(m) for el, m in sorted(means.items())},
        "components": _rounded(vt[:k]),
        "variances": _rounded(np.maximum(lam[:k], floor)),
        "noise": float(f"{max(rest, floor):.{_SIG}g}"),
    }


def domain_distance(domain: Mapping[str, Any], element: str, x: np.ndarray) -> np.ndarray:
    """Distances ``d [N]`` of inputs ``x [N, K]`` of ``element`` (ModelError when the
    statistics lack the element or have another K)."""
    if element not in domain["means"]:
        raise ModelError(f"the domain statistics hold no {element} spectra")
    mean = np.asarray(domain["means"][element], dtype=np.float64)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.shape[1] != mean.size:
        raise ModelError(f"spectra have {x.shape[1]} points, the domain statistics {mean.size}")
    v = np.asarray(domain["components"], dtype=np.float64)
    lam = np.asarray(domain["variances"], dtype=np.float64)
    c = x - mean
    p = c @ v.T
    r = c - p @ v
    d2 = (p**2 / lam).sum(axis=1) + (r**2).sum(axis=1) / float(domain["noise"])
    return np.sqrt(d2 / mean.size)


def calibrate_domain(
    domain: Mapping[str, Any],
    splits: Mapping[str, Mapping[str, np.ndarray]],
    quantile: float = DOMAIN_QUANTILE,
) -> dict[str, Any]:
    """``domain`` with ``threshold``: the ``quantile`` of the distances of every spectrum in
    ``splits`` (``split -> element -> inputs [n, K]``, e.g. train, val, test), and a
    ``calibration`` record (the share in-domain per split and element)."""
    dist = {
        s: {el: domain_distance(domain, el, x) for el, x in by_el.items() if len(x)}
        for s, by_el in splits.items()
    }
    pooled = np.concatenate([d for by_el in dist.values() for d in by_el.values()])
    if pooled.size == 0:
        raise ModelError("no spectra to calibrate the domain threshold on")
    threshold = float(np.quantile(pooled, quantile))
    share = {
        s: {el: round(float((d <= threshold).mean()), 4) for el, d in by_el.items()}
        for s, by_el in dist.items()
    }
    calibration = {"splits": sorted(splits), "n": int(pooled.size), "in_domain": share}
    return {
        **domain,
        "quantile": quantile,
        "threshold": float(f"{threshold:.{_SIG}g}"),
        "calibration": calibration,
    }


def check_domain(
    training_data: Mapping[str, Any], element: str, x: np.ndarray
) -> list[DomainCheck] | None:
    """One :class:`DomainCheck` per input row of ``x [N, K]`` of ``element``, or None when the
    checkpoint records no calibrated domain statistics for that element."""
    domain = training_data.get("domain")
    if not domain or "threshold" not in domain or element not in domain.get("means", {}):
        return None
    d = domain_distance(domain, element, x)
    q = float(domain.get("quantile", DOMAIN_QUANTILE))
    method = str(domain.get("method", "ppca-mahalanobis"))
    return [DomainCheck(float(v), float(domain["threshold"]), q, method) for v in d]


def _by_element(spectra: np.ndarray, element: np.ndarray) -> dict[str, np.ndarray]:
    element = np.asarray(element).astype(str)
    return {el: np.asarray(spectra)[element == el] for el in sorted(set(element.tolist()))}


def domain_annotations(
    splits: Mapping[str, Any],
    classification: Sequence[str],
    train: str = "train",
    n_components: int = DOMAIN_COMPONENTS,
    quantile: float = DOMAIN_QUANTILE,
) -> dict[str, Any]:
    """``{"allowed_classes": ..., "domain": ...}`` for a checkpoint's ``training_data``.

    ``splits``: split name -> an object with ``spectra [N, K]`` (the model inputs),
    ``element [N]`` and ``labels`` (name -> ``[N]``, NaN = missing), e.g.
    :class:`xas_eval.inverse_data.InverseData`. The allowed classes of the ``classification``
    tasks and the PPCA statistics come from the ``train`` split; the threshold is calibrated on
    every split."""
    if train not in splits:
        raise ModelError(f"no {train!r} split among {sorted(splits)}")
    base = splits[train]
    allowed = allowed_classes_from_labels(base.labels, base.element, classification)
    domain = fit_domain(_by_element(base.spectra, base.element), n_components)
    inputs = {name: _by_element(s.spectra, s.element) for name, s in splits.items()}
    return {"allowed_classes": allowed, "domain": calibrate_domain(domain, inputs, quantile)}
