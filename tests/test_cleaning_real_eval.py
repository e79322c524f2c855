"""Decisions on labelled measured records (cleaning.real_eval): counts by hand."""
import numpy as np
import pytest

from cryopipe.cleaning import real_eval as re_
from cryopipe.errors import InputError


def test_decision_figures_by_hand():
    cls = ["event_pulse"] * 4 + ["tail_event"] + ["noise"] * 3 + ["pile_up", "spike"]
    kept = [1, 1, 0, 0, 1, 0, 1, 0, 1, 0]
    ood = [0, 0, 1, 0, 0, 0, 1, 1, 0, 1]
    f = re_.decision_figures(cls, np.asarray(kept, bool), ood=np.asarray(ood, bool),
                             predicted_class=["event_pulse"] * 10)
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


def test_unsure_flags_count_as_flagged():
    # pulses: lost unsure (flagged), lost ood (flagged), lost neither (silent), kept unsure (right, unsure)
    cls = ["event_pulse"] * 4 + ["noise"]
    kept = np.array([0, 0, 0, 1, 1], bool)
    ood = np.array([0, 1, 0, 0, 0], bool)
    unsure = np.array([1, 0, 0, 1, 1], bool)
    f = re_.decision_figures(cls, kept, ood=ood, unsure=unsure)
    p = f["clean_pulse"]
    assert (p["wrong"], p["wrong_flagged"], p["wrong_ood"], p["wrong_unsure"], p["wrong_silent"]) == (3, 2, 1, 1, 1)
    assert (f["right"], f["right_unsure"], f["flagged"], f["silently_wrong"]) == (1, 1, 3, 1)
    assert f["clean_pulse"]["ood_fraction"] == pytest.approx(0.25)
    text = re_.format_figures("hand", {**f, "excluded": 0})
    assert "2 flagged (ood 1, unsure 1), 1 silently" in text and "1 of them flagged unsure" in text


def test_without_ood_everything_wrong_is_silent():
    f = re_.decision_figures(["event_pulse", "noise"], np.array([False, True]))
    assert not f["ood_available"] and f["flagged"] == 0 and f["silently_wrong"] == 2
    assert np.isnan(f["clean_pulse"]["ood_fraction"]) and "overall: 0 right" in re_.format_figures("t", {
        **f, "excluded": 0})


def test_cuts_on_noise_records_are_right_when_they_accept_clean_noise():
    """On a noise file the cuts' "accepted" means a clean noise record: accepting clean noise is
    right, accepting a spike or a pulse is wrong (counted by hand)."""
    cls = ["noise"] * 4 + ["spike", "event_pulse", "decaying_baseline"]
    accepted = np.array([1, 1, 1, 0, 1, 0, 0], bool)
    f = re_.decision_figures(cls, accepted, accepted_means="clean_noise")
    n, p, r = f["clean_noise"], f["clean_pulse"], f["rejected"]
    assert (n["n"], n["kept"], n["wrong"]) == (4, 3, 1)          # one clean noise record lost
    assert (p["n"], p["kept"], p["wrong"]) == (1, 0, 0)          # the pulse not accepted: right
    assert (r["n"], r["kept"], r["wrong"]) == (2, 1, 1)          # the spike accepted: wrong
    assert (f["right"], f["silently_wrong"]) == (5, 2)
    text = re_.format_figures("cuts", {**f, "excluded": 0})
    assert "clean noise kept: 3/4" in text and "of the 1 lost wrongly" in text
    assert "clean pulses kept (wrongly): 0/1" in text
    with pytest.raises(InputError, match="accepted_means"):
        re_.decision_figures(cls, accepted, accepted_means="noise")


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="decisions"):
        re_.decision_figures(["event_pulse", "noise"], np.array([True]))


from real_data import NIST_DIR as NIST


