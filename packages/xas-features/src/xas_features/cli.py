"""``xas-features``: compute and store features and descriptors for a dataset.

Run under ``torchrun --nproc_per_node N`` or ``srun`` to split the rows across processes.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from xas_data.cli_errors import DebugOpt, GuardedGroup, set_debug

app = typer.Typer(
    cls=GuardedGroup,  # any error: one line on stderr, exit 2 (traceback with --debug)
    rich_markup_mode=None,
    help="Featurize XAS datasets: M3GNet/CHGNet transfer features, ACSF/SOAP + PCA, and local "
    "structure descriptors, stored in the dataset's Zarr store in site row order.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(debug: Annotated[bool, DebugOpt] = False) -> None:
    """Featurize XAS datasets and list their stored features."""
    set_debug(debug)


class FeaturizerName(StrEnum):
    m3gnet = "m3gnet"
    chgnet = "chgnet"
    acsf = "acsf"
    soap = "soap"
    descriptors = "descriptors"


@app.command()
def featurize(
    dataset: Annotated[Path, typer.Option(help="dataset store (.zarr)")],
    featurizer: Annotated[FeaturizerName, typer.Option(help="which featurizer")],
    force: Annotated[bool, typer.Option(help="recompute even if stored")] = False,
    model_path: Annotated[
        Path | None, typer.Option(help="m3gnet: local model folder instead of matgl.load_model")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="structures per forward pass")] = None,
    fit_split: Annotated[str, typer.Option(help="acsf/soap: split the PCA is fitted on")] = "train",
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Compute features for every site of DATASET and store them (skips existing ones)."""
    from xas_data.errors import XASDataError
    from xas_features.featurizers import get_featurizer
    from xas_features.storage import featurize_dataset

    config = {}
    if model_path is not None:
        config["model_path"] = str(model_path)
    if batch_size is not None:
        config["batch_size"] = batch_size
    try:
        built = get_featurizer(featurizer.value, **config)
        key = featurize_dataset(dataset, built, force=force, fit_split=fit_split, progress=progress)
    except XASDataError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(f"stored features/{key}")


@app.command("list")
def list_features(dataset: Annotated[Path, typer.Option(help="dataset store (.zarr)")]) -> None:
    """List the feature arrays stored in DATASET with their featurizer, version and state."""
    from xas_data.store import XASDataset

    ds = XASDataset.open(dataset)
    for key in ds.feature_names():
        attrs = ds.feature_attrs(key)
        shape = ds.root[f"features/{key}/values"].shape
        typer.echo(
            f"{key:<44}{attrs.get('featurizer', '?'):<12}{attrs.get('version', '?'):<28}"
            f"{shape[1]:>5} dims  {'complete' if attrs.get('complete') else 'INCOMPLETE'}"
        )


if __name__ == "__main__":
    app()
