"""``xas``: predict X-ray absorption spectra of structures with published models.

Commands: ``xas predict FILE... --model NAME`` and ``xas models``. Heavy libraries (torch,
pymatgen, the featurizers) are imported inside the commands so that ``--help`` answers at once.
Errors print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from xas_data.cli_errors import DebugOpt, GuardedGroup, set_debug

if TYPE_CHECKING:
    import numpy as np

    from xas_models.predict import StructurePrediction
    from xas_models.zoo import ZooEntry

T = TypeVar("T")

app = typer.Typer(
    cls=GuardedGroup,  # any error: one line on stderr, exit 2 (traceback with --debug)
    rich_markup_mode=None,
    help="Predict K-edge X-ray absorption spectra of crystal structures with models from the "
    "xas-models zoo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_OUT_SUFFIXES = (".csv", ".json")
#: metrics shown by ``xas models``, first found wins (mean over elements for "<El>/<metric>")
HEADLINE_METRICS = ("eta", "median_pearson", "mean_rse", "xi", "mse", "mae", "r2")
#: inverse models: the oxidation-state F1 (macro) over all test spectra, as SPT / RankAAE runs
#: record it, before any generic metric
INVERSE_HEADLINES = (("OS/all/f1_macro", "OS_f1"), ("OS_f1_macro", "OS_f1"))


@app.callback()
def _main(debug: Annotated[bool, DebugOpt] = False) -> None:
    """Predict spectra of structures and describe measured spectra with zoo models."""
    set_debug(debug)


def _fail(message: object) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``; user errors become one line on stderr and exit code 2. Zoo warnings are
    shown as ``warning:`` lines, other libraries' warnings are hidden."""
    from xas_data.errors import XASDataError
    from xas_models.zoo import ZooWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn(*args, **kwargs)
        except XASDataError as exc:
            _fail(exc)
        except OSError as exc:
            _fail(f"{exc}; check the path and its permissions")
        finally:
            for w in caught:
                if issubclass(w.category, ZooWarning):
                    typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
    return result


def edge_energy(energy: np.ndarray, mu: np.ndarray) -> float:
    """Edge energy E0 in eV: the energy of the maximum of the first derivative d mu / dE."""
    import numpy as np

    if len(energy) < 2:
        return float(energy[0])
    return float(energy[int(np.argmax(np.gradient(mu, energy)))])


def format_predictions(predictions: Sequence[StructurePrediction]) -> str:
    """Readable table: per structure/element one row per inequivalent site and the average,
    with multiplicity, edge energy E0 (eV), energy of the maximum (eV) and maximum of mu;
    ensembles add the mean and maximum over energy of the calibrated 1-sigma uncertainty."""
    import numpy as np

    lines: list[str] = []
    header = f"  {'site':>8} {'mult':>5} {'E0 (eV)':>10} {'peak (eV)':>10} {'max mu':>9}"
    for p in predictions:
        e = p.average_energy
        model = f"{p.model_name} {p.model_version}".strip()
        lines.append(
            f"{p.source} ({p.formula}), {p.element} {p.edge}-edge, model {model}, "
            f"{len(e)} points {e[0]:.2f}-{e[-1]:.2f} eV"
        )
        with_sigma = p.average_sigma is not None
        lines.append(header + (f" {'mean sigma':>10} {'max sigma':>9}" if with_sigma else ""))
        rows = [(str(s.site_index), s.multiplicity, s.energy, s.mu, s.sigma) for s in p.sites]
        rows.append(("average", p.n_sites, p.average_energy, p.average_mu, p.average_sigma))
        for site, mult, energy, mu, sigma in rows:
            k = int(np.argmax(mu))
            lines.append(
                f"  {site:>8} {mult:>5} {edge_energy(energy, mu):>10.2f} "
                f"{energy[k]:>10.2f} {mu[k]:>9.4f}"
                + (f" {sigma.mean():>10.4f} {sigma.max():>9.4f}" if with_sigma else "")
            )
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def headline_metric(metrics: dict[str, Any]) -> str:
    """The first of :data:`HEADLINE_METRICS` found in ``metrics`` (averaged over the
    per-element ``"<El>/<name>"`` values), e.g. ``eta=5.19``; for inverse models the OS F1
    macro (``OS_f1=0.593``); ``-`` if none."""
    for key, label in INVERSE_HEADLINES:
        if isinstance(metrics.get(key), int | float):
            return f"{label}={float(metrics[key]):.3g}"
    for name in HEADLINE_METRICS:
        values = [
            float(v)
            for k, v in metrics.items()
            if (k == name or k.endswith("/" + name))
            and isinstance(v, int | float)
            and not isinstance(v, bool)
        ]
        if values:
            mean = sum(values) / len(values)
            return f"{name}={mean:.3g}" + (f" (mean of {len(values)})" if len(values) > 1 else "")
    return "-"


