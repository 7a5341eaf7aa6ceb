"""Recipe of the shipped default dataset: AMCSD minerals (larixite) -> FEFF10 at two fidelities.

``fast`` spectra for up to ``sites_per_element`` symmetry-inequivalent sites of each element,
``accurate`` spectra for the ``accurate_per_element`` of those sites that are cheapest to
simulate (``feff_cost_estimate``), so the high-fidelity side of cross-fidelity learning is a
subset of the low-fidelity sites.
Tasks are interleaved across elements, so a partial run still covers every element.

Run: ``xas-data simulate-default --workdir DIR`` (resumable), then ``xas-data build-default DIR``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from xas_data.io_utils import atomic_write_text
from xas_data.simulation.runner import SiteTask, plan_tasks, run_simulations
from xas_data.structures import mineral_structures

DEFAULT_ELEMENTS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")


@dataclass(frozen=True)
class DefaultDatasetRecipe:
    """Knobs of the default dataset (counts are per absorbing element)."""

    elements: tuple[str, ...] = DEFAULT_ELEMENTS
    sites_per_element: int = 100
    accurate_per_element: int = 14
    max_atoms: int = 80
    max_sites_per_material: int = 4


def feff_cost_estimate(structure, site_index: int, fms: float = 5.0, scf: float = 3.5) -> float:
    """Relative cost of an ``accurate`` FEFF run of one site (arbitrary units).

    FMS inverts a matrix over the atoms within ``fms`` Angstrom (cubic), the SCF loop repeats
    small-cluster FMS per unique potential (atoms within ``scf``, squared).
    """
    n_fms = len(structure.get_neighbors(structure[site_index], fms))
    n_scf = len(structure.get_neighbors(structure[site_index], scf))
    n_potentials = len(structure.composition.elements) + 1
    return n_fms**3 / 1000 + n_potentials * n_scf**2 / 10


def _interleave(groups: list[list[SiteTask]]) -> list[SiteTask]:
    return [t for batch in zip_longest(*groups) for t in batch if t is not None]


def plan_default(workdir: str | Path, recipe: DefaultDatasetRecipe = DefaultDatasetRecipe()):
    """Select structures and write ``plan.json`` with the fast and accurate task lists."""
    workdir = Path(workdir)
    plan_path = workdir / "plan.json"
    if plan_path.exists():
        plan = json.loads(plan_path.read_text())
        return [SiteTask(**t) for t in plan["fast"]], [SiteTask(**t) for t in plan["accurate"]]
    fast_groups, accurate_groups = [], []
    for element in recipe.elements:
        # oxides first, then the element's other minerals; smallest cells first (cheapest FEFF)
        oxides = mineral_structures(element, ("O",), max_atoms=recipe.max_atoms)
        others = mineral_structures(element, (), max_atoms=recipe.max_atoms)
        oxide_ids = {r.material_id for r in oxides}
        records = sorted(oxides, key=lambda r: (len(r.structure), r.material_id)) + sorted(
            (r for r in others if r.material_id not in oxide_ids),
            key=lambda r: (len(r.structure), r.material_id),
        )
        tasks: list[SiteTask] = []
        structures = {r.material_id: r.structure for r in records}
        for record in records:
            if len(tasks) >= recipe.sites_per_element:
                break
            new = plan_tasks([record], element, workdir, recipe.max_sites_per_material)
            tasks.extend(new[: recipe.sites_per_element - len(tasks)])
        fast_groups.append(tasks)
        # accurate: the cheapest sites of the same list (SCF + FMS cost grow with cluster size)
        costs = [feff_cost_estimate(structures[t.material_id], t.site_index) for t in tasks]
        order = sorted(range(len(tasks)), key=lambda i: (costs[i], i))
        accurate_groups.append([tasks[i] for i in order[: recipe.accurate_per_element]])
    fast, accurate = _interleave(fast_groups), _interleave(accurate_groups)
    payload = {
        "recipe": recipe.__dict__,
        "fast": [t.__dict__ for t in fast],
        "accurate": [t.__dict__ for t in accurate],
    }
    atomic_write_text(plan_path, json.dumps(payload, indent=1))
    return fast, accurate


def simulate_default(workdir: str | Path, workers: int = 2, progress: bool = True) -> dict:
    """Plan (once) and run both fidelities; resumable. Returns the two reports' summaries."""
    fast, accurate = plan_default(workdir)
    reports = {}
    for preset, tasks in (("fast", fast), ("accurate", accurate)):
        report = run_simulations(tasks, workdir, preset, workers=workers, progress=progress)
        reports[preset] = report.summary()
        print(f"[{preset}] {report.summary()}", flush=True)
    return reports


def build_default(workdir: str | Path, out: str | Path, overwrite: bool = False):
    """Curate the default plan's sites of ``workdir`` (which may hold other sites too, e.g. the
    campaign's) into the default store at ``out``, on edge-anchored grids."""
    from xas_data.build import build_from_simulations

    fast, accurate = plan_default(workdir)
    return build_from_simulations(
        workdir,
        out,
        name="xas-default",
        task_ids={t.task_id for t in fast + accurate},
        overwrite=overwrite,
    )


if __name__ == "__main__":
    import sys

    simulate_default(sys.argv[1], workers=int(sys.argv[2]) if len(sys.argv) > 2 else 2)
