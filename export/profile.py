"""Model profile: parameters, MACs, activation memory (torch side), plus file sizes, latency and target fit.

MAC convention (one multiply-accumulate = 1 MAC, batch 1, one window): convolutions count
``output elements * in_channels / groups * kernel size``; linear layers ``in_features *
out_features`` per row. Bias adds, normalisation, activations, pooling and the front end are
not counted. ``torch.utils.flop_counter`` counts 2 FLOPs per MAC for the same ops; the
profile records its figure / 2 as a cross-check.

Activation memory (tensor-arena estimate): the model's ``torch.export`` graph is walked in
execution order; a tensor is live from the op that makes it to its last use. The peak
of the summed live activation bytes (weights excluded: they stay in flash) is reported
for float32 (4 bytes/element) and int8 (1 byte/element), together with the largest
single op's inputs + outputs. Modules kept float32 in the int8 models (``--int8-keep-float``)
count 4 bytes per output element in the int8 figure, and so does the model input when such a
module reads it (the exporters then keep a float input). TFLite Micro's real arena (planner,
alignment, scratch) is measured separately when tflite-micro is installed (:mod:`export.micro`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_cm.bundle import Bundle

from .evalmode import eval_mode
from edge_cm.profile import fit_markdown, latency_profile, target_fit

_VIEW_OPS = {"view", "reshape", "_unsafe_view", "alias", "squeeze", "unsqueeze", "expand", "permute", "transpose",
             "t", "flatten", "detach", "clone", "contiguous", "slice", "select"}


def load_targets(path: str | Path | None = None) -> dict:
    """Deployment targets (export/targets.json unless ``path``), without the ``_about`` note."""
    if path is None:
        from edge_cm.profile import load_default_targets

        return load_default_targets()
    text = Path(path).read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def count_parameters(model, fixed: bool = False) -> int:
    """Trained weights (the convention of the papers and of the registry's ``count_params``).

    ``fixed``: count the frozen ones instead (``requires_grad=False``, e.g. a fixed mel
    projection); like BatchNorm running statistics they are stored but not learned.
    """
    params = list(model.parameters())
    if not any(p.requires_grad for p in params):  # a wholly frozen copy (inference only): all of it was trained
        return 0 if fixed else int(sum(p.numel() for p in params))
    return int(sum(p.numel() for p in params if p.requires_grad != fixed))


def parameters_text(profile: dict) -> str:
    """``46,742 (+ 10,280 fixed, not trained)`` when the model has fixed weights, else ``46,742``."""
    fixed = profile.get("fixed_parameters") or 0
    text = f"{profile.get('parameters', 0):,}"
    return f"{text} (+ {fixed:,} fixed, not trained)" if fixed else text


def count_macs(model, example) -> int:
    """Conv + linear MACs for one forward pass on ``example`` (see module docstring).

    Counted on the ``torch.export`` graph, so it works for plain modules and for
    modules loaded from an exported program alike.
    """
    import torch

    ep = torch.export.export(eval_mode(model), (example,))
    aten = torch.ops.aten
    convs = {aten.convolution.default, aten.conv1d.default, aten.conv2d.default, aten.conv3d.default,
             getattr(aten, "_convolution").default}
    total = 0
    for n in ep.graph.nodes:
        if n.op != "call_function":
            continue
        out = n.meta.get("val")
        if not isinstance(out, torch.Tensor):
            continue
        if n.target in convs:
            w = n.args[1].meta["val"]
            total += int(out.numel()) * int(np.prod(w.shape[1:]))  # w: (out_ch, in_ch/groups, *kernel)
        elif n.target == aten.linear.default:
            w = n.args[1].meta["val"]
            total += int(out.numel()) * int(w.shape[1])
        elif n.target in (aten.mm.default, aten.addmm.default, aten.bmm.default, aten.matmul.default):
            a = n.args[-2].meta["val"] if n.target == aten.addmm.default else n.args[0].meta["val"]
            total += int(out.numel()) * int(a.shape[-1])
    return total


def flop_counter_macs(model, example) -> int:
    """torch.utils.flop_counter FLOPs / 2 (its convention: 2 FLOPs per multiply-accumulate)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example)
    return int(counter.get_total_flops() // 2)


def _in_modules(node, modules: tuple[str, ...]) -> bool:
    """Whether ``node`` was traced inside one of the named submodules (``fine.0`` and its children)."""
    paths = [v[0] for v in (node.meta.get("nn_module_stack") or {}).values()]
    return any(path == m or path.startswith(m + ".") for path in paths for m in modules)


def activation_memory(model, example, float_modules: tuple[str, ...] = ()) -> dict:
    """Peak live activation elements/bytes over the exported graph (see module docstring);
    ``float_modules``: module names left float32 in the int8 models."""
    import torch

    ep = torch.export.export(eval_mode(model), (example,))
    sig = ep.graph_signature
    weights = set(sig.inputs_to_parameters) | set(sig.inputs_to_buffers) | set(
        getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})
    nodes = list(ep.graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}

    def numel(n) -> int:
        val = n.meta.get("val")
        if isinstance(val, torch.Tensor):
            return int(val.numel())
        if isinstance(val, (tuple, list)):
            return int(sum(v.numel() for v in val if isinstance(v, torch.Tensor)))
        return 0

    def is_view(n) -> bool:
        name = getattr(n.target, "__name__", str(n.target)).split(".")[0]
        return n.op == "call_function" and name in _VIEW_OPS

    # Views share their source's storage: charge their lifetime to the storage owner.
    owner = {}
    for n in nodes:
        if is_view(n) and n.args and hasattr(n.args[0], "op"):
            owner[n] = owner.get(n.args[0], n.args[0])
        else:
            owner[n] = n
    last_use = {}
    for n in nodes:
        for u in n.users:
            o = owner[n]
            last_use[o] = max(last_use.get(o, -1), order[u])
    float_modules = tuple(float_modules)

    def int8_width(n) -> int:
        """Bytes per element of ``n``'s output in the int8 models."""
        if n.op == "placeholder":
            return 4 if any(_in_modules(u, float_modules) for u in n.users) else 1
        return 4 if _in_modules(n, float_modules) else 1

    live, peak, peak_int8, biggest_op, biggest_op_int8 = {}, 0, 0, 0, 0
    for n in nodes:
        if n.op == "placeholder" and n.name in weights:
            continue
        if n.op in ("placeholder", "call_function") and owner[n] is n:
            live[n] = (numel(n), numel(n) * (int8_width(n) if float_modules else 1))
        if n.op == "call_function":
            ins = [live[a] for a in {owner[a] for a in n.all_input_nodes if owner[a] in live}]
            own = live[n] if owner[n] is n else (0, 0)
            biggest_op = max(biggest_op, sum(e for e, _ in ins) + own[0])
            biggest_op_int8 = max(biggest_op_int8, sum(b for _, b in ins) + own[1])
        peak = max(peak, sum(e for e, _ in live.values()))
        peak_int8 = max(peak_int8, sum(b for _, b in live.values()))
        for o in [o for o in live if last_use.get(o, -1) <= order[n] and o is not n]:
            del live[o]
    out = {"peak_live_elements": int(peak), "max_op_io_elements": int(biggest_op),
           "bytes": {"float32": int(4 * peak), "int8": int(peak_int8)},
           "max_op_io_bytes": {"float32": int(4 * biggest_op), "int8": int(biggest_op_int8)}}
    if float_modules:
        out["int8_float_modules"] = list(float_modules)
    return out


