"""``xas-eval``: evaluate and compare models and features; write OmniXAS reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xas_data.cli_errors import DebugOpt, GuardedGroup, set_debug

app = typer.Typer(
    cls=GuardedGroup,  # any error: one line on stderr, exit 2 (traceback with --debug)
    rich_markup_mode=None,
    help="Evaluate XAS models and features with the OmniXAS metrics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(debug: Annotated[bool, DebugOpt] = False) -> None:
    """Evaluate XAS models and features with the OmniXAS metrics."""
    set_debug(debug)


@app.command("compare-features")
def compare_features(
    dataset: Annotated[Path, typer.Option(help="dataset store with features")],
    element: Annotated[str, typer.Option(help="absorbing element")],
    fidelity: Annotated[str | None, typer.Option(help="fidelity (if several)")] = None,
    features: Annotated[
        str | None, typer.Option(help="comma-separated featurizer names or keys (default: all)")
    ] = None,
    eval_split: Annotated[str, typer.Option(help="split to evaluate on")] = "val",
) -> None:
    """Eta of ridge regression (features -> spectrum) for each stored feature set."""
    from xas_data.store import XASDataset
    from xas_eval.feature_comparison import ridge_eta

    ds = XASDataset.open(dataset)
    fidelity = fidelity or ds.select(element).fidelity
    complete = [k for k in ds.feature_names() if ds.feature_attrs(k).get("complete")]
    keys = complete if features is None else features.split(",")
    typer.echo(f"ridge regression, {element} {fidelity}, train -> {eval_split}")
    typer.echo(f"{'features':<44}{'dim':>5}{'alpha':>9}{'eta':>8}{'median MSE':>12}")
    for key in keys:
        if key not in ds.feature_names():
            matches = [
                k for k in ds.feature_names() if ds.feature_attrs(k).get("featurizer") == key
            ]
            if not matches:
                raise typer.BadParameter(f"no {key!r} features in {dataset}: {ds.feature_names()}")
            key = matches[-1]
        result = ridge_eta(ds, element, fidelity, key, eval_split=eval_split)
        typer.echo(
            f"{key:<44}{result.dim:>5}{result.alpha:>9.3g}{result.eta:>8.2f}{result.median_mse:>12.4g}"
        )


@app.command("report")
def report(
    paths: Annotated[
        list[Path], typer.Argument(help="predictions.npz files or folders searched recursively")
    ],
    out: Annotated[Path, typer.Option("--out", help="folder for report.md and the plots")],
    reference: Annotated[str, typer.Option(help="model label compared against")] = "expert",
    candidate: Annotated[
        str, typer.Option(help="model label compared with the reference")
    ] = "tuned",
) -> None:
    """OmniXAS Table I report (report.md + PNG plots) from saved predictions.

    Prints the Table I Markdown to stdout and the report path to stderr.
    """
    from xas_eval.predictions import find_predictions
    from xas_eval.report import render_markdown, table_one, write_report

    try:
        preds = find_predictions(paths)
        path = write_report(preds, out, reference=reference, candidate=candidate)
        rows = table_one(preds, reference=reference, candidate=candidate)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(render_markdown(rows), nl=False)
    typer.echo(f"report written to {path}", err=True)


@app.command("compare")
def compare_cmd(
    models: Annotated[
        list[str],
        typer.Argument(
            help="LABEL=PATH pairs: a model's predictions.npz files or run folder (searched "
            "recursively), e.g. cgxas=runs/graph/cgxas-default-universal"
        ),
    ],
    ablation: Annotated[
        str | None,
        typer.Option(help="label of the full model: print the ablation table against it"),
    ] = None,
    d1: Annotated[float, typer.Option(help="derivative weight of the ablation total")] = 0.1,
    d2: Annotated[float, typer.Option(help="curvature weight of the ablation total")] = 0.01,
) -> None:
    """Compare models evaluated on the same sites: eta, spectrum / derivative / curvature MSE.

    Metrics are pooled over elements (each spectrum keeps its element's eta baseline). With
    --ablation FULL the rows are laid out as the XANE(3) ablation table, with changes in %.
    """
    from xas_eval.compare import ablation_rows, comparison_rows
    from xas_eval.predictions import find_predictions
    from xas_eval.report import render_markdown

    groups = {}
    for item in models:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            typer.echo(f"error: {item!r} must look like LABEL=PATH", err=True)
            raise typer.Exit(2)
        try:
            groups[label] = find_predictions([Path(path)])
        except (FileNotFoundError, ValueError) as exc:
            typer.echo(f"error: {label}: {exc}", err=True)
            raise typer.Exit(2) from None
    try:
        rows = (
            ablation_rows(groups, ablation, d1=d1, d2=d2) if ablation else comparison_rows(groups)
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(render_markdown(rows), nl=False)


@app.command("oxidation-check")
def oxidation_check_cmd(
    measured: Annotated[Path, typer.Argument(help="store with EXP spectra (ingest-measured)")],
    element: Annotated[str, typer.Option(help="absorbing element")],
    simulated: Annotated[str, typer.Option(help="simulated store or 'default'")] = "default",
    fidelity: Annotated[str, typer.Option(help="fidelity of the simulated spectra")] = "FEFF-fast",
    n_clusters: Annotated[int, typer.Option(help="SDM basis size (cluster centroids)")] = 4,
    energy_shift: Annotated[
        float, typer.Option(help="eV subtracted from the measured energy scale first")
    ] = 0.0,
) -> None:
    """Oxidation states of measured standards from simulated spectra, with and without SDM.

    A random forest learns OS from the simulated spectra (labels: the store's descriptors);
    it classifies the measured spectra as they are and after spectral domain mapping.
    """
    from xas_eval.oxidation import check_stores

    try:
        result = check_stores(
            simulated,
            str(measured),
            element,
            fidelity,
            n_clusters=n_clusters,
            energy_shift=energy_shift,
        )
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(result.table(), nl=False)
    classes = ", ".join(f"{c:+.0f}" for c in result.classes)
    typer.echo(
        f"\n{element}: training OS classes {classes}; {result.n_scorable} scorable spectra; "
        f"accuracy raw {result.accuracy.get('raw', float('nan')):.2f}, SDM "
        f"{result.accuracy.get('sdm', float('nan')):.2f}; mean |OS error| raw "
        f"{result.mean_abs_error.get('raw', float('nan')):.2f}, SDM "
        f"{result.mean_abs_error.get('sdm', float('nan')):.2f}"
    )


@app.command("describe-standards")
def describe_standards_cmd(
    measured: Annotated[Path, typer.Argument(help="store with EXP spectra (ingest-measured)")],
    model: Annotated[str, typer.Option(help="inverse zoo model or checkpoint folder")],
    element: Annotated[str, typer.Option(help="absorbing element")],
    simulated: Annotated[
        str, typer.Option(help="simulated store for SDM, or 'default'")
    ] = "default",
    fidelity: Annotated[
        str, typer.Option(help="fidelity of the simulated spectra, e.g. FEFF-fast or FEFF")
    ] = "FEFF-fast",
    n_clusters: Annotated[int, typer.Option(help="SDM basis size")] = 4,
) -> None:
    """Predicted vs known OS and CN of measured standards, with and without SDM."""
    from xas_data.errors import XASDataError
    from xas_eval.measured_descriptors import describe_standards, render_standards

    try:
        result = describe_standards(
            model, str(measured), element, simulated, fidelity, n_clusters=n_clusters
        )
    except (ValueError, FileNotFoundError, XASDataError) as exc:  # each names its fix
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(render_standards(result), nl=False)


@app.command("ensemble")
def ensemble_cmd(
    paths: Annotated[list[Path], typer.Argument(help="predictions files or folders (members)")],
    out: Annotated[Path, typer.Option(help="predictions file to write")],
    model: Annotated[str | None, typer.Option(help="label of the ensemble")] = None,
) -> None:
    """Average several models' predictions on the same sites and print its metrics."""
    from xas_eval.predictions import ensemble, find_predictions

    try:
        members = find_predictions(paths)
        combined = ensemble(members, model)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    combined.save(out)
    typer.echo(f"{'model':<28}{'eta':>8}{'median MSE':>12}")
    for p in [*members, combined]:
        m = p.metrics()
        typer.echo(f"{(p.run_id or p.model)[:27]:<28}{m['eta']:>8.3f}{m['xi']:>12.4g}")


@app.command("evaluate")
def evaluate_cmd(
    model: Annotated[str, typer.Argument(help="zoo model name or checkpoint folder")],
    dataset: Annotated[str, typer.Option(help="store path or 'default'")] = "default",
    split: Annotated[str, typer.Option(help="split to evaluate")] = "test",
    version: Annotated[str, typer.Option(help="zoo version")] = "latest",
    zoo: Annotated[str | None, typer.Option(help="zoo folder or URL")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for predictions files")] = None,
) -> None:
    """Re-evaluate a checkpoint on a dataset split and compare with its model card."""
    from xas_eval.evaluate import evaluate_checkpoint

    try:
        preds, checks = evaluate_checkpoint(model, dataset, split, version=version, zoo=zoo)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # ModelError and store errors carry their fix in the message
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{'element':<8}{'metric':<22}{'model card':>12}{'re-evaluated':>14}  match")
    for c in checks:
        card = "-" if c.card is None else f"{c.card:.6g}"
        typer.echo(
            f"{c.element:<8}{c.metric:<22}{card:>12}{c.measured:>14.6g}  {'n/a' if c.card is None else 'yes' if c.matches else 'NO'}"
        )
    if out is not None:
        for p in preds:
            p.save(out / f"{p.element}_{p.fidelity}" / "predictions.npz")