def _baseline_flag(metrics: dict[str, Any]) -> str:
    """`` ! below baseline (eta < 1: Cu)`` for models worse than the mean spectrum."""
    from xas_models.zoo import below_baseline

    bad = below_baseline(metrics)
    return f"  ! below baseline (eta < 1: {', '.join(bad)})" if bad else ""


def format_models(entries: Sequence[ZooEntry]) -> str:
    """Table of zoo entries: name, version, elements, fidelity, featurizer, headline metric."""
    head = ("name", "version", "elements", "fidelity", "featurizer", "metric")
    rows = [head] + [
        (
            e.name,
            e.version,
            ",".join(e.elements),
            e.fidelity,
            e.featurizer.name,
            headline_metric(e.metrics) + _baseline_flag(e.metrics),
        )
        for e in entries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )


@app.command("predict")
def predict_cmd(
    files: Annotated[list[Path], typer.Argument(help="CIF or POSCAR files (lengths in Angstrom)")],
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="zoo model name (see 'xas models') or checkpoint folder"
        ),
    ],
    version: Annotated[
        str, typer.Option("--version", "-v", help="model version, or 'latest'")
    ] = "latest",
    element: Annotated[
        list[str] | None,
        typer.Option(
            "--element",
            "-e",
            help="absorbing element (repeatable); default: every element the model predicts",
        ),
    ] = None,
    zoo: Annotated[
        str | None,
        typer.Option(
            "--zoo", help="zoo folder or URL (default: $XAS_MODEL_ZOO, cache, $XAS_MODEL_ZOO_URL)"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write the spectra to a .csv or .json file")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="plot the spectra into an image (.png, .pdf...)")
    ] = None,
) -> None:
    """Predict the spectrum of every inequivalent absorbing site and their average."""
    if out is not None and out.suffix.lower() not in _OUT_SUFFIXES:
        _fail(f"--out {str(out)!r} must end in .csv or .json")
    for path, flag in ((out, "--out"), (plot, "--plot")):
        if path is not None and not path.parent.is_dir():
            _fail(f"{flag} {str(path)!r}: folder {str(path.parent)!r} does not exist; create it")
    from xas_models.predict import plot_predictions, predict, write_csv, write_json

    predictions = _run(
        predict,
        [str(f) for f in files],
        element=element or None,
        model=model,
        version=version,
        zoo=zoo,
    )
    typer.echo(format_predictions(predictions))
    if out is not None:
        writer = write_csv if out.suffix.lower() == ".csv" else write_json
        _run(writer, predictions, out)
        typer.echo(f"\nwrote {out}")
    if plot is not None:
        _run(plot_predictions, predictions, plot)
        typer.echo(f"wrote {plot}")


@app.command("models")
def models_cmd(
    zoo: Annotated[
        str | None,
        typer.Option(
            "--zoo", help="zoo folder or URL (default: $XAS_MODEL_ZOO, cache, $XAS_MODEL_ZOO_URL)"
        ),
    ] = None,
) -> None:
    """List the available models: name, version, elements, fidelity, featurizer, metric."""
    from xas_models.zoo import list_pretrained

    entries = _run(list_pretrained, zoo)
    if not entries:
        _fail(
            "no models found; pass --zoo DIR_OR_URL, or set $XAS_MODEL_ZOO (a zoo folder) or "
            "$XAS_MODEL_ZOO_URL (a zoo URL)"
        )
    typer.echo(format_models(entries))


