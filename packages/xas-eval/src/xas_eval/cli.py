"""``xas-eval``: evaluate and compare; reports and plots follow with the models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Evaluate XAS models and features with the OmniXAS metrics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Evaluate XAS models and features with the OmniXAS metrics."""


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