@pytest.mark.skipif(not (NIST / "regress_chan1.ljh").is_file(), reason="NIST example files not present")
def test_real_data_section_with_a_stub_model_and_cut_labels(tmp_path):
    """A stub 'model' that keeps every record: all clean pulses kept, every other record kept wrongly
    (silently: no OOD score); the cut labels store is compared record by record."""
    pytest.importorskip("cryopipe.io.ljh")
    import torch
    import xarray as xr

    from cryopipe.cleaning.evaluate_cli import real_data_section
    from cryopipe.cleaning.models import Classifier
    from cryopipe.cleaning.real_labels import load_label_file
    from cryopipe.io.stores import provenance, write_store

    class KeepAll(Classifier):
        def __init__(self):
            super().__init__(1)
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.full((x.shape[0], 1), 5.0) + 0 * self.w

    acc = np.zeros((1, 300), bool)
    acc[0, 125:135] = True                                               # cuts keep records 125-134 only
    store = tmp_path / "labels.zarr"
    write_store(xr.Dataset({"accepted": (("channel", "event"), acc),
                            "cut_flags": (("cut", "channel", "event"), acc[None])},
                           attrs=provenance("labels")), store, "labels")
    res = real_data_section({"keep all": (KeepAll(), 0.5)}, NIST, cut_labels=store)
    stored = load_label_file()["files"]
    c1 = res["results"]["regress_chan1.ljh"]
    f = c1["keep all"]
    assert f["clean_pulse"]["kept"] == f["clean_pulse"]["n"] == stored["regress_chan1.ljh"]["counts"]["clean_pulse"]
    assert f["rejected"]["wrong_silent"] == f["rejected"]["n"] and not f["ood_available"]
    cuts = c1["cut labels"]
    assert stored["regress_chan1.ljh"]["event_class"][129] == "pile_up"
    assert (cuts["clean_pulse"]["kept"], cuts["rejected"]["kept"], cuts["rejected"]["wrong_silent"]) == (9, 1, 1)
    n = res["results"]["regress_noise_chan1.ljh"]["keep all"]
    assert n["clean_noise"]["kept"] == stored["regress_noise_chan1.ljh"]["counts"]["clean_noise"]
    assert "cut labels" not in res["results"]["regress_noise_chan1.ljh"]     # this store has no noise records
    assert "AUTOMATIC labels" in res["markdown"] and "pretrigger NOT passed" in res["markdown"]
    said = c1["keep all (pretrigger not passed)"]["run_warning"]      # the trigger is at 512 of 1024
    assert said and "pass --pretrigger 5" in said and "N/4 assumed" in said
    # a run with noise_ljh: the labels store holds the pulse file's records, then the noise file's
    both = np.zeros((1, 600), bool)
    both[0, :300] = acc[0]
    both[0, 300:] = np.array(stored["regress_noise_chan1.ljh"]["event_class"]) == "noise"   # cuts = hand labels
    store2 = tmp_path / "labels2.zarr"
    write_store(xr.Dataset({"accepted": (("channel", "event"), both),
                            "cut_flags": (("cut", "channel", "event"), both[None])},
                           attrs=provenance("labels")), store2, "labels")
    res2 = real_data_section({"keep all": (KeepAll(), 0.5)}, NIST, cut_labels=store2)
    again = res2["results"]["regress_chan1.ljh"]["cut labels"]
    assert [again[k]["kept"] for k in ("clean_pulse", "rejected")] == [cuts[k]["kept"] for k in ("clean_pulse", "rejected")]
    noise_cuts = res2["results"]["regress_noise_chan1.ljh"]["cut labels"]
    assert noise_cuts["clean_noise"]["kept"] == stored["regress_noise_chan1.ljh"]["counts"]["clean_noise"]
    assert noise_cuts["rejected"]["kept"] == 0


def test_the_records_pretrigger_reaches_the_model():
    """A stub model that accepts a record when its rise lies at 1/4 of the model's window (samples 110-140
    of 512): records of 1024 samples rising at sample 512 are kept only when pretrigger=512 is passed."""
    import torch

    from cryopipe.cleaning.models import Classifier

    class RiseAtQuarter(Classifier):
        def __init__(self):
            super().__init__(1)
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return (10.0 * (x[:, 140] - x[:, 110] > 0.5).float() - 5.0)[:, None] + 0 * self.w

    class RiseAtQuarterTwoClasses(Classifier):            # multi-class head: class 1 "event_pulse" accepted
        def __init__(self):
            super().__init__(2)
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.class_names, self.accepted = ["early_or_late_trigger", "event_pulse"], [1]

        def forward(self, x):
            z = 10.0 * (x[:, 140] - x[:, 110] > 0.5).float() - 5.0
            return torch.stack([-z, z], dim=1) + 0 * self.w

    x = np.zeros((4, 1024), np.float32)
    x[:, 512:] = 1.0
    for model in (RiseAtQuarter(), RiseAtQuarterTwoClasses()):
        assert re_.model_decisions(model, x, 512, 0.5)["kept"].all()
        assert not re_.model_decisions(model, x, None, 0.5)["kept"].any()
    d = re_.model_decisions(RiseAtQuarterTwoClasses(), x, None, 0.5)
    assert list(d["predicted_class"]) == ["early_or_late_trigger"] * 4 and d["ood"] is None