def model_stats(model, example, float_modules: tuple[str, ...] = ()) -> dict:
    """Torch-side numbers of one model: parameters, MACs (and the flop_counter cross-check), activations
    (``float_modules``: left float32 in the int8 models)."""
    macs = count_macs(model, example)
    try:
        fc = flop_counter_macs(model, example)
    except Exception:  # flop_counter is a cross-check; a failure must not stop an export
        fc = None
    act = activation_memory(model, example, float_modules)
    return {"parameters": count_parameters(model), "fixed_parameters": count_parameters(model, fixed=True),
            "macs": macs, "macs_flop_counter": fc,
            "mac_convention": "conv: out_elements*in_ch/groups*kernel; linear: in*out; batch 1, one window; "
                              "bias/norm/activation/pool/front end not counted",
            "input_shape": [int(d) for d in example.shape], "activation_memory": act}


def profile_bundle(model, bundle: Bundle, *, repeats: int = 20, targets: dict | None = None,
                   example=None, micro: dict | None = None) -> dict:
    """The full profile stored in bundle metadata ``profile`` (needs the model files in ``bundle.path``)."""
    import torch

    from .api import model_input_shape

    meta = bundle.meta
    if example is None:
        example = torch.zeros(model_input_shape(meta.feature_spec, meta.window_samples), dtype=torch.float32)
    kept = sorted({m for r in (meta.export_gates or {}).get("results", {}).values()
                   for m in r.get("kept_float_modules", [])})
    stats = model_stats(model, example, tuple(kept))
    sizes = {f"{m.format}/{m.precision}": int((bundle.path / m.file).stat().st_size) for m in meta.models}
    targets = targets if targets is not None else load_targets()
    measured = {"tflite/int8": micro["arena_bytes"]} if micro and micro.get("arena_bytes") else None
    fit = target_fit({"macs": stats["macs"], "file_sizes": sizes,
                      "activation_bytes": stats["activation_memory"]["bytes"]}, targets, measured)
    latency = latency_profile(bundle, repeats=repeats, threads=1)
    extra = {"micro": micro} if micro else {}
    return {**stats, **extra, "file_sizes": sizes, "latency": latency, "targets": fit,
            "targets_note": "fit: file <= flash/storage budget and arena estimate <= RAM budget; "
                            "ms per window = MACs / assumed MAC rate (export/targets.json), an estimate"}


