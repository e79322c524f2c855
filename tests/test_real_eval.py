"""Decisions on labelled measured records (cleaning.real_eval): counts by hand."""
import numpy as np
import pytest

from cryopipe.cleaning import real_eval as re_
from cryopipe.errors import InputError


def test_decision_figures_by_hand():
    cls = ["event_pulse"] * 4 + ["tail_event"] + ["noise"] * 3 + ["pile_up", "spike"]
    kept = [1, 1, 0, 0, 1, 0, 1, 0, 1, 0]
    ood = [0, 0, 1, 0, 0, 0, 1, 1, 0, 1]
    f = re_.decision_figures(cls, np.asarray(kept, bool), np.asarray(ood, bool), ["event_pulse"] * 10)
    p = f["clean_pulse"]
    # clean pulses: 5, kept 3; lost 2: record 2 flagged, record 3 silent
    assert (p["n"], p["kept"], p["wrong"], p["wrong_flagged"], p["wrong_silent"]) == (5, 3, 2, 1, 1)
    assert p["kept_fraction"] == pytest.approx(0.6) and p["flagged_fraction_of_wrong"] == pytest.approx(0.5)
    assert p["ood_fraction"] == pytest.approx(0.2) and p["predicted"] == {"event_pulse": 5}
    n = f["clean_noise"]
    # clean noise: 3, kept (wrongly) 1 (record 6, flagged)
    assert (n["n"], n["kept"], n["wrong"], n["wrong_flagged"], n["wrong_silent"]) == (3, 1, 1, 1, 0)
    r = f["rejected"]
    # rejected: pile_up kept silently, spike removed
    assert (r["n"], r["kept"], r["wrong"], r["wrong_flagged"], r["wrong_silent"]) == (2, 1, 1, 0, 1)
    assert (f["right"], f["flagged"], f["silently_wrong"]) == (6, 2, 2)
    assert f["ood_available"]


def test_without_ood_everything_wrong_is_silent():
    f = re_.decision_figures(["event_pulse", "noise"], np.array([False, True]))
    assert not f["ood_available"] and f["flagged"] == 0 and f["silently_wrong"] == 2
    assert np.isnan(f["clean_pulse"]["ood_fraction"]) and "overall: 0 right" in re_.format_figures("t", {
        **f, "excluded": 0})


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="decisions"):
        re_.decision_figures(["event_pulse", "noise"], np.array([True]))
