"""``xas-data``: simulate, curate, split, ingest, fetch and inspect XAS datasets.

Heavy libraries are imported inside the commands so that ``--help`` answers at once.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from xas_data.cli_errors import DebugOpt, GuardedGroup, set_debug

app = typer.Typer(
    cls=GuardedGroup,  # any error: one line on stderr, exit 2 (traceback with --debug)
    rich_markup_mode=None,
    help="X-ray absorption spectra datasets: FEFF10 simulation, curation, material splits, "
    "ingest of public and measured data, and a readable summary of any store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _run(fn, *args, **kwargs):
    from xas_data.errors import XASDataError

    try:
        return fn(*args, **kwargs)
    except XASDataError as exc:
        _fail(exc)


@app.callback()
def _main(debug: Annotated[bool, DebugOpt] = False) -> None:
    """X-ray absorption spectra datasets (simulate, curate, ingest, inspect)."""
    set_debug(debug)


def default_dataset_path() -> Path:
    """Path of the shipped default dataset inside the installed package."""
    return Path(__file__).with_name("default_data") / "xas-default.zarr"


@app.command()
def info(
    dataset: Annotated[
        Path | None, typer.Argument(help="store path (default: the shipped default dataset)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Summarise a store: counts per element, fidelity and split, grids, provenance, and a
    fast integrity check (chunk files present, lengths agree; full check: xas-data verify)."""
    from xas_data.store import XASDataset
    from xas_data.verify import quick_check

    ds = _run(XASDataset.open, dataset or default_dataset_path())  # refuses a damaged store
    summary = ds.summary()
    warnings = [str(w) for w in quick_check(ds).warnings]
    if as_json:
        summary["integrity"] = {"check": "quick (chunk listing)", "warnings": warnings}
        typer.echo(json.dumps(summary, indent=1, default=str))
        return
    typer.echo(f"dataset {summary['name']}  ({summary['path']})")
    typer.echo(
        f"schema v{summary['schema_version']}  {summary['n_materials']} materials  "
        f"{summary['n_sites']} site spectra  license: {ds.attrs.get('license', '')}"
    )
    header = (
        f"{'element':<8}{'fidelity':<16}{'train':>7}{'val':>7}{'test':>7}{'other':>7}{'total':>8}"
    )
    typer.echo("\n" + header + "\n" + "-" * len(header))
    totals: dict[str, int] = {}
    for element, by_fid in sorted(summary["counts"].items()):
        for fidelity, counts in sorted(by_fid.items()):
            n = sum(counts.values())
            totals[fidelity] = totals.get(fidelity, 0) + n
            other = n - sum(counts.get(s, 0) for s in ("train", "val", "test"))
            typer.echo(
                f"{element:<8}{fidelity:<16}{counts.get('train', 0):>7}{counts.get('val', 0):>7}"
                f"{counts.get('test', 0):>7}{other:>7}{n:>8}"
            )
    for fidelity, n in sorted(totals.items()):
        typer.echo(f"{'all':<8}{fidelity:<16}{'':>28}{n:>8}")
    typer.echo("\ngrids (eV):")
    for key, grid in summary["grids"].items():
        typer.echo(
            f"  {key:<24}{grid['start']:.3f} .. {grid['stop']:.3f}  ({grid['n_points']} points)"
        )
    if summary["features"]:
        typer.echo("features: " + ", ".join(summary["features"]))
    steps: dict[str, int] = {}
    for step in summary["provenance"]:
        steps[step] = steps.get(step, 0) + 1
    typer.echo(
        "provenance: "
        + " -> ".join(f"{s} (x{n})" if n > 1 else s for s, n in steps.items())
        + f"\n(details: xas-data info {ds.path} --json)"
    )
    for line in warnings or ["every chunk present and checksummed"]:
        typer.echo(f"integrity: {line} (full check: xas-data verify {ds.path})")


class Preset(StrEnum):
    fast = "fast"
    accurate = "accurate"
    omnixas = "omnixas"


class Code(StrEnum):
    feff = "feff"
    vasp = "vasp"
    xspectra = "xspectra"
    ocean = "ocean"


