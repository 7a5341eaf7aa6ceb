"""FEFF10 simulation: presets, input generation, parallel resumable runs, xmu.dat parsing."""

from xas_data.simulation.feff_inputs import feff_input_text
from xas_data.simulation.presets import FEFF_PRESETS, FeffPreset, get_preset
from xas_data.simulation.runner import SimulationReport, SiteTask, plan_tasks, run_simulations
from xas_data.simulation.xmu import XmuData, parse_xmu

__all__ = [
    "FEFF_PRESETS",
    "FeffPreset",
    "SimulationReport",
    "SiteTask",
    "XmuData",
    "feff_input_text",
    "get_preset",
    "parse_xmu",
    "plan_tasks",
    "run_simulations",
]