def _read_for_describe(
    files: Sequence[Path], element: str | None
) -> tuple[list[Any], list[tuple[str, str]]]:
    """The measured spectra of ``files`` (only ``element``'s when given) and ``(file,
    reason)`` for each file that cannot be read or holds no such spectra."""
    from xas_data.errors import XASDataError
    from xas_data.experiment_ingest import read_measured_sources

    spectra: list[Any] = []
    failed: list[tuple[str, str]] = []
    for f in files:
        try:
            found = read_measured_sources([str(f)], element)
        except (XASDataError, OSError) as exc:
            failed.append((str(f), str(exc)))
            continue
        kept = [s for s in found if element is None or s.element == element]
        if not found:
            failed.append((str(f), "holds no spectra"))
        elif not kept:
            held = ", ".join(sorted({s.element for s in found}))
            failed.append((str(f), f"holds no {element} spectra (only {held})"))
        spectra.extend(kept)
    return spectra, failed


def _spectrum_label(spectrum: Any) -> str:
    """``name [file]`` of a measured spectrum, whitespace collapsed."""
    name = " ".join(str(spectrum.name or spectrum.formula or "spectrum").split())
    source = Path(str(spectrum.metadata.get("source_file", ""))).name
    return f"{name} [{source}]" if source and source != name else name


def _describe_one(spectrum: Any, loaded: Any) -> tuple[float, dict[str, Any]]:
    """``(E0 in eV, descriptor predictions)`` of one measured spectrum; XASDataError (or
    ValueError) with the reason when it cannot be described."""
    import numpy as np

    from xas_data.experiment_processing import process_spectrum
    from xas_models.errors import ModelError
    from xas_models.inverse import predict_descriptors

    el = spectrum.element
    if el not in loaded.meta.elements:
        raise ModelError(
            f"model {loaded.name} describes {', '.join(loaded.meta.elements)} spectra, not "
            f"{el}; choose an inverse model for {el}"
        )
    grid = loaded.meta.grid_for(el)
    energy = grid.start + grid.step * np.arange(grid.n_points)
    processed = process_spectrum(spectrum, energy)
    out = predict_descriptors(processed.mu_norm, energy, el, (loaded.module, loaded.meta))
    return processed.e0, out


def format_description(label: str, element: str, e0: float, model: str, out: dict) -> list[str]:
    """Lines of one described spectrum: a header, one line per descriptor (class with its
    renormalised probabilities, or value with its spread), then its warnings."""
    lines = [f"{label} ({element} K edge, E0 {e0:.1f} eV), model {model}"]
    notes: list[str] = []
    for name, p in out.items():
        if p.kind == "classification":
            top = sorted(p.probabilities.items(), key=lambda kv: -kv[1])[:3]
            alts = ", ".join(f"{c:g}: {q:.2f}" for c, q in top)
            lines.append(f"  {name:<6} {p.value:>8g}   (p {alts})")
        else:
            lines.append(f"  {name:<6} {p.value:>8.3f}   +- {p.std:.3f} (ensemble spread)")
        notes += [w for w in p.warnings if w not in notes]
    return lines + [f"  warning: {w}" for w in notes]


def _limits_note(element: str, out: dict) -> str | None:
    """``note: OS, CN of V limited to the classes of V in the model's training data: OS 3, 4,
    5; CN 4, 5, 6`` (or the chemical table), or None when neither is limited."""
    limited = [(n, out[n]) for n in ("OS", "CN") if n in out and out[n].allowed]
    if not limited:
        return None
    source = limited[0][1].allowed_source
    where = (
        f"the classes of {element} in the model's training data"
        if source == "training data"
        else f"the chemical table for {element}"
    )
    values = "; ".join(f"{n} {', '.join(f'{c:g}' for c in p.allowed)}" for n, p in limited)
    return f"note: {element} predictions limited to {where}: {values}"


def format_summary(n_described: int, n_outside: int, failed: Sequence[tuple[str, str]]) -> str:
    """The closing summary: how many spectra were described (and outside the training
    domain), then one line per spectrum or file that could not be described."""
    total = n_described + len(failed)
    head = f"described {n_described} of {total} spectra"
    head += f" ({n_outside} outside the training domain)" if n_outside else ""
    if not failed:
        return head
    lines = [f"{head}; {len(failed)} could not be described:"]
    return "\n".join(
        lines + [f"  {why}" if why.startswith(what) else f"  {what}: {why}" for what, why in failed]
    )