@app.command()
def simulate(
    workdir: Annotated[Path, typer.Option(help="simulation folder (resumable)")],
    element: Annotated[str, typer.Option(help="absorbing element, e.g. Cu")],
    structures: Annotated[
        Path | None, typer.Option(help="folder of CIF/POSCAR files (else: AMCSD minerals)")
    ] = None,
    preset: Annotated[Preset, typer.Option(help="FEFF fidelity preset")] = Preset.fast,
    with_oxygen: Annotated[bool, typer.Option(help="minerals: require O as well")] = True,
    max_materials: Annotated[int, typer.Option(help="minerals: at most this many")] = 20,
    max_atoms: Annotated[int, typer.Option(help="minerals: max atoms in the primitive cell")] = 40,
    max_sites: Annotated[int, typer.Option(help="inequivalent sites per material")] = 4,
    workers: Annotated[int, typer.Option(help="parallel FEFF processes")] = 2,
    retry_failed: Annotated[bool, typer.Option(help="re-run sites that failed before")] = False,
    out: Annotated[Path | None, typer.Option(help="also build a curated store here")] = None,
    code: Annotated[
        Code, typer.Option(help="feff runs here; vasp, xspectra, ocean need --write-inputs")
    ] = Code.feff,
    write_inputs: Annotated[
        bool, typer.Option(help="only write Lightshow inputs into WORKDIR (for a cluster)")
    ] = False,
) -> None:
    """Run FEFF10 on every symmetry-inequivalent ELEMENT site of the given structures, or
    (--write-inputs) write Lightshow inputs of --code for them, ready for a cluster."""
    from xas_data.build import build_from_simulations
    from xas_data.simulation import plan_tasks, run_simulations
    from xas_data.structures import iter_structure_folder, mineral_structures

    if structures is not None:
        records = list(_run(iter_structure_folder, structures))
    else:
        records = _run(
            mineral_structures,
            element,
            ("O",) if with_oxygen else (),
            max_atoms=max_atoms,
            max_count=max_materials,
        )
    if write_inputs or code is not Code.feff:
        _write_lightshow_inputs(records, element, workdir, code.value, preset.value, write_inputs)
        return
    tasks = _run(plan_tasks, records, element, workdir, max_sites)
    typer.echo(f"{len(records)} structures, {len(tasks)} inequivalent {element} sites")
    report = _run(run_simulations, tasks, workdir, preset.value, workers, retry_failed)
    typer.echo(report.summary())
    if report.failures:
        typer.echo(f"failed sites are described in {workdir / preset.value / 'failures'}")
    if out is not None:
        ds = _run(build_from_simulations, workdir, out, presets=(preset.value,), overwrite=True)
        typer.echo(f"wrote {ds.path}: {ds.n_sites} curated spectra")


def _write_lightshow_inputs(records, element, workdir, code, preset, write_inputs) -> None:
    """``simulate --write-inputs``: Lightshow inputs of ``code`` (FEFF: the preset's cards)."""
    from xas_data.simulation.lightshow_inputs import missing_potentials, write_code_inputs
    from xas_data.simulation.presets import get_preset

    if not write_inputs:
        _fail(ValueError(f"--code {code} runs on a cluster: add --write-inputs to write inputs"))
    feff_preset = get_preset(preset) if code == "feff" else None
    runs = _run(write_code_inputs, records, element, workdir, code, feff_preset)
    typer.echo(f"wrote {len(runs)} {code} input folders under {workdir}, e.g. {runs[0]}")
    for name in missing_potentials(code):
        typer.echo(f"note: {name} is not set: add the potential files to the folders by hand")
    if code != "feff":
        typer.echo(f"after the runs: xas-data ingest {code} {workdir} --out STORE")


@app.command("simulate-default")
def simulate_default(
    workdir: Annotated[Path, typer.Option(help="simulation folder (resumable)")],
    workers: Annotated[int, typer.Option(help="parallel FEFF processes")] = 2,
) -> None:
    """Run the FEFF simulations of the shipped default dataset (both fidelities; resumable)."""
    from xas_data.default_dataset import simulate_default as run

    _run(run, workdir, workers)


