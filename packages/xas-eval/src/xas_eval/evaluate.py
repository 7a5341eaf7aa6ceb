"""Re-evaluate a published checkpoint on a dataset and compare with its model card.

The model consumes the dataset's stored features whose key equals the checkpoint's featurizer
key (``key1+key2`` for concatenated features), so no featurizer runs here. eta uses the
baseline stored in the checkpoint (``training_data.baseline_spectra``, the mean training
spectrum per element) when present, else the mean of the dataset's ``train`` split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xas_eval.predictions import Predictions


@dataclass
class CardCheck:
    """A re-evaluated metric next to the value in the model card."""

    element: str
    metric: str
    card: float | None
    measured: float

    @property
    def matches(self) -> bool:
        return self.card is not None and abs(self.card - self.measured) <= 1e-4 * max(
            1.0, abs(self.card)
        )


def _load(model: str, version: str, zoo: str | None):
    import xas_models

    if (Path(model) / "model.json").is_file():
        return xas_models.load_checkpoint(model)
    return xas_models.load_pretrained(model, version=version, zoo=zoo)


def _open(dataset: str):
    from xas_data import open_default_dataset
    from xas_data.store import XASDataset

    return open_default_dataset() if dataset == "default" else XASDataset.open(dataset)


def evaluate_checkpoint(
    model: str,
    dataset: str,
    split: str = "test",
    *,
    version: str = "latest",
    zoo: str | None = None,
) -> tuple[list[Predictions], list[CardCheck]]:
    """Predictions of ``model`` (zoo name or checkpoint folder) on ``split`` of ``dataset``
    (a store path or ``default``) for each of its elements, and the card comparison.

    Raises:
        ValueError: the dataset lacks the model's features or fidelity, or no element of the
            model has spectra in the split.
    """
    import torch

    module, meta = _load(model, version, zoo)
    ds = _open(dataset)
    keys = meta.featurizer.key.split("+") if meta.featurizer.key else []
    missing = [k for k in keys if not ds.has_features(k)]
    if not keys or missing:
        raise ValueError(
            f"{ds.path} lacks the features {missing or meta.featurizer.key!r} this model was "
            f"trained on; compute them with xas-features featurize --featurizer "
            f"{meta.featurizer.name}"
        )
    baselines = meta.training_data.get("baseline_spectra", {})
    preds: list[Predictions] = []
    checks: list[CardCheck] = []
    for element in meta.elements:
        if (element, meta.fidelity) not in ds.groups():
            continue
        sel = ds.select(element, meta.fidelity, split)
        if len(sel) == 0:
            continue
        x = np.concatenate([sel.features(k) for k in keys], axis=1).astype(np.float32)
        with torch.no_grad():
            y_pred = module.eval()(torch.from_numpy(x)).numpy()
        if element in baselines:
            mean = np.asarray(baselines[element], dtype=np.float64)
        else:
            mean = ds.select(element, meta.fidelity, "train").intensities().mean(axis=0)
        cols = sel.sites()
        mids = ds.material_ids[cols["material"]]
        p = Predictions(
            y_true=sel.intensities().astype(np.float64),
            y_pred=y_pred.astype(np.float64),
            y_train_mean=mean,
            energy=sel.energy,
            site_ids=np.array(
                [f"{m}_{int(i):03d}" for m, i in zip(mids, cols["index"], strict=True)]
            ),
            model=Path(model).name,
            element=element,
            fidelity=meta.fidelity,
            split=split,
            features=meta.featurizer.key,
        )
        preds.append(p)
        for name, value in p.metrics().items():
            card = meta.metrics.get(f"{element}/{name}")
            checks.append(CardCheck(element, name, None if card is None else float(card), value))
    if not preds:
        raise ValueError(
            f"no {meta.elements} {meta.fidelity} spectra in the {split!r} split of {ds.path}"
        )
    return preds, checks
