"""A file format for model predictions on one evaluation split (one element and fidelity).

One ``.npz`` file (conventionally named ``predictions.npz``) holds the arrays

* ``y_true`` [N, K] and ``y_pred`` [N, K]: true and predicted spectra (mu(E), normalised);
* ``y_train_mean`` [K]: the mean training spectrum, the OmniXAS baseline prediction;
* ``energy`` [K]: the energy grid in eV (strictly increasing);
* ``site_ids`` [N]: unicode site identifiers such as ``"mp-123_004"`` (unique);

plus ``metadata``, a 0-d unicode array holding a JSON object (model label, element, fidelity,
split, features, run id, ``extra`` and the format version). No pickled objects are stored,
so files are read with ``np.load(..., allow_pickle=False)``.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xas_data.io_utils import atomic_write_bytes
from xas_eval import metrics as _m

FORMAT = "xas-eval/predictions"
FORMAT_VERSION = 1
FILENAME = "predictions.npz"
_ARRAYS = ("y_true", "y_pred", "y_train_mean", "energy", "site_ids")


@dataclass
class Predictions:
    """Model predictions on one evaluation split for one element/fidelity.

    Shapes: ``y_true``/``y_pred`` [N, K], ``y_train_mean`` [K], ``energy`` [K] (eV),
    ``site_ids`` [N] (str). Spectra are normalised mu(E) (dimensionless).
    """

    y_true: np.ndarray
    y_pred: np.ndarray
    y_train_mean: np.ndarray
    energy: np.ndarray
    site_ids: np.ndarray
    model: str
    element: str
    fidelity: str
    split: str = "test"
    features: str = ""
    run_id: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of spectra N."""
        return int(np.shape(self.y_true)[0])

    @property
    def label(self) -> str:
        """``"<model> <element> <fidelity> (<split>)"``, for messages."""
        return f"{self.model} {self.element} {self.fidelity} ({self.split})"

    def validate(self) -> None:
        """Check shapes, dtypes and metadata; convert arrays in place (float64 / unicode).

        Raises ``ValueError`` naming the problem and how to fix it.
        """
        where = f"Predictions[{self.label}]"
        for name in ("model", "element", "fidelity", "split", "features", "run_id"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"{where}: {name} must be a str, got {type(value).__name__}")
        for name in ("model", "element", "fidelity"):
            if not getattr(self, name).strip():
                raise ValueError(f"{where}: {name} is empty; pass a non-empty label")
        if not isinstance(self.extra, dict):
            raise ValueError(f"{where}: extra must be a dict, got {type(self.extra).__name__}")
        try:
            y_true = np.asarray(self.y_true, dtype=np.float64)
            y_pred = np.asarray(self.y_pred, dtype=np.float64)
            mean = np.asarray(self.y_train_mean, dtype=np.float64)
            energy = np.asarray(self.energy, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: spectra and energy must be numeric arrays ({exc})") from exc
        if y_true.ndim != 2 or y_true.shape[0] < 1 or y_true.shape[1] < 3:
            raise ValueError(
                f"{where}: y_true has shape {y_true.shape}; expected [N, K] with N >= 1 spectra "
                "and K >= 3 energy points (stack the spectra row-wise, one row per site)"
            )
        n, k = y_true.shape
        if y_pred.shape != (n, k):
            raise ValueError(
                f"{where}: y_pred has shape {y_pred.shape} but y_true has {y_true.shape}; "
                "predict one spectrum on the same energy grid for every true spectrum"
            )
        if mean.shape != (k,):
            hint = " (take .mean(axis=0) of the training spectra)" if mean.ndim == 2 else ""
            raise ValueError(
                f"{where}: y_train_mean has shape {mean.shape}; expected [K] = ({k},){hint}"
            )
        if energy.shape != (k,):
            raise ValueError(
                f"{where}: energy has shape {energy.shape}; expected [K] = ({k},), "
                "the grid (eV) the spectra are sampled on"
            )
        if not np.all(np.isfinite(energy)) or np.any(np.diff(energy) <= 0):
            raise ValueError(f"{where}: energy must be finite and strictly increasing (eV)")
        for name, arr in (("y_true", y_true), ("y_pred", y_pred), ("y_train_mean", mean)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(
                    f"{where}: {name} holds NaN or inf values; drop or repair those spectra"
                )
        site_ids = np.asarray(self.site_ids)
        if site_ids.dtype.kind not in "UO" or site_ids.shape != (n,):
            raise ValueError(
                f"{where}: site_ids has shape {site_ids.shape} and dtype {site_ids.dtype}; "
                f"expected [N] = ({n},) strings, one id per spectrum"
            )
        if site_ids.dtype.kind == "O":
            if not all(isinstance(s, str) for s in site_ids):
                raise ValueError(f"{where}: site_ids must all be str")
            site_ids = site_ids.astype(str)
        if len(np.unique(site_ids)) != n:
            uniq, counts = np.unique(site_ids, return_counts=True)
            dup = ", ".join(map(str, uniq[counts > 1][:5]))
            raise ValueError(f"{where}: site_ids are not unique (e.g. {dup}); one row per site")
        self.y_true, self.y_pred, self.y_train_mean = y_true, y_pred, mean
        self.energy, self.site_ids = energy, site_ids

    def baseline(self) -> np.ndarray:
        """The baseline prediction (mean training spectrum for every site), [N, K]."""
        return _m.baseline_prediction(np.atleast_2d(self.y_train_mean), self.n)

    def errors(self) -> np.ndarray:
        """Per-spectrum MSE ``J_i`` of the model, [N]."""
        return _m.per_spectrum_mse(self.y_true, self.y_pred)

    def baseline_errors(self) -> np.ndarray:
        """Per-spectrum MSE ``J_i`` of the baseline, [N]."""
        return _m.per_spectrum_mse(self.y_true, self.baseline())

    def metrics(self) -> dict[str, float]:
        """Summary metrics.

        ``n`` (spectra), ``eta`` (``xi_baseline / xi``), ``xi`` (median per-spectrum MSE),
        ``xi_baseline``, ``mean_rse``, ``median_pearson`` (median Pearson r over spectra,
        NaN-safe), ``mean_edge_error_ev`` (mean |E0(pred) - E0(true)|, eV), ``mse`` (mean
        squared error over all spectra and points), ``derivative_mse`` and ``curvature_mse``
        (mean over spectra of the first / second finite-difference error, per grid step).
        """
        self.validate()
        xi = float(np.median(self.errors()))
        xi_base = float(np.median(self.baseline_errors()))
        r = _m.pearson(self.y_true, self.y_pred)
        return {
            "n": self.n,
            "eta": xi_base / xi if xi > 0 else math.inf,
            "xi": xi,
            "xi_baseline": xi_base,
            "mean_rse": float(np.mean(_m.rse(self.y_true, self.y_pred))),
            "median_pearson": float(np.nanmedian(r)) if np.any(np.isfinite(r)) else math.nan,
            "mean_edge_error_ev": float(
                np.mean(_m.edge_energy_error(self.energy, self.y_true, self.y_pred))
            ),
            "mse": float(np.mean(self.errors())),
            "derivative_mse": float(np.mean(_m.derivative_mse(self.y_true, self.y_pred, 1))),
            "curvature_mse": float(np.mean(_m.derivative_mse(self.y_true, self.y_pred, 2))),
        }

    def _metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "element": self.element,
            "fidelity": self.fidelity,
            "split": self.split,
            "features": self.features,
            "run_id": self.run_id,
            "extra": self.extra,
        }

    def save(self, path: str | Path) -> Path:
        """Write the predictions to ``path`` atomically and return the file path.

        ``path`` is a file name (``.npz`` recommended) or an existing directory, in which case
        the file is ``path/predictions.npz``. Parent directories are created. The file is
        written to a temporary sibling and renamed over the target, so readers never see a
        partial file.
        """
        self.validate()
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        try:
            meta = json.dumps(self._metadata(), allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Predictions[{self.label}]: extra is not JSON-serialisable ({exc}); "
                "store only str, numbers, bools, None, lists and dicts in it"
            ) from exc
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            y_true=self.y_true,
            y_pred=self.y_pred,
            y_train_mean=self.y_train_mean,
            energy=self.energy,
            site_ids=np.asarray(self.site_ids, dtype=str),
            metadata=np.array(meta, dtype=str),
        )
        atomic_write_bytes(path, buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Predictions:
        """Read a file written by :meth:`save` (no pickle) and validate it."""
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        if not path.is_file():
            raise FileNotFoundError(f"no predictions file at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in (*_ARRAYS, "metadata") if k not in data.files]
                if missing:
                    raise ValueError(
                        f"{path} is not a predictions file (missing {', '.join(missing)}); "
                        "write it with xas_eval.Predictions(...).save(path)"
                    )
                arrays = {k: data[k] for k in _ARRAYS}
                meta = json.loads(str(data["metadata"]))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: metadata is not valid JSON ({exc})") from exc
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path} is not a readable .npz file ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{path}: metadata does not describe a {FORMAT} file")
        absent = [k for k in ("model", "element", "fidelity") if k not in meta]
        if absent:
            raise ValueError(f"{path}: metadata lacks {', '.join(absent)}")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{path}: format version {meta['format_version']} is newer than this xas-eval "
                f"reads ({FORMAT_VERSION}); upgrade xas-eval"
            )
        preds = cls(
            **arrays,
            model=meta["model"],
            element=meta["element"],
            fidelity=meta["fidelity"],
            split=meta.get("split", "test"),
            features=meta.get("features", ""),
            run_id=meta.get("run_id", ""),
            extra=meta.get("extra", {}),
        )
        try:
            preds.validate()
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        return preds