@app.command("campaign-plan")
def campaign_plan(
    workdir: Annotated[Path, typer.Argument(help="simulation folder (the plan is written once)")],
    fast_per_element: Annotated[int, typer.Option(help="most fast sites per element")] = 600,
    accurate_per_element: Annotated[int, typer.Option(help="most accurate sites")] = 80,
    max_atoms: Annotated[int, typer.Option(help="max atoms in a primitive cell")] = 100,
    max_sites: Annotated[int, typer.Option(help="inequivalent sites per material")] = 8,
) -> None:
    """Plan the 8-element FEFF campaign: AMCSD minerals plus the transition-metal sites of the
    OmniXAS Materials Project structures (found through XAS_SHARED_DATA)."""
    from collections import Counter

    from xas_data.campaign import CampaignRecipe, plan_campaign

    recipe = CampaignRecipe(
        fast_per_element=fast_per_element,
        accurate_per_element=accurate_per_element,
        max_atoms=max_atoms,
        max_sites_per_material=max_sites,
    )
    fast, accurate = _run(plan_campaign, workdir, recipe=recipe)
    for name, tasks in (("fast", fast), ("accurate", accurate)):
        counts = Counter(t.element for t in tasks)
        typer.echo(
            f"{name}: {len(tasks)} sites  " + "  ".join(f"{e} {n}" for e, n in counts.items())
        )


@app.command("campaign-pack")
def campaign_pack(
    workdir: Annotated[Path, typer.Argument(help="campaign simulation folder")],
    archive: Annotated[Path, typer.Argument(help=".npz archive to write")],
) -> None:
    """Save a campaign's plan, structures, results and failures into one .npz archive."""
    from xas_data.campaign import pack_campaign

    counts = _run(pack_campaign, workdir, archive)
    typer.echo(f"wrote {archive}: " + ", ".join(f"{p} {n} results" for p, n in counts.items()))


@app.command("campaign-unpack")
def campaign_unpack(
    archive: Annotated[Path, typer.Argument(help=".npz archive from campaign-pack")],
    workdir: Annotated[Path, typer.Argument(help="simulation folder to restore into")],
) -> None:
    """Restore a packed campaign so that simulate-plan goes on where it stopped."""
    from xas_data.campaign import unpack_campaign

    counts = _run(unpack_campaign, archive, workdir)
    typer.echo(", ".join(f"{p}: {n} results restored" for p, n in counts.items()))


@app.command("campaign-build")
def campaign_build(
    workdir: Annotated[Path, typer.Argument(help="campaign simulation folder")],
    out: Annotated[Path, typer.Option(help="store to write (xas-3dtm-feff10)")],
    overwrite: Annotated[bool, typer.Option(help="replace an existing store")] = False,
) -> None:
    """Curate every campaign result into the xas-3dtm-feff10 store (edge-anchored grids)."""
    from xas_data.campaign import build_campaign

    ds = _run(build_campaign, workdir, out, overwrite)
    typer.echo(f"wrote {ds.path}: {ds.n_sites} curated spectra of {ds.n_materials} materials")


@app.command("campaign-report")
def campaign_report(
    workdir: Annotated[Path, typer.Argument(help="campaign simulation folder")],
    store: Annotated[Path | None, typer.Option(help="a store built from it")] = None,
) -> None:
    """CPU-hours per preset and element, and (with --store) each grid's share of edges inside."""
    from xas_data.campaign import grid_coverage, simulation_costs

    typer.echo("| preset | element | results | failures | CPU-hours | CPU s / site |")
    typer.echo("|---|---|---:|---:|---:|---:|")
    for r in _run(simulation_costs, workdir):
        typer.echo(
            f"| {r['preset']} | {r['element']} | {r['results']} | {r['failures']} | "
            f"{r['cpu_hours']:.2f} | {r['cpu_s_per_site']:.1f} |"
        )
    if store is not None:
        from xas_data.store import XASDataset

        typer.echo("\n| element | fidelity | spectra | grid | edges >= 5 eV inside |")
        typer.echo("|---|---|---:|---|---:|")
        for r in grid_coverage(_run(XASDataset.open, store)):
            typer.echo(
                f"| {r['element']} | {r['fidelity']} | {r['spectra']} | {r['grid']} | "
                f"{100 * r['edges_inside']:.1f} % |"
            )


class Executor(StrEnum):
    local = "local"
    dask = "dask"
    slurm = "slurm"


