"""Detection metrics of anti-spoofing: EER, min t-DCF (ASVspoof 2019 form), AUC, macro-F1.

numpy only, so the runtime and the training stack share one audited implementation.

Score convention of this module: **higher = more bona fide** (the ASVspoof convention).
The edge-cm runtime reports spoof probabilities (higher = more spoof); pass
``higher_means="spoof"`` to :func:`breakdown` / :func:`macro_f1`, or negate the scores,
before using the other functions. Rates (EER, FAR, FRR, t-DCF) are fractions, not percent.

EER and t-DCF follow the conventions of the official ASVspoof 2019 scoring code, as written
down in ``shared/reference/README.md`` (stable sort with bona fide before spoof on ties,
thresholds = [lowest - 0.001] + sorted scores, first index minimising |FRR - FAR|).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .errors import EdgeCMError

BONAFIDE = "bonafide"
SPOOF = "spoof"


class MetricsError(EdgeCMError):
    """Scores or labels that cannot be scored: empty, NaN/Inf, mismatched lengths, one class only."""


class DegenerateScoresError(MetricsError):
    """Too few distinct CM scores for a min t-DCF (hard decisions instead of soft scores)."""


@dataclass(frozen=True)
class CostModel:
    """t-DCF priors and costs (ASVspoof 2019 form); probabilities are fractions."""

    Pspoof: float
    Ptar: float
    Pnon: float
    Cmiss_asv: float
    Cfa_asv: float
    Cmiss_cm: float
    Cfa_cm: float

    def validate(self) -> None:
        costs = (self.Cmiss_asv, self.Cfa_asv, self.Cmiss_cm, self.Cfa_cm)
        priors = (self.Pspoof, self.Ptar, self.Pnon)
        if any(c < 0 for c in costs) or any(p < 0 for p in priors):
            raise MetricsError(f"cost model has a negative cost or prior: {self}")
        total = self.Ptar + self.Pnon + self.Pspoof
        if abs(total - 1.0) > 1e-10:
            raise MetricsError(f"cost model priors Ptar + Pnon + Pspoof sum to {total}, not 1",
                               hint="make the three priors sum to 1")


#: ASVspoof 2019 LA defaults: Pspoof 0.05, Ptar 0.95 * 0.99, Pnon 0.95 * 0.01, Cmiss 1, Cfa 10.
ASVSPOOF2019_COST = CostModel(Pspoof=0.05, Ptar=0.95 * 0.99, Pnon=0.95 * 0.01,
                              Cmiss_asv=1.0, Cfa_asv=10.0, Cmiss_cm=1.0, Cfa_cm=10.0)

#: Fewest distinct CM scores the official t-DCF code accepts (fewer = hard decisions).
MIN_DISTINCT_TDCF_SCORES = 3


def _scores(values: Iterable[float], name: str) -> np.ndarray:
    """1-D float64 copy of ``values``; raises MetricsError when empty or non-finite."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"{name} scores are not numbers: {exc}") from exc
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size == 0:
        raise MetricsError(f"{name} scores are empty", hint=f"pass at least one {name} score")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise MetricsError(f"{name} scores hold {int(bad.sum())} NaN/Inf value(s), first at index {first}",
                           hint="drop or fix the trials whose model output was not finite")
    return arr


