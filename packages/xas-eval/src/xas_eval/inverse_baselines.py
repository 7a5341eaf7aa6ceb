"""Tree-ensemble baselines for the inverse problem: one scikit-learn model per descriptor,
trained on the (post-edge-normalised) spectrum as a K-dimensional feature vector.

``kind``: ``rf`` (RandomForest), ``et`` (ExtraTrees) or ``gb`` (GradientBoosting), as a
Classifier for classification descriptors and a Regressor for regression ones. Defaults:
200 trees for rf/et, 100 boosting stages for gb (learning rate 0.1, depth 3, sklearn
defaults otherwise); ``n_jobs = 1`` (pass ``n_jobs=-1`` to use every core). The seed fixes
every model (``random_state``), so two fits on the same data give the same predictions.

Per descriptor, rows with a NaN label are skipped; a descriptor with a single training class
(or a single distinct value) predicts that value; one without any label predicts NaN (it is
listed in ``skipped``). Gradient boosting classifiers grow one tree per class and stage,
so a descriptor with many classes (CN2 has ~35 on the default data) costs ~35x more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

DEFAULT_N_ESTIMATORS = {"rf": 200, "et": 200, "gb": 100}
"""Trees (rf, et) or boosting stages (gb) when ``n_estimators`` is not given."""

KINDS = ("rf", "et", "gb")


def _estimator(kind: str, task: str, seed: int, n_estimators: int, params: dict[str, Any]):
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    table = {
        ("rf", "classification"): RandomForestClassifier,
        ("rf", "regression"): RandomForestRegressor,
        ("et", "classification"): ExtraTreesClassifier,
        ("et", "regression"): ExtraTreesRegressor,
        ("gb", "classification"): GradientBoostingClassifier,
        ("gb", "regression"): GradientBoostingRegressor,
    }
    if (kind, task) not in table:
        raise ValueError(f"descriptor kind {task!r} unknown; use classification or regression")
    args: dict[str, Any] = {"n_estimators": n_estimators, "random_state": seed}
    if kind in ("rf", "et"):
        args["n_jobs"] = 1
    args.update(params)
    return table[(kind, task)](**args)


class TreeBaseline:
    """One tree ensemble per descriptor (see the module docstring).

    Args:
        kind: ``rf``, ``et`` or ``gb``.
        seed: ``random_state`` of every model.
        n_estimators: trees / stages (default :data:`DEFAULT_N_ESTIMATORS`).
        **params: further keyword arguments for every scikit-learn estimator (e.g.
            ``max_depth``, ``n_jobs``, ``class_weight`` for rf/et classifiers).

    Attributes (after :meth:`fit`):
        models_: descriptor -> fitted estimator (absent for constant / unlabelled ones).
        constants_: descriptor -> the value predicted for single-class descriptors.
        classes_: classification descriptor -> class values, the column order of
            :meth:`predict_proba`.
        kinds_: descriptor -> classification / regression.
        skipped: descriptors without any training label (they predict NaN).
        n_train_: descriptor -> number of labelled training rows.
        fit_seconds_: descriptor -> training time in seconds.
    """

    def __init__(
        self, kind: str = "rf", seed: int = 0, n_estimators: int | None = None, **params: Any
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown baseline kind {kind!r}; use one of {KINDS}")
        self.kind = kind
        self.seed = int(seed)
        self.n_estimators = int(n_estimators or DEFAULT_N_ESTIMATORS[kind])
        if self.n_estimators < 1:
            raise ValueError("n_estimators must be >= 1")
        self.params = dict(params)
        self.models_: dict[str, Any] = {}
        self.constants_: dict[str, float] = {}
        self.classes_: dict[str, np.ndarray] = {}
        self.kinds_: dict[str, str] = {}
        self.skipped: list[str] = []
        self.n_train_: dict[str, int] = {}
        self.fit_seconds_: dict[str, float] = {}
        self.n_features_: int | None = None

    def __repr__(self) -> str:
        return (
            f"TreeBaseline(kind={self.kind!r}, seed={self.seed}, n_estimators={self.n_estimators})"
        )

    @property
    def names(self) -> list[str]:
        """Descriptors seen by :meth:`fit`, in order."""
        return list(self.kinds_)

    def _check_x(self, spectra: np.ndarray) -> np.ndarray:
        x = np.asarray(spectra, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"spectra must be [N, K], got shape {x.shape}")
        if self.n_features_ is not None and x.shape[1] != self.n_features_:
            raise ValueError(
                f"spectra have {x.shape[1]} points, the models were fitted on "
                f"{self.n_features_}; interpolate them onto the training grid"
            )
        return x

    def fit(
        self, spectra: np.ndarray, labels: Mapping[str, np.ndarray], kinds: Mapping[str, str]
    ) -> TreeBaseline:
        """Fit one model per descriptor in ``labels`` (kinds: name -> classification /
        regression) on spectra [N, K]; returns ``self``."""
        import time

        x = self._check_x(spectra)
        self.n_features_ = x.shape[1]
        self.models_, self.constants_, self.classes_ = {}, {}, {}
        self.kinds_, self.skipped, self.n_train_, self.fit_seconds_ = {}, [], {}, {}
        for name, values in labels.items():
            if name not in kinds:
                raise ValueError(f"no kind given for descriptor {name!r}; pass kinds[{name!r}]")
            task = kinds[name]
            y = np.asarray(values, dtype=np.float64).ravel()
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"{name}: {y.shape[0]} labels for {x.shape[0]} spectra")
            keep = np.isfinite(y)
            self.kinds_[name] = task
            self.n_train_[name] = int(keep.sum())
            t0 = time.perf_counter()
            if not keep.any():
                self.skipped.append(name)
                if task == "classification":
                    self.classes_[name] = np.array([], dtype=np.float64)
                continue
            distinct = np.unique(y[keep])
            if task == "classification":
                self.classes_[name] = distinct
            if distinct.size == 1:
                self.constants_[name] = float(distinct[0])
            else:
                model = _estimator(self.kind, task, self.seed, self.n_estimators, self.params)
                model.fit(x[keep], y[keep])
                self.models_[name] = model
                if task == "classification":
                    self.classes_[name] = np.asarray(model.classes_, dtype=np.float64)
            self.fit_seconds_[name] = time.perf_counter() - t0
        return self

    def _require_fitted(self) -> None:
        if self.n_features_ is None:
            raise ValueError("call fit(spectra, labels, kinds) before predicting")

    def predict(self, spectra: np.ndarray) -> dict[str, np.ndarray]:
        """Descriptor -> predicted values, float64 [N] (class values for classifications)."""
        self._require_fitted()
        x = self._check_x(spectra)
        out: dict[str, np.ndarray] = {}
        for name in self.kinds_:
            if name in self.models_:
                out[name] = np.asarray(self.models_[name].predict(x), dtype=np.float64)
            elif name in self.constants_:
                out[name] = np.full(x.shape[0], self.constants_[name])
            else:
                out[name] = np.full(x.shape[0], np.nan)
        return out

    def predict_proba(self, spectra: np.ndarray) -> dict[str, np.ndarray]:
        """Classification descriptor -> class probabilities [N, C], columns in the order of
        ``classes_[name]`` (a single-class descriptor gives a column of ones)."""
        self._require_fitted()
        x = self._check_x(spectra)
        out: dict[str, np.ndarray] = {}
        for name, task in self.kinds_.items():
            if task != "classification" or name in self.skipped:
                continue
            if name in self.models_:
                out[name] = np.asarray(self.models_[name].predict_proba(x), dtype=np.float64)
            else:
                out[name] = np.ones((x.shape[0], 1))
        return out

    def predict_std(self, spectra: np.ndarray) -> dict[str, np.ndarray]:
        """Regression descriptor -> standard deviation of the per-tree predictions [N]
        (rf/et only: an ensemble spread for :func:`~xas_eval.inverse_metrics.interval_coverage`;
        0 for constant descriptors)."""
        self._require_fitted()
        if self.kind == "gb":
            raise ValueError("gradient boosting has no ensemble spread; use kind='rf' or 'et'")
        x = self._check_x(spectra)
        out: dict[str, np.ndarray] = {}
        for name, task in self.kinds_.items():
            if task != "regression" or name in self.skipped:
                continue
            if name in self.models_:
                per_tree = np.stack([t.predict(x) for t in self.models_[name].estimators_])
                out[name] = per_tree.std(axis=0)
            else:
                out[name] = np.zeros(x.shape[0])
        return out


def majority_baseline(
    labels: Mapping[str, np.ndarray], kinds: Mapping[str, str], n: int
) -> dict[str, np.ndarray]:
    """Trivial predictions for ``n`` rows: the most frequent training class (smallest on a
    tie) for classifications, the training mean for regressions (NaN without labels)."""
    out: dict[str, np.ndarray] = {}
    for name, values in labels.items():
        y = np.asarray(values, dtype=np.float64)
        y = y[np.isfinite(y)]
        if y.size == 0:
            out[name] = np.full(n, np.nan)
        elif kinds[name] == "classification":
            classes, counts = np.unique(y, return_counts=True)
            out[name] = np.full(n, classes[np.argmax(counts)])
        else:
            out[name] = np.full(n, y.mean())
    return out