@app.command("simulate-plan")
def simulate_plan(
    workdir: Annotated[Path, typer.Argument(help="folder holding campaign-plan.json")],
    preset: Annotated[Preset, typer.Option(help="FEFF fidelity preset")] = Preset.fast,
    executor: Annotated[Executor, typer.Option(help="where the sites run")] = Executor.local,
    workers: Annotated[int, typer.Option(help="processes (local, dask LocalCluster)")] = 2,
    address: Annotated[str | None, typer.Option(help="dask scheduler address")] = None,
    n_shards: Annotated[int, typer.Option(help="split the plan into this many shards")] = 1,
    shard: Annotated[int, typer.Option(help="run only this shard (0-based)")] = 0,
    submit: Annotated[bool, typer.Option(help="slurm: sbatch the written script")] = False,
    partition: Annotated[str | None, typer.Option(help="slurm partition")] = None,
    retry_failed: Annotated[bool, typer.Option(help="re-run sites that failed before")] = False,
) -> None:
    """Run one preset of a planned campaign on an executor (resumable: done sites are skipped)."""
    from xas_data.campaign import read_plan
    from xas_data.simulation.executors import shard as take_shard
    from xas_data.simulation.executors import write_array_job
    from xas_data.simulation.runner import run_simulations

    fast, accurate = _run(read_plan, workdir)
    if executor is Executor.slurm:
        script = _run(write_array_job, workdir, preset.value, n_shards, partition)
        typer.echo(f"wrote {script}")
        if submit:
            import subprocess

            done = subprocess.run(["sbatch", str(script)], capture_output=True, text=True)
            typer.echo(done.stdout.strip() or done.stderr.strip())
            raise typer.Exit(0 if done.returncode == 0 else 2)
        return
    tasks = _run(take_shard, fast if preset is Preset.fast else accurate, n_shards, shard)
    report = _run(
        run_simulations,
        tasks,
        workdir,
        preset.value,
        workers,
        retry_failed,
        executor=executor.value,
        address=address,
    )
    typer.echo(report.summary())


@app.command()
def regrid(
    dataset: Annotated[Path, typer.Argument(help="store holding raw spectra")],
    out: Annotated[Path | None, typer.Option(help="new store (default: replace in place)")] = None,
    above_ev: Annotated[float, typer.Option(help="grid end above the median E0 (eV)")] = 60.0,
    max_points: Annotated[int, typer.Option(help="most grid points")] = 256,
) -> None:
    """Re-derive each element's edge-anchored grid from the raw spectra kept in a store."""
    from xas_data.build import CurationConfig, regrid_store

    config = CurationConfig(grid_above_ev=above_ev, grid_max_points=max_points)
    ds = _run(regrid_store, dataset, out or dataset, config)
    for selection in ds.iter_selections():
        e = selection.energy
        typer.echo(
            f"{selection.element:<3}{selection.fidelity:<15}{len(selection):>6} spectra  "
            f"{e[0]:.2f} .. {e[-1]:.2f} eV  ({e.size} points, {e[1] - e[0]:.2f} eV)"
        )


@app.command("build-default")
def build_default_cmd(
    workdir: Annotated[Path, typer.Argument(help="folder of simulate-default (or the campaign)")],
    out: Annotated[Path, typer.Option(help="store to write")] = Path("xas-default.zarr"),
    overwrite: Annotated[bool, typer.Option(help="replace an existing store")] = False,
) -> None:
    """Curate the default plan's sites into the default store (edge-anchored grids)."""
    from xas_data.default_dataset import build_default

    ds = _run(build_default, workdir, out, overwrite)
    typer.echo(f"wrote {ds.path}: {ds.n_sites} curated spectra of {ds.n_materials} materials")


@app.command()
def build(
    workdir: Annotated[Path, typer.Argument(help="simulation folder")],
    out: Annotated[Path, typer.Option(help="store to write")],
    name: Annotated[str, typer.Option(help="dataset name")] = "xas-default",
    presets: Annotated[str, typer.Option(help="comma-separated presets")] = "fast,accurate",
    outlier_c: Annotated[float | None, typer.Option(help="outlier envelope (sigmas)")] = None,
    seed: Annotated[int, typer.Option(help="split seed")] = 42,
    overwrite: Annotated[bool, typer.Option(help="replace an existing store")] = False,
) -> None:
    """Curate FEFF results into a split store (labels, grid, outliers, duplicates, splits)."""
    from xas_data.build import CurationConfig, build_from_simulations

    config = CurationConfig(outlier_c=outlier_c)
    ds = _run(
        build_from_simulations,
        workdir,
        out,
        name,
        tuple(p.strip() for p in presets.split(",")),
        config,
        seed=seed,
        overwrite=overwrite,
    )
    typer.echo(f"wrote {ds.path}: {ds.n_sites} site spectra of {ds.n_materials} materials")


