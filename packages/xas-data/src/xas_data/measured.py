"""Readers for measured X-ray absorption spectra (parsing only, no normalisation).

Five sources are supported:

- ``read_xaslib_json``: the XAS Data Library K-edge export (a JSON list of records with
  ``energy`` [eV] and ``mu_raw`` = ln(i0/it) plus sample metadata),
- ``read_xdi``: one XDI 1.0 text file (``# XDI/1.0`` header, ``# Column.N:`` labels,
  numeric rows); mu is taken from a mu column or computed from intensities,
- ``read_two_column``: plain text with energy and mu columns (``#``/``;`` comments, optional
  header line, whitespace or comma separated, decimal commas); Athena/ifeffit column labels
  (``# e norm nbkg flat``, ``# energy mu``) choose the mu column, and files that hold already
  normalised mu (an ``.nor`` file, a ``norm``/``flat`` column, or data whose pre-edge is near
  0 and post-edge near 1) are marked ``metadata["normalized"] = True``,
- ``read_athena_project``: an Athena project (``.prj``) through xraylarch's ``read_athena``;
  every group becomes one spectrum with its own label.

Every reader returns spectra with energies in eV, sorted ascending, exact duplicate energy
points removed (the first occurrence in the file is kept) and finite values only.
Normalisation, alignment and edge-step handling are done elsewhere.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xas_data.errors import SpectrumError

__all__ = [
    "MeasuredSpectrum",
    "read_xaslib_json",
    "read_xdi",
    "read_two_column",
    "read_athena_project",
    "looks_normalized",
    "KEV_THRESHOLD",
]

KEV_THRESHOLD = 100.0
"""Energies whose values are all below this are taken to be in keV and converted to eV."""

_ELEMENT_RE = re.compile(r"^[A-Z][a-z]?$")
_XDI_FIELD_RE = re.compile(r"^#\s*([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\s*:\s*(.*?)\s*$")
_SPLIT_RE = re.compile(r"[\s,;]+")

# XDI mu columns, in order of preference, with what they hold.
_XDI_MU_COLUMNS: tuple[tuple[str, str], ...] = (
    ("mutrans", "mu (transmission) from the file"),
    ("mufluor", "mu (fluorescence) from the file"),
    ("mu", "mu from the file"),
    ("normtrans", "normalized mu (transmission) from the file"),
    ("normfluor", "normalized mu (fluorescence) from the file"),
)


@dataclass
class MeasuredSpectrum:
    """One measured absorption spectrum.

    Attributes:
        energy: photon energies in eV, shape [n], float64, strictly increasing.
        mu: absorption, shape [n], float64 (arbitrary units; ``ln(i0/it)`` when computed
            from transmission intensities, ``ifluor/i0`` from fluorescence). Not normalised.
        element: absorbing element symbol, e.g. ``"Cu"``.
        edge: absorption edge, e.g. ``"K"``.
        name: sample name (or the file name when the file gives none).
        formula: chemical formula, or ``""`` when unknown.
        metadata: free-form provenance: ``source_file``, ``beamline``, ``facility``,
            ``temperature``, ``sample``, how mu was obtained (``mu_source``), ...
    """

    energy: np.ndarray
    mu: np.ndarray
    element: str
    edge: str = "K"
    name: str = ""
    formula: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.energy = np.asarray(self.energy, dtype=np.float64)
        self.mu = np.asarray(self.mu, dtype=np.float64)
        label = self.name or "measured spectrum"
        if self.energy.ndim != 1 or self.mu.ndim != 1 or self.energy.shape != self.mu.shape:
            raise SpectrumError(
                f"{label}: energy and mu must be 1-D arrays of equal length, got shapes "
                f"{self.energy.shape} and {self.mu.shape}; pass one value of mu per energy"
            )

    def __len__(self) -> int:
        """Number of energy points n."""
        return int(self.energy.shape[0])


def _clean(
    energy: np.ndarray, mu: np.ndarray, label: str, metadata: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Check finiteness, convert keV to eV, sort ascending and drop duplicate energies.

    Args:
        energy: energies, shape [n] (eV, or keV when every value is below KEV_THRESHOLD).
        mu: absorption, shape [n].
        label: names the file/record in error messages.
        metadata: updated in place with what was changed.

    Returns:
        (energy [m] in eV strictly increasing, mu [m]) with m <= n.
    """
    energy = np.asarray(energy, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    if energy.shape != mu.shape or energy.ndim != 1:
        raise SpectrumError(
            f"{label}: energy and mu have different lengths ({energy.size} vs {mu.size}); "
            "fix the data so every energy has one mu value"
        )
    if energy.size < 2:
        raise SpectrumError(
            f"{label}: only {energy.size} data point(s); a spectrum needs at least 2 points"
        )
    bad_e = ~np.isfinite(energy)
    if bad_e.any():
        raise SpectrumError(
            f"{label}: {int(bad_e.sum())} energy value(s) are NaN or infinite (first at point "
            f"{int(np.argmax(bad_e))}); remove or fix those rows"
        )
    bad_mu = ~np.isfinite(mu)
    if bad_mu.any():
        raise SpectrumError(
            f"{label}: {int(bad_mu.sum())} mu value(s) are NaN or infinite (first at energy "
            f"{energy[int(np.argmax(bad_mu))]:g}); remove those rows or, for intensities, "
            "check that i0 and itrans are positive"
        )
    if float(np.max(np.abs(energy))) < KEV_THRESHOLD:
        energy = energy * 1000.0
        metadata["energy_converted_from"] = "keV"
    if np.any(energy <= 0):
        raise SpectrumError(
            f"{label}: energies must be positive photon energies in eV (or keV); found "
            f"{float(energy.min()):g}. Relative energies (E - E0) are not accepted: add E0"
        )
    order = np.argsort(energy, kind="stable")
    if np.any(order != np.arange(order.size)):
        metadata["reordered_points"] = True
    energy, mu = energy[order], mu[order]
    keep = np.ones(energy.size, dtype=bool)
    keep[1:] = energy[1:] != energy[:-1]
    n_dup = int((~keep).sum())
    if n_dup:
        metadata["duplicate_energies_dropped"] = n_dup
        energy, mu = energy[keep], mu[keep]
    if energy.size < 2:
        raise SpectrumError(
            f"{label}: fewer than 2 distinct energies remain; a spectrum needs at least 2"
        )
    return energy, mu


def _check_element(symbol: Any, label: str, fix: str) -> str:
    """Return a clean element symbol or raise SpectrumError."""
    text = str(symbol).strip() if symbol is not None else ""
    text = text[:1].upper() + text[1:].lower()
    if not _ELEMENT_RE.match(text):
        raise SpectrumError(f"{label}: element {symbol!r} is not an element symbol; {fix}")
    return text


# --------------------------------------------------------------------------- XAS Data Library


def read_xaslib_json(path: str | Path) -> list[MeasuredSpectrum]:
    """Read the XAS Data Library JSON export.

    The file is a JSON list of records, each a dict with ``file`` (the library's XDI path),
    ``element``, ``edge``, ``sample``, ``formula``, ``temperature``, ``beamline``,
    ``facility``, ``energy`` (list of n floats, eV) and ``mu_raw`` (list of n floats,
    ln(i0/it), not normalised). ``mu`` is accepted in place of ``mu_raw``.

    Args:
        path: the JSON file.

    Returns:
        One ``MeasuredSpectrum`` per record, in file order (every record is kept); energies
        sorted ascending, exact duplicate energies dropped (first kept).

    Raises:
        SpectrumError: unreadable file, a record without energy/mu or element, or
            non-finite values; the message names the record.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpectrumError(f"cannot read {path} ({exc}); check the path") from exc
    except json.JSONDecodeError as exc:
        raise SpectrumError(f"{path} is not valid JSON ({exc}); re-export the file") from exc
    if isinstance(data, dict) and isinstance(data.get("spectra"), list):
        data = data["spectra"]
    if not isinstance(data, list):
        raise SpectrumError(
            f"{path}: expected a JSON list of spectrum records, got {type(data).__name__}; "
            "use the XAS Data Library K-edge export (one record per spectrum)"
        )
    spectra: list[MeasuredSpectrum] = []
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise SpectrumError(
                f"{path}: record {index} is a {type(record).__name__}, not an object; "
                "each record must hold energy, mu_raw, element, ..."
            )
        source = record.get("file") or record.get("sample") or ""
        label = f"{path}, record {index}" + (f" ({source})" if source else "")
        energy = record.get("energy")
        mu_key = "mu_raw" if record.get("mu_raw") is not None else "mu"
        mu = record.get(mu_key)
        if energy is None or mu is None:
            missing = [k for k, v in (("energy", energy), ("mu_raw", mu)) if v is None]
            raise SpectrumError(
                f"{label}: missing {', '.join(missing)}; every record needs 'energy' (eV) "
                "and 'mu_raw' (or 'mu') lists of equal length"
            )
        try:
            energy_arr = np.asarray(energy, dtype=np.float64)
            mu_arr = np.asarray(mu, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise SpectrumError(
                f"{label}: 'energy'/'{mu_key}' must be lists of numbers ({exc}); fix the record"
            ) from exc
        element = _check_element(
            record.get("element"), label, "give the absorber symbol in 'element', e.g. 'Cu'"
        )
        metadata: dict[str, Any] = {
            "source_file": str(path),
            "record_index": index,
            "mu_source": f"'{mu_key}' field" + (" = ln(i0/it)" if mu_key == "mu_raw" else ""),
        }
        for key, value in record.items():
            if key in ("energy", "mu_raw", "mu") or isinstance(value, (list, dict)):
                continue
            metadata["xdi_file" if key == "file" else key] = value
        energy_arr, mu_arr = _clean(energy_arr, mu_arr, label, metadata)
        name = str(record.get("sample") or "").strip() or (
            Path(str(source)).stem if source else f"record {index}"
        )
        spectra.append(
            MeasuredSpectrum(
                energy=energy_arr,
                mu=mu_arr,
                element=element,
                edge=str(record.get("edge") or "K").strip(),
                name=name,
                formula=str(record.get("formula") or "").strip(),
                metadata=metadata,
            )
        )
    return spectra


# --------------------------------------------------------------------------- XDI


def _parse_floats(tokens: list[str]) -> list[float] | None:
    """Parse tokens as floats; None when any token is not a number."""
    try:
        return [float(t) for t in tokens]
    except ValueError:
        return None


def read_xdi(path: str | Path, element: str | None = None) -> MeasuredSpectrum:
    """Read one XDI 1.0 file.

    Header lines start with ``#``: the first is ``# XDI/1.0 ...``; fields look like
    ``# Namespace.tag: value`` (``Element.symbol``, ``Element.edge``, ``Column.N``,
    ``Sample.name``, ``Sample.formula``, ``Facility.name``, ``Beamline.name``,
    ``Sample.temperature``, ...); ``# ///`` starts free comments and ``#----`` ends the
    header, optionally followed by a ``# energy i0 itrans`` column-label line. Numeric rows
    follow.

    mu is taken from the first column named ``mutrans``, ``mufluor``, ``mu``, ``normtrans``
    or ``normfluor``; otherwise ``ln(i0/itrans)``; otherwise ``ifluor/i0``. Energies are
    converted from keV to eV when the column unit says keV or all values are below 100.

    Args:
        path: the XDI file.
        element: absorber symbol to use when the header has no ``Element.symbol``.

    Returns:
        The spectrum: energy [n] in eV (ascending, unique), mu [n]; ``metadata`` holds the
        header fields (``xdi_header``), column names, facility, beamline, temperature.

    Raises:
        SpectrumError: not an XDI file, no energy column, no usable intensity columns,
            ragged or non-numeric rows, missing element, non-finite mu; the file is named.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise SpectrumError(f"cannot read XDI file {path} ({exc}); check the path") from exc

    first = next((ln.strip() for ln in lines if ln.strip()), "")
    if not re.match(r"^#\s*XDI/", first, flags=re.IGNORECASE):
        raise SpectrumError(
            f"{path} is not an XDI file: its first line must start with '# XDI/1.0' "
            f"(found {first[:60]!r}); use read_two_column for plain text"
        )

    header: dict[str, str] = {}
    columns: dict[int, tuple[str, str]] = {}  # 1-based index -> (name, unit)
    comments: list[str] = []
    label_line: list[str] | None = None
    rows: list[list[float]] = []
    in_comments = False
    after_separator = False
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if rows:
                continue  # comment between data rows: ignore
            body = line.lstrip("#").strip()
            if body.startswith("----"):
                after_separator, in_comments = True, False
                continue
            if body.startswith("///"):
                in_comments = True
                continue
            if after_separator:
                if body and label_line is None:
                    label_line = body.split()
                continue
            match = _XDI_FIELD_RE.match(line)
            if match and not in_comments:
                namespace, tag, value = match.groups()
                key = f"{namespace.lower()}.{tag.lower()}"
                header[key] = value
                if namespace.lower() == "column" and tag.isdigit():
                    parts = value.split()
                    if parts:
                        columns[int(tag)] = (parts[0].lower(), " ".join(parts[1:]))
            elif in_comments and body:
                comments.append(body)
            continue
        values = _parse_floats(_SPLIT_RE.split(line))
        if values is None:
            raise SpectrumError(
                f"{path}, line {lineno}: data row {line[:60]!r} is not numeric; comment it "
                "out with '#' or fix the value"
            )
        if rows and len(values) != len(rows[0]):
            raise SpectrumError(
                f"{path}, line {lineno}: {len(values)} values, but the first data row has "
                f"{len(rows[0])}; every row needs the same number of columns"
            )
        rows.append(values)

    if not rows:
        raise SpectrumError(f"{path}: no numeric data rows after the header; add the data")
    table = np.asarray(rows, dtype=np.float64)  # [n_rows, n_columns]
    n_cols = table.shape[1]

    names: list[str]
    units: list[str] = [""] * n_cols
    if columns:
        names = [f"col{i + 1}" for i in range(n_cols)]
        for idx, (name, unit) in columns.items():
            if 1 <= idx <= n_cols:
                names[idx - 1], units[idx - 1] = name, unit
    elif label_line:
        names = [n.lower() for n in label_line[:n_cols]]
        names += [f"col{i + 1}" for i in range(len(names), n_cols)]
    else:
        raise SpectrumError(
            f"{path}: no column labels; add '# Column.1: energy eV', '# Column.2: i0', ... "
            "to the header (or a '# energy i0 itrans' line after '#----')"
        )

    def col(*candidates: str) -> int | None:
        for cand in candidates:
            if cand in names:
                return names.index(cand)
        return None

    i_energy = col("energy")
    if i_energy is None:
        i_energy = next((i for i, n in enumerate(names) if n.startswith("energy")), None)
    if i_energy is None:
        raise SpectrumError(
            f"{path}: no energy column (columns: {', '.join(names)}); label the energy column "
            "'energy' (e.g. '# Column.1: energy eV'); angle-only files must be converted first"
        )
    energy = table[:, i_energy]
    metadata: dict[str, Any] = {"source_file": str(path), "columns": names}
    unit = units[i_energy].lower()
    if unit == "kev":
        energy = energy * 1000.0
        metadata["energy_converted_from"] = "keV"

    mu: np.ndarray | None = None
    for col_name, description in _XDI_MU_COLUMNS:
        i_mu = col(col_name)
        if i_mu is not None:
            mu = table[:, i_mu]
            metadata["mu_source"] = f"column '{col_name}': {description}"
            break
    if mu is None:
        i_i0, i_it, i_if = col("i0"), col("itrans", "it", "i1"), col("ifluor", "if")
        if i_i0 is not None and i_it is not None:
            i0, it = table[:, i_i0], table[:, i_it]
            nonpos = int(np.sum((i0 <= 0) | (it <= 0)))
            if nonpos:
                raise SpectrumError(
                    f"{path}: {nonpos} row(s) have i0 <= 0 or itrans <= 0, so ln(i0/itrans) "
                    "is undefined; remove those rows or provide a mutrans column"
                )
            mu = np.log(i0 / it)
            metadata["mu_source"] = "ln(i0/itrans)"
        elif i_i0 is not None and i_if is not None:
            i0 = table[:, i_i0]
            if np.any(i0 == 0):
                raise SpectrumError(
                    f"{path}: i0 is zero in {int(np.sum(i0 == 0))} row(s), so ifluor/i0 is "
                    "undefined; remove those rows or provide a mufluor column"
                )
            mu = table[:, i_if] / i0
            metadata["mu_source"] = "ifluor/i0"
        else:
            raise SpectrumError(
                f"{path}: no usable intensity columns (columns: {', '.join(names)}); need one "
                "of mutrans, mufluor, mu, normtrans, normfluor, or i0 with itrans, or i0 with "
                "ifluor"
            )

    symbol = header.get("element.symbol") or element
    if not symbol:
        raise SpectrumError(
            f"{path}: no '# Element.symbol:' header; add it (e.g. '# Element.symbol: Cu') or "
            "pass element='Cu'"
        )
    symbol = _check_element(symbol, str(path), "fix '# Element.symbol:' (e.g. 'Cu')")
    metadata.update(
        {
            "facility": header.get("facility.name", ""),
            "beamline": header.get("beamline.name", ""),
            "temperature": header.get("sample.temperature", ""),
            "sample": header.get("sample.name", ""),
            "xdi_header": dict(header),
        }
    )
    if comments:
        metadata["comments"] = comments
    energy, mu = _clean(energy, mu, str(path), metadata)
    return MeasuredSpectrum(
        energy=energy,
        mu=mu,
        element=symbol,
        edge=header.get("element.edge", "K").strip() or "K",
        name=header.get("sample.name", "").strip() or path.stem,
        formula=header.get("sample.formula", "").strip(),
        metadata=metadata,
    )


