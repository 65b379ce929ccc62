"""Parity gates run at export: an exported model that disagrees with torch is not shipped.

* float32 models: max |logit(exported) - logit(torch)| over real windows <= 1e-4, scaled by
  the largest |logit| when that exceeds 1 (float32 rounding grows with the magnitude: a model
  with logits in the hundreds differs from torch by more than 1e-4 without any export bug);
* int8 models, on an evaluation set disjoint from the calibration set: the EER rises by at
  most 0.5 points (percentage points, absolute) over the float torch model, and the
  spoof/bona fide decisions at the bundle threshold agree on >= 98 % of windows.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from edge_cm.errors import ExportError


@dataclass(frozen=True)
class GateLimits:
    """Thresholds of the export gates."""

    float_max_abs_logit: float = 1e-4
    int8_max_eer_increase_points: float = 0.5
    int8_min_decision_agreement: float = 0.98


def spoof_log_odds(logits: np.ndarray) -> np.ndarray:
    """Raw spoof score per window: logsumexp(logits[1:]) - logits[0] (higher = more spoof)."""
    z = np.asarray(logits, dtype=np.float64)
    rest = z[:, 1:]
    m = rest.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(rest - m).sum(axis=1, keepdims=True)))[:, 0]
    return lse - z[:, 0]


def spoof_probability(logits: np.ndarray, scale: float = 1.0, bias: float = 0.0) -> np.ndarray:
    """Calibrated spoof score sigmoid(scale * raw + bias), as the runtime reports it."""
    return 1.0 / (1.0 + np.exp(-(scale * spoof_log_odds(logits) + bias)))


def eer_percent(logits: np.ndarray, is_spoof: np.ndarray) -> float:
    """EER in percent of windows; edge_cm.metrics wants higher = more bona fide, so the raw score is negated."""
    from edge_cm.metrics import compute_eer

    bona_score = -spoof_log_odds(logits)
    is_spoof = np.asarray(is_spoof, dtype=bool)
    eer, _ = compute_eer(bona_score[~is_spoof], bona_score[is_spoof])
    return 100.0 * eer


def float_gate(reference: np.ndarray, exported: np.ndarray, *, data: str,
               limits: GateLimits = GateLimits()) -> dict:
    """Max |Δ logit| between torch and an exported float model on the same windows; the limit
    is ``float_max_abs_logit`` times max(1, largest |logit| of torch)."""
    reference = np.asarray(reference, np.float64)
    diff = float(np.max(np.abs(reference - np.asarray(exported, np.float64))))
    limit = limits.float_max_abs_logit * max(1.0, float(np.max(np.abs(reference))))
    return {"kind": "float_parity", "max_abs_logit_diff": diff, "limit": limit,
            "windows": int(len(reference)), "data": data, "passed": bool(diff <= limit)}


def int8_gate(reference: np.ndarray, quantised: np.ndarray, is_spoof: Sequence[bool], *, threshold: float,
              score_scale: float = 1.0, score_bias: float = 0.0, data: str, calibration_windows: int,
              limits: GateLimits = GateLimits()) -> dict:
    """EER rise (points) and decision agreement of an int8 model against the float torch model."""
    is_spoof = np.asarray(is_spoof, dtype=bool)
    if is_spoof.all() or not is_spoof.any():
        raise ExportError("the int8 evaluation set needs both bona fide and spoof windows",
                          hint="pass an evaluation manifest with both labels")
    eer_ref = eer_percent(reference, is_spoof)
    eer_q = eer_percent(quantised, is_spoof)
    dec_ref = spoof_probability(reference, score_scale, score_bias) >= threshold
    dec_q = spoof_probability(quantised, score_scale, score_bias) >= threshold
    agreement = float(np.mean(dec_ref == dec_q))
    # EERs are percentages of whole windows, so a rise equal to the limit (6.5 -> 7.0) must not fail
    # on the float subtraction's last bit (7.000000000000001 - 6.5).
    rise = round(eer_q - eer_ref, 9)
    passed = rise <= limits.int8_max_eer_increase_points and agreement >= limits.int8_min_decision_agreement
    return {"kind": "int8", "eer_float_percent": eer_ref, "eer_int8_percent": eer_q,
            "eer_increase_points": rise, "limit_eer_increase_points": limits.int8_max_eer_increase_points,
            "decision_agreement": agreement, "limit_decision_agreement": limits.int8_min_decision_agreement,
            "threshold": float(threshold), "max_abs_logit_diff": float(np.max(np.abs(reference - quantised))),
            "windows": int(is_spoof.size), "bonafide_windows": int((~is_spoof).sum()),
            "spoof_windows": int(is_spoof.sum()), "calibration_windows": int(calibration_windows),
            "data": data, "passed": bool(passed)}


def check_gates(gates: dict[str, dict]) -> None:
    """Raise ExportError naming every gate that failed (the bundle is then not written)."""
    failed = {k: v for k, v in gates.items() if not v.get("passed", False)}
    if not failed:
        return
    parts = []
    for key, g in failed.items():
        if g["kind"] == "float_parity":
            parts.append(f"{key}: max |Δ logit| {g['max_abs_logit_diff']:.3g} > {g['limit']:.3g}")
        else:
            parts.append(f"{key}: EER {g['eer_float_percent']:.2f}% -> {g['eer_int8_percent']:.2f}% "
                         f"(+{g['eer_increase_points']:.2f} points, limit {g['limit_eer_increase_points']}), "
                         f"decision agreement {100 * g['decision_agreement']:.1f}% "
                         f"(limit {100 * g['limit_decision_agreement']:.0f}%)")
    raise ExportError("export gate failed, no bundle written: " + "; ".join(parts),
                      hint="check the calibration data (real 4-s windows, both classes) or export float only")


def limits_dict(limits: GateLimits) -> dict:
    return asdict(limits)