@app.command()
def curate(
    dataset: Annotated[Path, typer.Argument(help="source store (left unchanged)")],
    out: Annotated[Path, typer.Option(help="curated store to write")],
    outlier_c: Annotated[float | None, typer.Option(help="outlier envelope (sigmas)")] = None,
    no_outliers: Annotated[bool, typer.Option(help="skip outlier removal")] = False,
    duplicate_rtol: Annotated[float, typer.Option(help="near-duplicate tolerance")] = 1e-4,
    keep_splits: Annotated[bool, typer.Option(help="keep the source splits")] = True,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output")] = False,
) -> None:
    """Re-curate a store (outliers, duplicates) into a new store."""
    from xas_data.build import CurationConfig, curate_store

    config = CurationConfig(
        outlier_c=outlier_c, remove_outliers=not no_outliers, duplicate_rtol=duplicate_rtol
    )
    ds = _run(curate_store, dataset, out, config, keep_splits=keep_splits, overwrite=overwrite)
    typer.echo(f"wrote {ds.path}: {ds.n_sites} site spectra")


@app.command()
def split(
    dataset: Annotated[Path, typer.Argument(help="store to (re)split in place")],
    fractions: Annotated[str, typer.Option(help="train,val,test fractions")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="seed of the tie-breaking shuffle")] = 42,
    lists: Annotated[
        Path | None,
        typer.Option(help="folder of <El>_<FID>_{train,val,test}.txt id lists to import"),
    ] = None,
) -> None:
    """Assign material-level splits: the OmniXAS greedy algorithm, or given id lists."""
    from xas_data.splits import (
        greedy_material_split,
        read_split_file,
        split_site_rows,
        splits_from_lists,
    )
    from xas_data.store import XASDataset

    ds = _run(XASDataset.open, dataset, "a")
    cols = ds.sites(columns=("material", "index"))
    ids = ds.material_ids[cols["material"]]
    if lists is not None:
        found = {}
        for name in ("train", "val", "test"):
            files = sorted(lists.glob(f"*_{name}.txt"))
            found[name] = [pair for f in files for pair in _run(read_split_file, f)]
        splits = _run(splits_from_lists, ids, cols["index"], found)
        _run(ds.set_splits, splits, "imported lists", folder=str(lists))
    else:
        parts = tuple(float(x) for x in fractions.split(","))
        assignment = _run(greedy_material_split, ids, parts, seed)
        _run(
            ds.set_splits,
            split_site_rows(ids, assignment),
            "omnixas_greedy_material",
            fractions=list(parts),
            seed=seed,
        )
    typer.echo(json.dumps(ds.provenance[-1]["counts"]))


class Source(StrEnum):
    omnixas_cu_feff = "omnixas-cu-feff"
    omnixas_ml_arrays = "omnixas-ml-arrays"
    xaslib = "xaslib"
    xdi = "xdi"
    vasp = "vasp"
    xspectra = "xspectra"
    ocean = "ocean"
    xanesnet = "xanesnet"


@app.command()
def ingest(
    kind: Annotated[Source, typer.Argument(help="what to ingest")],
    path: Annotated[Path, typer.Argument(help="folder or file to read")],
    out: Annotated[Path, typer.Option(help="store to write")],
    all_sites: Annotated[
        bool, typer.Option(help="omnixas-cu-feff: keep unlisted sites and curate them")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="replace an existing store")] = False,
    structure: Annotated[
        Path | None, typer.Option(help="vasp/xspectra/ocean: structure of one output file")
    ] = None,
    element: Annotated[str | None, typer.Option(help="vasp/xspectra/ocean: absorber")] = None,
    site: Annotated[int | None, typer.Option(help="theory: absorbing site index")] = None,
    material_id: Annotated[str | None, typer.Option(help="theory: id (default: file stem)")] = None,
    append: Annotated[bool, typer.Option(help="theory: add to the existing store")] = False,
) -> None:
    """Ingest OmniXAS data, XANESNET molecules (spectra.npz + structures_xyz.json, or xyz/ +
    xanes/ folders; bad molecules are skipped with a reason), measured spectra (XAS Data
    Library JSON, XDI files), or theory
    spectra of VASP / XSpectra / OCEAN (the tree `simulate --write-inputs` wrote, or one
    output file with --structure and --element)."""
    from xas_data import ingest as ing

    if kind.value in ("vasp", "xspectra", "ocean"):
        from xas_data.theory_ingest import ingest_theory

        theory = (structure, element, material_id, site)
        ds = _run(ingest_theory, path, out, kind.value, *theory, append=append, overwrite=overwrite)
    elif kind is Source.omnixas_cu_feff:
        ds = _run(ing.ingest_omnixas_cu_feff, path, out, not all_sites, overwrite=overwrite)
    elif kind is Source.omnixas_ml_arrays:
        ds = _run(ing.ingest_omnixas_ml_arrays, path, out, overwrite=overwrite)
    elif kind is Source.xanesnet:
        from xas_data.xanesnet import ingest_xanesnet

        ds, rejected = _run(ingest_xanesnet, path, out, overwrite=overwrite)
        for reason in rejected.values():
            typer.echo(f"skipped: {reason}", err=True)
    else:
        ds = _run(ing.ingest_measured, path, out, kind.value, overwrite=overwrite)
    typer.echo(f"wrote {ds.path}: {ds.n_sites} spectra of {ds.n_materials} materials")