def profile_markdown(profile: dict, targets: dict | None = None) -> str:
    """Human-readable profile: model numbers, latency per backend, target fit."""
    targets = targets if targets is not None else load_targets()
    act = profile.get("activation_memory")
    if act is None:
        lines = ["- no parameters / MACs / arena estimate stored (the bundle was exported with --no-profile)"]
    else:
        lines = [f"- parameters: {parameters_text(profile)}",
                 f"- MACs per window: {profile['macs']:,} (flop_counter / 2: {profile.get('macs_flop_counter')})",
                 f"- input shape: {profile['input_shape']}",
                 f"- activation arena estimate: {act['bytes']['float32']:,} B float32, "
                 f"{act['bytes']['int8']:,} B int8"
                 + (f" ({', '.join(act['int8_float_modules'])} kept float32)" if act.get("int8_float_modules") else "")]
    lines += ["", "| model | file bytes | inference median ms | p95 ms | real-time factor |", "|---|---:|---:|---:|---:|"]
    lat = profile["latency"]
    for key, size in profile["file_sizes"].items():
        st = lat["inference"].get(key, {})
        lines.append(f"| {key} | {size:,} | {st.get('median_ms', float('nan')):.2f} | "
                     f"{st.get('p95_ms', float('nan')):.2f} | {st.get('real_time_factor', float('nan')):.4f} |")
    fe = lat["front_end"]
    lines += ["", f"Front end (numpy, {lat['window_seconds']:.1f}-s window): median {fe['median_ms']:.2f} ms, "
                  f"p95 {fe['p95_ms']:.2f} ms; {lat['threads']} thread, {lat['machine']['cpu']}.", "",
              fit_markdown(profile["targets"], targets)]
    if profile.get("micro", {}).get("error"):
        lines += ["", f"TensorFlow Lite Micro could not run the int8 model: {profile['micro']['error']}"]
    elif profile.get("micro"):
        mi = profile["micro"]
        lines += ["", f"TensorFlow Lite Micro: arena {mi['arena_bytes']:,} B; int8 outputs differ from LiteRT's reference "
                      f"kernels by at most {mi['max_abs_diff_int8_lsb']} LSB (from its default XNNPACK kernels by "
                      f"{mi.get('max_abs_diff_int8_lsb_vs_litert_default')} LSB) on {mi['windows']} windows."]
    return "\n".join(lines)


def reprofile_bundle(bundle, *, repeats: int = 20, targets: dict | None = None) -> dict:
    """``edge-cm-export profile``: re-measure a written bundle (torch-free, see edge_cm.profile.reprofile)."""
    from edge_cm.profile import reprofile

    return reprofile(bundle, targets if targets is not None else load_targets(), repeats=repeats)
