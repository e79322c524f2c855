"""The test-pulse amplitudes (TPA) a run's raw files announce, read without reading any trace: the
``.test_stamps`` file of a csmpl stream or the record headers of an rdt file (CRESST formats,
`cryopipe.io.cresst`). Cheap: the workflow asks it for every run when it builds the DAG.
"""
from __future__ import annotations

import numpy as np


def raw_test_pulse_amplitudes(spec: dict) -> np.ndarray:
    """TPA (V of the pulser, float32) of every stamp or record of a run's raw files: the test
    stamps of a csmpl run with ``test_stamps``, the record headers of an ``rdt`` run (0: particle,
    < 0: noise; see `cryopipe.io.cresst.record_kind_from_tpa`); empty for other runs."""
    from cryopipe.io import cresst

    if spec.get("csmpl") and spec.get("test_stamps"):
        return np.asarray(cresst.read_test_stamps(spec["test_stamps"])["tpa"])
    if spec.get("rdt"):
        return np.asarray(cresst.open_rdt(spec["rdt"], par=spec.get("par")).tpa)
    return np.zeros(0, np.float32)


def holds_test_pulses(spec: dict) -> bool:
    """True when a run's raw files hold test pulses (record kind "testpulse", by their TPA)."""
    from cryopipe.io.cresst import record_kind_from_tpa

    tpa = raw_test_pulse_amplitudes(spec)
    return bool(tpa.size) and bool(np.any(record_kind_from_tpa(tpa) == "testpulse"))