@app.command("ingest-measured")
def ingest_measured_cmd(
    sources: Annotated[
        list[Path],
        typer.Argument(help="xaslib JSON, Athena .prj, XDI, .nor/.dat/.xmu files (or folders)"),
    ],
    out: Annotated[Path, typer.Option(help="store to write or extend (fidelity EXP)")],
    element: Annotated[
        str | None, typer.Option(help="absorber for two-column files / XDI without one")
    ] = None,
    cif: Annotated[
        list[str] | None,
        typer.Option(help="SAMPLE=PATH: structure file for a sample (repeatable)"),
    ] = None,
    keep_unmatched: Annotated[
        bool, typer.Option(help="also store spectra without a structure")
    ] = False,
    flatten: Annotated[bool, typer.Option(help="flatten the post-edge")] = False,
    overwrite: Annotated[
        bool, typer.Option(help="replace the store instead of extending it")
    ] = False,
) -> None:
    """Normalise measured K-edge spectra, link them to structures and store them as EXP."""
    from xas_data.experiment_ingest import ingest_measured_spectra, read_measured_sources
    from xas_data.experiment_processing import ProcessingConfig

    cif_map = {}
    for item in cif or []:
        sample, sep, path = item.partition("=")
        if not sep or not sample.strip() or not path.strip():
            _fail(ValueError(f"--cif {item!r}: use SAMPLE=PATH, e.g. --cif 'CuO=tenorite.cif'"))
        cif_map[sample.strip()] = Path(path.strip())
    problems: list[str] = []
    spectra = _run(read_measured_sources, sources, element, problems=problems)
    if not spectra and problems:
        _fail(ValueError(" | ".join(problems)))
    report = _run(
        ingest_measured_spectra,
        spectra,
        out,
        read_problems=problems,
        cif_map=cif_map,
        config=ProcessingConfig(flatten=flatten),
        keep_unmatched=keep_unmatched,
        overwrite=overwrite,
    )
    typer.echo(report.table())
    if not any(r.status.startswith(("stored", "already")) for r in report.rows):
        raise typer.Exit(1)


@app.command()
def fetch(
    name: Annotated[str | None, typer.Argument(help="registered dataset name")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="cache folder")] = None,
    force: Annotated[bool, typer.Option(help="download again")] = False,
) -> None:
    """Download a registered dataset into the cache (sha256-verified); no name lists them."""
    from xas_data import registry

    if name is None:
        for entry in registry.load_registry().values():
            typer.echo(f"{entry.name:<28}{entry.license:<40}{entry.description[:60]}")
        return
    folder = _run(registry.fetch, name, cache_dir=cache_dir, force=force)
    typer.echo(str(folder))


@app.command()
def verify(
    dataset: Annotated[
        Path | None, typer.Argument(help="store path (default: the shipped default dataset)")
    ] = None,
    rewrite: Annotated[
        Path | None,
        typer.Option(help="also copy the store here with chunk checksums (values verified)"),
    ] = None,
) -> None:
    """Check every chunk of every array: checksums, missing chunks, per-site array lengths,
    all-zero spectra. Exit 2 naming the array on damage."""
    from xas_data.verify import rewrite_store, verify_store

    path = dataset or default_dataset_path()
    report = _run(verify_store, path)
    for line in report.lines():
        typer.echo(line, err=line.startswith("error"))
    if not report.ok:
        raise typer.Exit(2)
    if rewrite is not None:
        copy = _run(rewrite_store, path, rewrite)
        typer.echo(f"wrote {rewrite} (identical values, checksummed): " + copy.lines()[-1])


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