# --------------------------------------------------------------------------- two columns


#: Column labels (lower case) that hold already-normalised mu, in order of preference.
_NORMALISED_COLUMNS = ("norm", "flat", "normtrans", "normfluor", "nor")
#: Column labels (lower case) that hold raw mu, in order of preference.
_MU_COLUMNS = ("mu", "xmu", "xmu(trans)", "mutrans", "mufluor", "xmu(fluo)")
_DECIMAL_COMMA_RE = re.compile(r"^[\s\d,;eE+-]*\d,\d[\s\d,;eE+-]*$")


def looks_normalized(energy: np.ndarray, mu: np.ndarray, edge_ev: float | None = None) -> bool:
    """Whether ``mu`` [n] on ``energy`` [n] (eV) already looks edge-step normalised.

    True when the pre-edge (points 30+ eV below the edge, else the first 5 points) averages
    within 0.15 of 0 and the post-edge (points 50+ eV above it, else the last 10 %) within
    0.25 of 1, with no value above 2.5 (raw ``ln(i0/it)`` has an offset and a step far from
    1). ``edge_ev`` defaults to the energy of the steepest rise.
    """
    e, y = np.asarray(energy, float), np.asarray(mu, float)
    if e.size < 20 or float(np.max(np.abs(y))) > 2.5:
        return False
    if edge_ev is None:
        edge_ev = float(e[int(np.argmax(np.gradient(y, e)))])
    pre, post = y[e < edge_ev - 30.0], y[e > edge_ev + 50.0]
    pre = pre if pre.size >= 3 else y[:5]
    post = post if post.size >= 3 else y[-max(3, e.size // 10) :]
    return abs(float(np.mean(pre))) < 0.15 and abs(float(np.mean(post)) - 1.0) < 0.25


def _column_labels(comments: list[str], n_columns: int) -> list[str]:
    """Labels of the data columns from the last comment line with ``n_columns`` words."""
    for line in reversed(comments):
        words = line.lstrip("#;%! ").split()
        if len(words) == n_columns and not _parse_floats(words):
            return [w.lower() for w in words]
    return []


def read_two_column(
    path: str | Path, element: str, name: str | None = None, edge: str = "K"
) -> MeasuredSpectrum:
    """Read a plain-text spectrum with columns energy, mu.

    Lines starting with ``#`` (or ``%``, ``!``, ``;``) are comments; values may be separated
    by whitespace, commas or semicolons; a file whose numbers are written with decimal commas
    (``6862,267 -0,00126``) is read as such. Non-numeric lines before the first data row are
    taken as a header and skipped. The energy is the first column. mu is the second column,
    unless the last comment line before the data labels the columns (Athena/ifeffit style,
    ``#   e  norm  nbkg  flat``): then the first of ``norm``, ``flat``, ... (normalised) or
    ``mu``, ``xmu``, ... (raw) is used. Energies below 100 everywhere are taken to be keV.

    A spectrum is marked ``metadata["normalized"] = True`` (with ``normalized_reason``) when
    its column is a normalised one, the file is an ``.nor`` file, or the values already look
    normalised (:func:`looks_normalized`); processing then keeps that normalisation.

    Args:
        path: the text file.
        element: absorbing element symbol, e.g. ``"Ti"``.
        name: spectrum name (default: the file stem).
        edge: absorption edge (default ``"K"``).

    Returns:
        The spectrum: energy [n] in eV (ascending, unique), mu [n].

    Raises:
        SpectrumError: fewer than two columns, non-numeric data rows, non-finite values;
            the file and line are named.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise SpectrumError(f"cannot read spectrum file {path} ({exc}); check the path") from exc
    label = str(path)
    symbol = _check_element(element, label, "pass the absorber symbol, e.g. element='Ti'")
    data_lines = [ln for ln in lines if ln.strip() and ln.strip()[0] not in "#%!;"]
    # decimal commas: no '.' anywhere in the last data rows, a digit,digit in each of them
    decimal_comma = bool(data_lines) and all(
        "." not in ln and _DECIMAL_COMMA_RE.match(ln) and re.search(r"\s", ln.strip())
        for ln in data_lines[-5:]
    )
    rows: list[list[float]] = []
    header: list[str] = []
    comments: list[str] = []
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line[0] in "#%!;":
            if not rows:
                comments.append(line)
            continue
        if decimal_comma:
            line = line.replace(",", ".")
        tokens = [t for t in _SPLIT_RE.split(line) if t]
        values = _parse_floats(tokens)
        if values is None:
            if not rows:
                header.append(line)
                continue
            raise SpectrumError(
                f"{path}, line {lineno}: {line[:60]!r} is not numeric; comment it out with '#'"
            )
        if len(values) < 2:
            raise SpectrumError(
                f"{path}, line {lineno}: {len(values)} value(s); each row needs energy and mu"
            )
        rows.append(values)
    if not rows:
        raise SpectrumError(f"{path}: no numeric rows with energy and mu; check the file")
    n_columns = max(len(r) for r in rows)
    metadata: dict[str, Any] = {"source_file": label, "n_columns": n_columns}
    labels = _column_labels(comments, min(len(r) for r in rows))
    i_mu, normalized_by = 1, ""
    if labels:
        metadata["columns"] = labels
        found = [c for c in (*_NORMALISED_COLUMNS, *_MU_COLUMNS) if c in labels[1:]]
        if found:
            i_mu = labels.index(found[0])
            if found[0] in _NORMALISED_COLUMNS:
                normalized_by = f"column '{found[0]}' holds normalised mu"
        metadata["mu_source"] = f"column '{labels[i_mu]}'"
    if decimal_comma:
        metadata["decimal_comma"] = True
    if header:
        metadata["header"] = header
    energy_arr, mu_arr = _clean(
        np.asarray([r[0] for r in rows]), np.asarray([r[i_mu] for r in rows]), label, metadata
    )
    if not normalized_by and path.suffix.lower() == ".nor":
        normalized_by = "an Athena .nor file holds normalised mu"
    if not normalized_by and looks_normalized(energy_arr, mu_arr):
        normalized_by = "pre-edge near 0 and post-edge near 1: the data are already normalised"
    if normalized_by:
        metadata["normalized"] = True
        metadata["normalized_reason"] = normalized_by
    return MeasuredSpectrum(
        energy=energy_arr,
        mu=mu_arr,
        element=symbol,
        edge=edge,
        name=name if name is not None else path.stem,
        formula="",
        metadata=metadata,
    )


# --------------------------------------------------------------------------- Athena projects


def _athena_groups(path: Path):
    """(group name, larch Group) pairs of an Athena project, in file order."""
    try:
        from larch.io import read_athena
    except ImportError as exc:  # pragma: no cover - the 'larch' extra is installed in dev
        raise SpectrumError(
            f"{path}: reading Athena projects needs xraylarch; pip install 'xas-data[larch]'"
        ) from exc
    try:
        project = read_athena(str(path), do_preedge=False, do_bkg=False, do_fft=False)
    except Exception as exc:
        raise SpectrumError(
            f"{path} is not a readable Athena project ({type(exc).__name__}: {exc}); "
            "re-save it from Athena"
        ) from exc
    groups = list(getattr(project, "groups", {}).items())
    if not groups:
        raise SpectrumError(f"{path}: the Athena project holds no groups; save it with data")
    return groups


def _athena_element(group: Any) -> str:
    """The absorber Athena recorded for a group (``bkg.z``), or ""."""
    bkg = getattr(getattr(group, "athena_params", None), "bkg", None)
    return str(getattr(bkg, "z", "") or "")


def _project_element(path: Path, groups: list) -> str:
    """Most common ``bkg.z`` of the groups whose K edge lies inside their data; without any,
    the element whose K edge is nearest the steepest rise of the first group with data (within
    20 eV: an L edge, e.g. La L3 at 5483 eV, 18 eV from V K, stays unrecognised only beyond)."""
    from xas_data.edges import K_EDGE_EV, nearest_k_edge

    def plausible(z: str, group: Any) -> bool:  # a K edge inside the group's energies
        energy = getattr(group, "energy", None)
        if z not in K_EDGE_EV or energy is None or len(energy) < 3:
            return False
        return float(np.nanmin(energy)) < K_EDGE_EV[z] < float(np.nanmax(energy))

    guesses = Counter(z for _, g in groups if plausible(z := _athena_element(g), g))
    if guesses:
        return guesses.most_common(1)[0][0]
    for _, group in groups:
        energy, mu = getattr(group, "energy", None), getattr(group, "mu", None)
        if energy is None or mu is None or len(energy) < 3 or not np.isfinite(energy).all():
            continue
        e_rise = float(energy[int(np.argmax(np.gradient(mu, energy)))])
        symbol, e_tab = nearest_k_edge(e_rise)
        if abs(e_tab - e_rise) <= 20.0:
            return symbol
    raise SpectrumError(
        f"{path}: the project records no absorbing element and no K edge is recognisable in "
        "its data; pass the absorber (element='Zn', --element Zn)"
    )


def read_athena_project(
    path: str | Path, element: str | None = None, problems: list[str] | None = None
) -> list[MeasuredSpectrum]:
    """Read every group of an Athena project (``.prj``) with xraylarch's ``read_athena``.

    Each group with ``energy`` and ``mu`` arrays becomes one spectrum, named by its Athena
    label (or group name). The absorber is ``element`` when given, else the element Athena
    recorded for most groups (``bkg.z``; Athena guesses it per group from E0, so a single
    group's guess is not trusted): a group of another element is then refused at processing
    (its edge is not this element's K edge), not silently relabelled.

    Args:
        path: the ``.prj`` file.
        element: absorber symbol for every group (default: from the project, see above).
        problems: when given, a group that cannot be read (no energy/mu arrays, NaN energies)
            adds a one-line message here and the other groups are still read; when None the
            first such group raises.

    Returns:
        One ``MeasuredSpectrum`` per readable group, in project order; ``metadata`` holds
        ``source_file``, ``athena_group``, ``athena_label``, Athena's ``athena_e0`` and
        ``athena_element``.

    Raises:
        SpectrumError: not an Athena project, no groups, no element, or (``problems`` is
            None) a bad group; the file and group are named.
    """
    path = Path(path)
    groups = _athena_groups(path)
    if element is None:
        element = _project_element(path, groups)
    symbol = _check_element(element, str(path), "pass the absorber symbol, e.g. element='Fe'")
    spectra: list[MeasuredSpectrum] = []
    for group_name, group in groups:
        label = " ".join(str(getattr(group, "label", "") or group_name).split())
        where = f"{path}, group {label!r}"
        try:
            energy, mu = getattr(group, "energy", None), getattr(group, "mu", None)
            if energy is None or mu is None:
                raise SpectrumError(
                    f"{where}: no energy/mu arrays (Athena data type "
                    f"{getattr(group, 'datatype', '?')!r}); only mu(E) groups are ingested"
                )
            bkg = getattr(getattr(group, "athena_params", None), "bkg", None)
            metadata: dict[str, Any] = {
                "source_file": str(path),
                "athena_group": str(group_name),
                "athena_label": label,
                "athena_element": _athena_element(group),
                "athena_e0": float(getattr(bkg, "e0", np.nan) or np.nan),
                "mu_source": "Athena group mu",
            }
            energy, mu = _clean(np.asarray(energy), np.asarray(mu), where, metadata)
        except SpectrumError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
            continue
        spectra.append(
            MeasuredSpectrum(
                energy=energy, mu=mu, element=symbol, edge="K", name=label, metadata=metadata
            )
        )
    return spectra