def find_predictions(paths: str | Path | Iterable[str | Path]) -> list[Predictions]:
    """Load predictions from files and folders.

    Each path is a predictions file, or a folder searched recursively for files named
    ``predictions.npz`` (in sorted order). A file reached twice is loaded once. Raises
    ``FileNotFoundError`` for a missing path or when no predictions file is found at all.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    seen: set[Path] = set()
    given = [Path(p) for p in paths]
    for p in given:
        if p.is_dir():
            found = sorted(p.rglob(FILENAME))
        elif p.is_file():
            found = [p]
        else:
            raise FileNotFoundError(f"{p} does not exist (expected a predictions file or folder)")
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    if not files:
        shown = ", ".join(map(str, given)) or "(no paths given)"
        raise FileNotFoundError(
            f"no {FILENAME} files found in {shown}; write them with Predictions.save(path)"
        )
    return [Predictions.load(f) for f in files]


def ensemble(members: Sequence[Predictions], model: str | None = None) -> Predictions:
    """The ensemble mean of several models' predictions on the same sites, [N, K].

    Members are matched by site id (their row orders may differ); they must share element,
    fidelity, energy grid and true spectra. The baseline (mean training spectrum) is the
    members' mean, which is identical when they were trained on the same split.
    """
    members = list(members)
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
    first = members[0]
    order = np.argsort(first.site_ids)
    ids = first.site_ids[order]
    preds, means = [], []
    for m in members:
        if (m.element, m.fidelity) != (first.element, first.fidelity):
            raise ValueError(
                f"ensemble members differ: {m.element}/{m.fidelity} vs "
                f"{first.element}/{first.fidelity}; combine predictions of one group"
            )
        if not np.allclose(m.energy, first.energy):
            raise ValueError("ensemble members have different energy grids; use one grid")
        o = np.argsort(m.site_ids)
        if not np.array_equal(m.site_ids[o], ids):
            raise ValueError(
                "ensemble members hold different site sets; evaluate them on the same split"
            )
        if not np.allclose(m.y_true[o], first.y_true[order]):
            raise ValueError("ensemble members disagree on the true spectra of the same sites")
        preds.append(m.y_pred[o])
        means.append(m.y_train_mean)
    return Predictions(
        y_true=first.y_true[order],
        y_pred=np.mean(preds, axis=0),
        y_train_mean=np.mean(means, axis=0),
        energy=first.energy,
        site_ids=ids,
        model=model or f"{first.model}-ensemble{len(members)}",
        element=first.element,
        fidelity=first.fidelity,
        split=first.split,
        features=first.features,
        extra={"members": [m.run_id or m.model for m in members]},
    )
