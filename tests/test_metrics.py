"""edge_cm.metrics against the official ASVspoof reference values, plus property tests."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared_root
from edge_cm.errors import EdgeCMError
from edge_cm.metrics import (ASVSPOOF2019_COST, CostModel, DegenerateScoresError, MetricsError, asv_operating_point,
                             auc, breakdown, compute_det_curve, compute_eer, compute_min_tdcf, macro_f1,
                             min_tdcf_or_none, obtain_asv_error_rates)

TOL = 1e-6


def _reference() -> dict:
    with open(shared_root() / "reference" / "eer_cases.json", encoding="utf-8") as f:
        return json.load(f)


REFERENCE = _reference()
CASES = REFERENCE["cases"]
ASV = REFERENCE["asv"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_eer_matches_official(case):
    eer, threshold = compute_eer(case["bonafide"], case["spoof"])
    assert eer == pytest.approx(case["eer"], abs=TOL)
    assert threshold == pytest.approx(case["eer_threshold"], abs=TOL)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_min_tdcf_matches_official(case):
    args = (case["bonafide"], case["spoof"], ASV["target"], ASV["nontarget"], ASV["spoof"])
    if case["min_tdcf"] is None:
        with pytest.raises(DegenerateScoresError, match="3 distinct CM scores"):
            compute_min_tdcf(*args)
        assert min_tdcf_or_none(*args) is None
    else:
        assert compute_min_tdcf(*args) == pytest.approx(case["min_tdcf"], abs=TOL)
        assert min_tdcf_or_none(*args, cost_model=ASVSPOOF2019_COST) == pytest.approx(case["min_tdcf"], abs=TOL)


def test_asv_operating_point_matches_official():
    point = asv_operating_point(ASV["target"], ASV["nontarget"], ASV["spoof"])
    assert point["eer"] == pytest.approx(ASV["eer"], abs=TOL)
    assert point["threshold"] == pytest.approx(ASV["threshold"], abs=TOL)
    rates = obtain_asv_error_rates(ASV["target"], ASV["nontarget"], ASV["spoof"], ASV["threshold"])
    expected = (ASV["Pfa_asv"], ASV["Pmiss_asv"], ASV["Pmiss_spoof_asv"])
    assert rates == pytest.approx(expected, abs=TOL)


def test_cost_model_matches_reference():
    ref = REFERENCE["cost_model"]
    assert ASVSPOOF2019_COST.Pspoof == pytest.approx(ref["Pspoof"])
    assert ASVSPOOF2019_COST.Ptar == pytest.approx(ref["Ptar"])
    assert ASVSPOOF2019_COST.Pnon == pytest.approx(ref["Pnon"])
    assert (ASVSPOOF2019_COST.Cmiss_cm, ASVSPOOF2019_COST.Cfa_cm) == (ref["Cmiss_cm"], ref["Cfa_cm"])
    assert (ASVSPOOF2019_COST.Cmiss_asv, ASVSPOOF2019_COST.Cfa_asv) == (ref["Cmiss_asv"], ref["Cfa_asv"])


def test_asv_error_rates_count_ties_as_accepted():
    # Pfa counts nontarget >= threshold, misses count < threshold.
    pfa, pmiss, pmiss_spoof = obtain_asv_error_rates([1.0, 2.0], [0.0, 1.0, 3.0, 5.0], [1.0, 0.5], threshold=1.0)
    assert (pfa, pmiss, pmiss_spoof) == (0.75, 0.0, 0.5)
    assert obtain_asv_error_rates([1.0], [0.0], None, 0.5)[2] is None


def test_det_curve_shape_and_ends():
    frr, far, thr = compute_det_curve([0.2, 0.9, 0.4], [0.1, 0.3])
    assert frr.shape == far.shape == thr.shape == (6,)
    assert (frr[0], far[0], frr[-1], far[-1]) == (0.0, 1.0, 1.0, 0.0)
    assert thr[0] == pytest.approx(0.1 - 0.001)
    assert np.all(np.diff(frr) >= 0) and np.all(np.diff(far) <= 0)


def test_eer_tie_puts_bonafide_first():
    # One bona fide and one spoof with equal scores: pessimistic EER 1.0, as the official code.
    assert compute_eer([0.5], [0.5]) == (1.0, 0.5)


def test_eer_picks_first_minimiser():
    # |FRR - FAR| ties at k=1 (0.0 vs 0.5) and k=2 (1.0 vs 0.5): the first one wins, EER 0.25.
    # Mirrored (negated, classes swapped) the first minimiser is the other point, EER 0.75.
    assert compute_eer([1.0], [0.0, 2.0]) == (0.25, 0.0)
    assert compute_eer([-0.0, -2.0], [-1.0])[0] == 0.75


# ------------------------------------------------------------------------------------------- properties

small_ints = st.lists(st.integers(-40, 40), min_size=1, max_size=40)
TRANSFORMS = {
    "affine": lambda x: 3.0 * x - 7.0,
    "exp": lambda x: np.exp(x / 7.0),
    "cubic": lambda x: x ** 3 + x,
}


@settings(max_examples=60, deadline=None)
@given(bona=small_ints, spoof=small_ints, name=st.sampled_from(sorted(TRANSFORMS)))
def test_eer_invariant_under_increasing_transform(bona, spoof, name):
    f = TRANSFORMS[name]
    b, s = np.array(bona, dtype=float), np.array(spoof, dtype=float)
    eer, thr = compute_eer(b, s)
    eer_t, thr_t = compute_eer(f(b), f(s))
    assert eer_t == eer
    if thr in np.concatenate([b, s]):  # not the artificial "lowest - 0.001" threshold
        assert thr_t == pytest.approx(f(thr))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 30))
def test_eer_invariant_under_negate_and_swap_equal_sizes(data, n):
    bona = np.array(data.draw(st.lists(st.integers(-10, 10), min_size=n, max_size=n)), dtype=float)
    spoof = np.array(data.draw(st.lists(st.integers(-10, 10), min_size=n, max_size=n)), dtype=float)
    assert compute_eer(-spoof, -bona)[0] == pytest.approx(compute_eer(bona, spoof)[0], abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(bona=small_ints, spoof=small_ints)
def test_eer_negate_and_swap_unequal_sizes_within_half_step(bona, spoof):
    # With unequal class sizes |FRR - FAR| can tie at two points; the first-minimiser rule then
    # picks mirror-image points, which differ by one half step at most.
    b, s = np.array(bona, dtype=float), np.array(spoof, dtype=float)
    gap = abs(compute_eer(-s, -b)[0] - compute_eer(b, s)[0])
    assert gap <= 0.5 / min(b.size, s.size) + 1e-12


@settings(max_examples=80, deadline=None)
@given(bona=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=30),
       spoof=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=30))
def test_auc_range_symmetry_and_pairwise_definition(bona, spoof):
    a = auc(bona, spoof)
    assert 0.0 <= a <= 1.0
    assert a + auc(spoof, bona) == pytest.approx(1.0, abs=1e-12)
    b, s = np.array(bona)[:, None], np.array(spoof)[None, :]
    assert a == pytest.approx(float(np.mean((b > s) + 0.5 * (b == s))), abs=1e-12)


def test_auc_hand_case():
    # pairs (1,0) win, (1,2) lose, (2,0) win, (2,2) tie -> 2.5 / 4
    assert auc([1.0, 2.0], [0.0, 2.0]) == 0.625
    assert auc([3.0], [1.0, 2.0]) == 1.0


def test_macro_f1_hand_case():
    labels = ["bonafide", "bonafide", "spoof", "spoof", "spoof"]
    scores = [0.9, 0.4, 0.6, 0.2, 0.1]
    # At 0.5: bona fide called for 0.9 and 0.6. Bona fide F1 = 2*1/(2+1+1) = 0.5;
    # spoof F1 = 2*2/(4+1+1) = 2/3; macro = 7/12.
    assert macro_f1(labels, scores, 0.5) == pytest.approx(7 / 12)
    assert macro_f1([0, 0, 1, 1, 1], scores, 0.5) == pytest.approx(7 / 12)  # class indices, 0 = bonafide
    spoof_scores = [1 - x for x in scores]
    assert macro_f1(labels, spoof_scores, 0.5, higher_means="spoof") == pytest.approx(7 / 12)
    assert macro_f1(labels, scores, 0.95) == pytest.approx((0 + 2 * 3 / (6 + 2)) / 2)


def test_breakdown_per_system_and_pooled():
    rng = np.random.default_rng(3)
    bona = rng.normal(2.0, 1.0, 200)
    easy = rng.normal(-2.0, 1.0, 150)
    hard = rng.normal(1.5, 1.0, 100)
    scores = np.concatenate([bona, easy, hard])
    labels = ["bonafide"] * 200 + ["spoof"] * 250
    systems = ["-"] * 200 + ["A01"] * 150 + ["A02"] * 100
    out = breakdown(scores, labels, systems)
    assert set(out["systems"]) == {"A01", "A02"}
    assert out["systems"]["A01"]["eer"] == compute_eer(bona, easy)[0]
    assert out["systems"]["A02"]["eer"] == compute_eer(bona, hard)[0]
    assert out["systems"]["A01"]["eer"] < out["pooled"]["eer"] < out["systems"]["A02"]["eer"]
    assert out["pooled"]["eer"] == compute_eer(bona, np.concatenate([easy, hard]))[0]
    assert out["pooled"]["auc"] == auc(bona, np.concatenate([easy, hard]))
    assert (out["pooled"]["n_bonafide"], out["pooled"]["n_spoof"], out["systems"]["A02"]["n_spoof"]) == (200, 250, 100)
    # The runtime's spoof-probability orientation gives the same rates, thresholds negated.
    flipped = breakdown(-scores, labels, systems, higher_means="spoof")
    assert flipped["pooled"]["eer"] == out["pooled"]["eer"]
    assert flipped["systems"]["A02"]["threshold"] == -out["systems"]["A02"]["threshold"]


# ------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("bona, spoof, message", [
    ([], [0.1], "bonafide scores are empty"),
    ([0.1], [], "spoof scores are empty"),
    ([0.1, math.nan], [0.2], "NaN"),
    ([0.1], [math.inf], "NaN/Inf"),
    (["a"], [0.2], "not numbers"),
])
def test_bad_scores_raise_metrics_error(bona, spoof, message):
    for fn in (compute_eer, auc):
        with pytest.raises(MetricsError, match=message):
            fn(bona, spoof)


def test_metrics_errors_are_edge_cm_errors():
    assert issubclass(MetricsError, EdgeCMError) and issubclass(DegenerateScoresError, MetricsError)


def test_bad_labels_and_lengths():
    with pytest.raises(MetricsError, match="2 labels for 3 scores"):
        macro_f1(["bonafide", "spoof"], [0.1, 0.2, 0.3], 0.5)
    with pytest.raises(MetricsError, match="unknown labels"):
        macro_f1(["bonafide", "fake"], [0.1, 0.2], 0.5)
    with pytest.raises(MetricsError, match="both bona fide and spoof"):
        macro_f1(["spoof", "spoof"], [0.1, 0.2], 0.5)
    with pytest.raises(MetricsError, match="system names"):
        breakdown([0.1, 0.2], ["bonafide", "spoof"], ["-"])
    with pytest.raises(MetricsError, match="higher_means"):
        breakdown([0.1, 0.2], ["bonafide", "spoof"], ["-", "A01"], higher_means="up")
    with pytest.raises(MetricsError, match="NaN"):
        breakdown([0.1, math.nan], ["bonafide", "spoof"], ["-", "A01"])


def test_bad_cost_model_and_asv_spoof():
    bad = CostModel(Pspoof=0.5, Ptar=0.5, Pnon=0.5, Cmiss_asv=1, Cfa_asv=10, Cmiss_cm=1, Cfa_cm=10)
    cm = ([0.1, 0.5, 0.9], [0.0, 0.3])
    with pytest.raises(MetricsError, match="sum to"):
        compute_min_tdcf(*cm, ASV["target"], ASV["nontarget"], ASV["spoof"], cost_model=bad)
    with pytest.raises(MetricsError, match="ASV spoof scores are empty"):
        compute_min_tdcf(*cm, ASV["target"], ASV["nontarget"], [])
    with pytest.raises(MetricsError, match="NaN"):
        compute_min_tdcf(*cm, ASV["target"], ASV["nontarget"], [0.1, math.nan])
