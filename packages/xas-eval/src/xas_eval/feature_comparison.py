"""Compare feature sets by the eta of a linear (ridge) regressor, as OmniXAS did.

For each stored feature set: standardise features on the training rows, fit ridge regression
(alpha chosen by 5-fold CV on the training rows from a log grid) from features to the
spectrum, predict the evaluation split, and report eta against the mean-training-spectrum
baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xas_eval.metrics import eta, median_error


@dataclass(frozen=True)
class RidgeResult:
    features: str
    dim: int
    alpha: float
    eta: float
    median_mse: float
    n_train: int
    n_eval: int


def ridge_eta(
    ds,
    element: str,
    fidelity: str,
    feature_key: str,
    train_split: str = "train",
    eval_split: str = "val",
    alphas: tuple[float, ...] = tuple(10.0 ** np.arange(-3, 4)),
) -> RidgeResult:
    """Eta of ridge regression on ``feature_key`` features of one (element, fidelity) group."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = ds.select(element, fidelity, train_split)
    test = ds.select(element, fidelity, eval_split)
    x_train, y_train = train.features(feature_key), train.intensities()
    x_test, y_test = test.features(feature_key), test.intensities()
    if not np.isfinite(x_test).all():
        raise ValueError(
            f"{feature_key}: {eval_split} rows have missing (NaN) features; finish "
            "featurizing the dataset (xas-features featurize) before comparing"
        )
    keep = np.isfinite(x_train).all(axis=1)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas, cv=5))
    model.fit(x_train[keep], y_train[keep])
    prediction = model.predict(x_test)
    return RidgeResult(
        feature_key,
        int(x_train.shape[1]),
        float(model[-1].alpha_),
        eta(y_test, prediction, y_train[keep]),
        median_error(y_test, prediction),
        int(keep.sum()),
        len(y_test),
    )
