"""The volume a bin analyzed (``ml_analyzed``), as the field's reference
readers compute it.

Current bins (schema 2): the syringe's flow rate, 0.25 ml/min, times the
header's run time less its inhibit time. Legacy bins (schema 1) have no run
time in their header; their volume is estimated from the ADC: the run lasts
until the last frame grab, and each trigger's processing (from the previous
frame grab to this trigger's opening, at least a minimum processing time)
is time the instrument was not looking. The flow is 40 syringe steps per
second of 5/48000 ml each (0.25 ml/min).
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from .header import BinId

FLOW_RATE_ML_PER_MINUTE = 0.25
"""The IFCB's sample flow rate."""
LEGACY_FLOW_ML_PER_SECOND = 40 * 5 / 48000
MIN_PROC_TIME = 0.073
"""Seconds a legacy instrument needs to process a trigger, at least."""
IFCB5_MIN_PROC_TIME = 0.05
"""IFCB5's minimum processing time from :data:`IFCB5_FROM` on."""
IFCB5_FROM = datetime(2015, 6, 1, tzinfo=timezone.utc)
_DAY = 86_400.0


def ml_analyzed(
    bin_id: BinId, run_time: float | None, inhibit_time: float | None, adc: pa.Table
) -> float | None:
    """Milliliters analyzed, or None when the bin does not tell."""
    if bin_id.legacy and {"trigger_open_time", "frame_grab_time"} <= set(adc.column_names):
        late_ifcb5 = bin_id.instrument == "IFCB5" and bin_id.time >= IFCB5_FROM
        return legacy_ml_analyzed(adc, IFCB5_MIN_PROC_TIME if late_ifcb5 else MIN_PROC_TIME)
    if run_time is None or inhibit_time is None:
        return None
    return FLOW_RATE_ML_PER_MINUTE * (run_time - inhibit_time) / 60


def legacy_ml_analyzed(adc: pa.Table, min_proc_time: float) -> float | None:
    """The schema-1 estimate: ``(run time − Σ processing times −
    min_proc_time) × flow``, over the first row of each trigger; times that
    went negative (a run past midnight) gain a day. None for an empty ADC."""
    if adc.num_rows == 0:
        return None
    triggers = adc.column("trigger_number").to_numpy(zero_copy_only=False)
    _, first = np.unique(triggers, return_index=True)
    rows = np.sort(first)
    grab = _clock(adc, "frame_grab_time")[rows]
    opened = _clock(adc, "trigger_open_time")[rows]
    proc = np.maximum(opened[1:] - grab[:-1], min_proc_time)
    look = grab[-1] - proc.sum() - min_proc_time
    volume = float(look * LEGACY_FLOW_ML_PER_SECOND)
    return volume if np.isfinite(volume) else None


def _clock(adc: pa.Table, name: str) -> np.ndarray:
    seconds = adc.column(name).to_numpy(zero_copy_only=False).astype(float)
    return np.where(seconds < 0, seconds + _DAY, seconds)