def compute_det_curve(bonafide_scores: Iterable[float], spoof_scores: Iterable[float]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DET curve ``(frr, far, thresholds)``, each of length n_bonafide + n_spoof + 1.

    Entry k describes the decision "accept the trials ranked above the first k": FRR(k) is the
    fraction of bona fide scores among the k lowest scores, FAR(k) the fraction of spoof scores
    above them. Ties sort bona fide first (stable sort of [bonafide, spoof]).
    """
    bona = _scores(bonafide_scores, BONAFIDE)
    spoof = _scores(spoof_scores, SPOOF)
    all_scores = np.concatenate([bona, spoof])
    is_bona = np.concatenate([np.ones(bona.size), np.zeros(spoof.size)])
    # Stable sort: equal scores keep bona fide ahead of spoof, as the official code does.
    order = np.argsort(all_scores, kind="mergesort")
    bona_below = np.cumsum(is_bona[order])
    spoof_below = np.arange(1, all_scores.size + 1) - bona_below
    frr = np.concatenate([[0.0], bona_below / bona.size])
    far = np.concatenate([[1.0], (spoof.size - spoof_below) / spoof.size])
    thresholds = np.concatenate([[all_scores[order[0]] - 0.001], all_scores[order]])
    return frr, far, thresholds


def compute_eer(bonafide_scores: Iterable[float], spoof_scores: Iterable[float]) -> tuple[float, float]:
    """Equal error rate (fraction) and its threshold; higher score = more bona fide."""
    frr, far, thresholds = compute_det_curve(bonafide_scores, spoof_scores)
    k = int(np.argmin(np.abs(frr - far)))  # argmin returns the first minimiser
    return float((frr[k] + far[k]) / 2.0), float(thresholds[k])


def obtain_asv_error_rates(target_scores: Iterable[float], nontarget_scores: Iterable[float],
                           spoof_scores: Iterable[float] | None, threshold: float
                           ) -> tuple[float, float, float | None]:
    """ASV error rates at ``threshold``: (Pfa_asv, Pmiss_asv, Pmiss_spoof_asv).

    Pfa counts nontarget scores >= threshold; the misses count scores < threshold.
    Pmiss_spoof_asv is None when no spoof ASV scores are given.
    """
    tar = _scores(target_scores, "ASV target")
    non = _scores(nontarget_scores, "ASV nontarget")
    if not np.isfinite(threshold):
        raise MetricsError(f"ASV threshold is not finite: {threshold}")
    pfa = float(np.sum(non >= threshold) / non.size)
    pmiss = float(np.sum(tar < threshold) / tar.size)
    if spoof_scores is None:
        return pfa, pmiss, None
    spf = np.asarray(spoof_scores, dtype=np.float64).reshape(-1)
    if spf.size == 0:
        return pfa, pmiss, None
    spf = _scores(spf, "ASV spoof")
    return pfa, pmiss, float(np.sum(spf < threshold) / spf.size)


def asv_operating_point(target_scores: Iterable[float], nontarget_scores: Iterable[float],
                        spoof_scores: Iterable[float] | None) -> dict[str, float | None]:
    """ASV EER threshold and the error rates there (the operating point t-DCF assumes)."""
    eer, threshold = compute_eer(target_scores, nontarget_scores)
    pfa, pmiss, pmiss_spoof = obtain_asv_error_rates(target_scores, nontarget_scores, spoof_scores, threshold)
    return {"eer": eer, "threshold": threshold, "Pfa_asv": pfa, "Pmiss_asv": pmiss,
            "Pmiss_spoof_asv": pmiss_spoof}


def compute_tdcf_curve(bonafide_cm: Iterable[float], spoof_cm: Iterable[float], pfa_asv: float,
                       pmiss_asv: float, pmiss_spoof_asv: float,
                       cost_model: CostModel = ASVSPOOF2019_COST) -> tuple[np.ndarray, np.ndarray]:
    """Normalised t-DCF (2019 form) at every CM threshold: ``(tdcf_norm, thresholds)``.

    Raises DegenerateScoresError when the CM gives fewer than 3 distinct scores, and
    MetricsError when the ASV error rates make a cost coefficient negative.
    """
    bona = _scores(bonafide_cm, "bona fide CM")
    spoof = _scores(spoof_cm, "spoof CM")
    cost_model.validate()
    n_distinct = np.unique(np.concatenate([bona, spoof])).size
    if n_distinct < MIN_DISTINCT_TDCF_SCORES:
        raise DegenerateScoresError(
            f"min t-DCF needs at least {MIN_DISTINCT_TDCF_SCORES} distinct CM scores, got {n_distinct}",
            hint="pass soft scores (e.g. logits or probabilities), not binary decisions")
    for name, rate in (("Pfa_asv", pfa_asv), ("Pmiss_asv", pmiss_asv), ("Pmiss_spoof_asv", pmiss_spoof_asv)):
        if rate is None or not 0.0 <= rate <= 1.0:
            raise MetricsError(f"{name} = {rate} is not a fraction in [0, 1]")
    pmiss_cm, pfa_cm, thresholds = compute_det_curve(bona, spoof)
    c1 = cost_model.Ptar * (cost_model.Cmiss_cm - cost_model.Cmiss_asv * pmiss_asv) \
        - cost_model.Pnon * cost_model.Cfa_asv * pfa_asv
    c2 = cost_model.Cfa_cm * cost_model.Pspoof * (1.0 - pmiss_spoof_asv)
    if c1 < 0 or c2 < 0:
        raise MetricsError(f"t-DCF cost coefficients are negative (C1={c1}, C2={c2})",
                           hint="the ASV error rates are too high for this cost model; check the ASV scores")
    denom = min(c1, c2)
    if denom == 0:
        raise MetricsError(f"t-DCF cannot be normalised: min(C1, C2) = 0 (C1={c1}, C2={c2})",
                           hint="the ASV system accepts no spoofs or the cost model zeroes a cost")
    tdcf_norm = (c1 * pmiss_cm + c2 * pfa_cm) / denom
    return tdcf_norm, thresholds


def compute_min_tdcf(bonafide_cm: Iterable[float], spoof_cm: Iterable[float], asv_target: Iterable[float],
                     asv_nontarget: Iterable[float], asv_spoof: Iterable[float],
                     cost_model: CostModel = ASVSPOOF2019_COST) -> float:
    """Minimum normalised t-DCF (ASVspoof 2019 form) of a CM in tandem with an ASV system.

    The ASV operates at its own EER threshold (target vs nontarget). Raises
    DegenerateScoresError where the official code refuses to score (< 3 distinct CM scores);
    use :func:`min_tdcf_or_none` to get None there instead.
    """
    point = asv_operating_point(asv_target, asv_nontarget, asv_spoof)
    if point["Pmiss_spoof_asv"] is None:
        raise MetricsError("ASV spoof scores are empty", hint="t-DCF needs ASV scores of spoofed trials")
    curve, _ = compute_tdcf_curve(bonafide_cm, spoof_cm, point["Pfa_asv"], point["Pmiss_asv"],
                                  point["Pmiss_spoof_asv"], cost_model)
    return float(np.min(curve))


def min_tdcf_or_none(*args, **kwargs) -> float | None:
    """:func:`compute_min_tdcf`, but None where it needs >= 3 distinct CM scores (as the references' null)."""
    try:
        return compute_min_tdcf(*args, **kwargs)
    except DegenerateScoresError:
        return None


def auc(bonafide_scores: Iterable[float], spoof_scores: Iterable[float]) -> float:
    """Probability that a bona fide trial scores above a spoof trial; ties count half."""
    bona = _scores(bonafide_scores, BONAFIDE)
    spoof = _scores(spoof_scores, SPOOF)
    all_scores = np.concatenate([bona, spoof])
    # Mann-Whitney U with tie-averaged ranks (1-based).
    _, inverse, counts = np.unique(all_scores, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    ranks = (first_rank + (counts - 1) / 2.0)[inverse]
    u = ranks[: bona.size].sum() - bona.size * (bona.size + 1) / 2.0
    return float(u / (bona.size * spoof.size))


def _label_mask(labels: Sequence, n: int | None = None) -> np.ndarray:
    """True where a label is bona fide. Labels: 'bonafide'/'spoof', or class indices (0 = bonafide)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if n is not None and arr.size != n:
        raise MetricsError(f"{arr.size} labels for {n} scores", hint="pass one label per score")
    if arr.size == 0:
        raise MetricsError("labels are empty")
    if arr.dtype.kind in "US" or arr.dtype == object:
        text = np.char.lower(arr.astype(str))
        unknown = sorted(set(text.tolist()) - {BONAFIDE, SPOOF})
        if unknown:
            raise MetricsError(f"unknown labels {unknown[:5]}", hint="use 'bonafide' or 'spoof'")
        return text == BONAFIDE
    if arr.dtype.kind in "iu":
        if (arr < 0).any():
            raise MetricsError("negative class index in labels", hint="class 0 is bonafide, others spoof")
        return arr == 0
    raise MetricsError(f"labels of dtype {arr.dtype} are not supported",
                       hint="use 'bonafide'/'spoof' strings or integer class indices (0 = bonafide)")


def _oriented(scores: Iterable[float], higher_means: str) -> np.ndarray:
    arr = _scores(scores, "all")
    if higher_means == BONAFIDE:
        return arr
    if higher_means == SPOOF:
        return -arr
    raise MetricsError(f"higher_means must be 'bonafide' or 'spoof', got {higher_means!r}")


def macro_f1(labels: Sequence, scores: Iterable[float], threshold: float, *, higher_means: str = BONAFIDE) -> float:
    """Mean of the bona fide and spoof F1 scores for decisions at ``threshold``.

    A trial is called bona fide when its score >= threshold (``higher_means="bonafide"``),
    or when its score < threshold (``higher_means="spoof"``). Both classes must be present.
    """
    raw = _scores(scores, "all")
    is_bona = _label_mask(labels, raw.size)
    if is_bona.all() or not is_bona.any():
        raise MetricsError("macro-F1 needs both bona fide and spoof trials")
    if higher_means == BONAFIDE:
        called_bona = raw >= threshold
    elif higher_means == SPOOF:
        called_bona = raw < threshold
    else:
        raise MetricsError(f"higher_means must be 'bonafide' or 'spoof', got {higher_means!r}")
    f1s = []
    for truth, called in ((is_bona, called_bona), (~is_bona, ~called_bona)):
        tp = float(np.sum(truth & called))
        fp = float(np.sum(~truth & called))
        fn = float(np.sum(truth & ~called))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))


def breakdown(scores: Iterable[float], labels: Sequence, systems: Sequence[str], *,
              higher_means: str = BONAFIDE) -> dict:
    """Pooled and per-spoof-system EER / AUC.

    Each spoof system is scored against all bona fide trials. Returns
    ``{"pooled": {...}, "systems": {name: {...}}}`` where each entry holds ``eer``,
    ``threshold`` (in the caller's score units), ``auc``, ``n_bonafide``, ``n_spoof``.
    """
    oriented = _oriented(scores, higher_means)
    is_bona = _label_mask(labels, oriented.size)
    sys_arr = np.asarray(systems, dtype=str).reshape(-1)
    if sys_arr.size != oriented.size:
        raise MetricsError(f"{sys_arr.size} system names for {oriented.size} scores")
    if is_bona.all() or not is_bona.any():
        raise MetricsError("breakdown needs both bona fide and spoof trials")
    sign = 1.0 if higher_means == BONAFIDE else -1.0
    bona = oriented[is_bona]

    def entry(spoof: np.ndarray) -> dict:
        eer, thr = compute_eer(bona, spoof)
        return {"eer": eer, "threshold": sign * thr, "auc": auc(bona, spoof),
                "n_bonafide": int(bona.size), "n_spoof": int(spoof.size)}

    result = {"pooled": entry(oriented[~is_bona]), "systems": {}}
    for name in sorted(set(sys_arr[~is_bona].tolist())):
        result["systems"][name] = entry(oriented[~is_bona & (sys_arr == name)])
    return result
