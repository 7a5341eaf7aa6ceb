"""Simulation-to-experiment calibration: the ``calibrate`` recipe (head fine-tuning on measured
spectra over random splits), the shift+broadening baseline, and measured-spectra pairing."""

from xas_train.calibration.data import MeasuredSet, forward_average, load_measured_set
from xas_train.calibration.experiment import (
    CalibrationConfig,
    load_calibration_config,
    make_splits,
    render_summary,
    run_calibration,
)
from xas_train.calibration.head import finetune_head, head_groups, predict_measured
from xas_train.calibration.shift_broaden import ShiftBroadening, fit_shift_broadening

__all__ = [
    "CalibrationConfig",
    "MeasuredSet",
    "ShiftBroadening",
    "finetune_head",
    "fit_shift_broadening",
    "forward_average",
    "head_groups",
    "load_calibration_config",
    "load_measured_set",
    "make_splits",
    "predict_measured",
    "render_summary",
    "run_calibration",
]