@app.command("describe")
def describe_cmd(
    files: Annotated[
        list[Path], typer.Argument(help="measured spectra: XDI, XAS Data Library JSON, two-column")
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="inverse zoo model or folder")],
    element: Annotated[
        str | None,
        typer.Option(
            "--element",
            "-e",
            help="describe only this absorber's spectra (and the absorber of two-column files)",
        ),
    ] = None,
    version: Annotated[str, typer.Option(help="zoo version")] = "latest",
    zoo: Annotated[str | None, typer.Option(help="zoo folder or URL")] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="exit with code 2 if any spectrum failed")
    ] = False,
) -> None:
    """Local structure (OS, CN, ...) of the absorbing site from a measured K-edge spectrum.

    Each spectrum is deglitched and edge-step normalised (xas-data), interpolated onto the
    model's energy grid and passed to the inverse model; prints each descriptor with its
    probability (classification, over the classes the element may take) or ensemble spread
    (regression), and a warning for a spectrum outside the model's training domain. Spectra
    that cannot be described are listed at the end with their reasons. Exit code 0 if any
    spectrum was described (with --strict: 2 if any failed), else 2.
    """
    from xas_data.errors import XASDataError
    from xas_models.predict import _element_symbol, resolve_model

    el_filter = _run(_element_symbol, element) if element else None
    spectra, failed = _read_for_describe(files, el_filter)
    if not spectra:
        _fail("nothing to describe: " + "; ".join(f"{f}: {why}" for f, why in failed))
    loaded = _run(resolve_model, model, version, zoo)
    n_done, n_outside, notes = 0, 0, {}
    for spectrum in spectra:
        label = _spectrum_label(spectrum)
        try:
            e0, out = _describe_one(spectrum, loaded)
        except (XASDataError, ValueError) as exc:
            failed.append((label, str(exc)))
            continue
        typer.echo("\n".join(format_description(label, spectrum.element, e0, loaded.name, out)))
        first = next(iter(out.values()))
        n_done, n_outside = n_done + 1, n_outside + (first.in_domain is False)
        notes.setdefault(spectrum.element, (_limits_note(spectrum.element, out), first.domain))
    for note, _ in notes.values():
        if note:
            typer.echo(note)
    if notes and all(domain is None for _, domain in notes.values()):
        typer.echo(f"note: {loaded.name} records no training-domain statistics: not checked")
    typer.echo(format_summary(n_done, n_outside, failed))
    if n_done == 0 or (strict and failed):
        raise typer.Exit(2)


@app.command("serve")
def serve_cmd(
    host: Annotated[
        str, typer.Option(help="address to bind; 0.0.0.0 exposes the server to the network")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    models: Annotated[
        list[str] | None,
        typer.Option("--models", "-m", help="serve only these zoo models (repeatable)"),
    ] = None,
    zoo: Annotated[str | None, typer.Option(help="zoo folder or URL")] = None,
    workers: Annotated[int, typer.Option(help="server processes behind the one port")] = 1,
    max_upload_mb: Annotated[float, typer.Option(help="largest upload in MB")] = 2.0,
    max_atoms: Annotated[int, typer.Option(help="largest structure (atoms in the cell)")] = 500,
    token: Annotated[
        str | None, typer.Option(help="require 'Authorization: Bearer TOKEN' on API calls")
    ] = None,
) -> None:
    """Start the web page and REST API (http://HOST:PORT/, API docs at /docs).

    Needs the 'serve' extra: pip install 'xas-models[serve]'. Models load once, on first
    use (the default forward and inverse models at start-up).
    """
    from xas_models.serve import ServeSettings, run_server

    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(
            f"warning: --host {host} makes the server reachable from other machines; "
            "anyone who can reach it can run the models" + ("" if token else " (no --token)"),
            fg=typer.colors.YELLOW,
            err=True,
        )
    settings = ServeSettings(
        zoo=zoo,
        models=list(models or []),
        max_upload_bytes=int(max_upload_mb * 1e6),
        max_atoms=max_atoms,
        token=token,
    )
    typer.echo(f"xas serve: http://{host}:{port}/ (API docs at /docs)")
    _run(run_server, settings, host, port, workers)


if __name__ == "__main__":  # pragma: no cover
    app()
