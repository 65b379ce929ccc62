"""Human-readable description of a bundle (``edge-cm info``)."""
from __future__ import annotations

from .bundle import Bundle


def _human_bytes(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def describe_bundle(bundle: Bundle) -> str:
    m = bundle.meta
    spec = m.feature_spec
    lines = [f"bundle       {bundle.path}"]
    if m.untrained:
        lines.append("status       UNTRAINED placeholder: scores are meaningless")
    lines += [
        f"name         {m.name}",
        f"architecture {m.architecture}",
        f"classes      {', '.join(m.classes)} (score = P(spoof), higher = more likely spoof)",
        f"window       {m.window_samples} samples ({m.window_samples / m.sample_rate:.1f} s at {m.sample_rate} Hz), "
        f"default hop {m.default_hop_seconds:.2f} s",
        f"front end    {spec.kind}: win {spec.win_length}, hop {spec.hop_length}, n_fft {spec.n_fft}, "
        f"{spec.window} window" + (f", {spec.n_mels} mel bands" if spec.kind == "log_mel" else "")
        + f", normalisation {spec.normalization}"
        + (f", level {spec.level_dbfs:g} dBFS (a scored window's features do not depend on the gain)"
           if spec.level_dbfs is not None else ""),
        f"threshold    {m.threshold:.4f} ({m.threshold_method})",
        "models:",
    ]
    for f in m.models:
        q = ""
        if f.input.dtype == "int8":
            q = f"  input q: scale {f.input.scale:.6g}, zp {f.input.zero_point}"
        lines.append(f"  {f.file:<24} {f.format:<6} {f.precision:<7} {_human_bytes(f.size_bytes):>10}  "
                     f"in {f.input.shape} -> out {f.output.shape}{q}")
    if m.training_weights:
        w = m.training_weights
        lines.append(f"  {w.get('file', '?'):<24} {'npz':<6} {'float32':<7} {_human_bytes(w.get('size_bytes', 0)):>10}  "
                     "training weights, not used at run time (edge-cm-train adapt --from BUNDLE)")
    prof = m.profile or {}
    if "parameters" in prof:
        fixed = prof.get("fixed_parameters") or 0
        lines.append(f"{'parameters':<12} {prof['parameters']:,}"
                     + (f" (+ {fixed:,} fixed, not trained)" if fixed else ""))
    if "macs" in prof:
        lines.append(f"{'MACs/window':<12} {prof['macs']:,}")
    lat = prof.get("latency") or {}
    if lat.get("inference"):
        fe = lat.get("front_end", {}).get("median_ms")
        lines.append("latency      per 4-s window, 1 thread, measured at export"
                     + (f": front end {fe:.2f} ms" if fe is not None else ""))
        for key, v in lat["inference"].items():
            lines.append(f"  {key:<16} {v['median_ms']:.2f} ms median, {v.get('p95_ms', float('nan')):.2f} ms p95")
    for target, fits in (prof.get("targets") or {}).items():
        ok = [k for k, v in fits.items() if v.get("fits")]
        lines.append(f"fits {target}: {', '.join(ok) if ok else 'none'} (flash and RAM; "
                     "times in the profile are estimates from MACs)")
    if m.metrics:
        lines.append("metrics:")
        for k, v in m.metrics.items():
            lines.append(f"  {k}: {v}")
    if m.export_gates:
        lines.append("export gates:")
        for k, v in m.export_gates.items():
            lines.append(f"  {k}: {v}")
    if m.training_data:
        lines.append("training data:")
        for k, v in m.training_data.items():
            lines.append(f"  {k}: {v}")
    if m.notes:
        lines.append(f"notes        {m.notes}")
    return "\n".join(lines)
