"""EfficientCNN and RES-EfficientCNN: small CNNs on a log spectrogram (Subramani & Rao, AAAI 2020).

Input: front end (a), :func:`edge_cm.features.efficientcnn_spec`, of a 4-s window:
``(B, 1, 865, 390)`` = (batch, channel, frequency bins, frames). Output: logits ``(B, 2)``
with class 0 = bonafide (the runtime's score convention).

Layout (widths per size: input block / conv blocks):

* input block: 5x5 conv, stride 2, padding 2 -> ReLU -> BatchNorm -> 2x2 max-pool;
* four conv blocks: 1x1 conv -> ReLU -> BN -> 3x3 conv -> ReLU -> BN -> 2x2 max-pool;
  RES variant: plus a shortcut (1x1 conv -> ReLU -> BN on the block input) added
  before the pool;
* classification block: dropout 0.2 -> linear (hidden) -> ReLU -> BN -> dropout 0.2 ->
  linear (2); softmax is left to the loss / the runtime.

=========  ===========  ===============
size       input block  conv blocks
=========  ===========  ===============
small      2            3, 4, 3, 2
medium     4            6, 8, 6, 4
large      8            12, 16, 12, 8
=========  ===========  ===============

Multi-task variants (``*_mt``) add a source head (linear, hidden -> n_sources: the spoofing
system, or ``none`` for bona fide) on the shared hidden layer; the two cross-entropies are
summed in training, and :meth:`EfficientCNN.export_module` drops the head.

Choices the paper leaves open, fitted to its parameter counts (``edge-cm-train describe``
prints ours beside the paper's):

* hidden width: a least-squares fit of the paper's three sizes gives 77 units for the plain
  model (whose 3x3 convs are unpadded, leaving an 11 x 4 map, so the first linear layer
  sees 44 positions x channels); our counts are then within 0.3 % of the paper's
  (7,669 / 15,707 / 34,051 vs 7,654 / 15,690 / 34,114).
* RES variant: the shortcut must match the 3x3 conv's output. Cropping it to the unpadded
  output adds only 72-720 parameters, far below the paper's RES figures (+2,926 to
  +12,496); padding the 3x3 conv ("same") so that the shortcut adds at full size gives a
  13 x 6 map (78 positions), and with 62 hidden units our counts are within 0.8 %
  (10,562 / 21,640 / 46,280 vs 10,580 / 21,794 / 46,610). The fit is ours, not the paper's
  statement; ``hidden`` and ``padding`` are constructor arguments.
* multi-task head: ``(hidden + 1) * n_sources`` parameters: with 7 sources (ASVspoof 2019
  LA train: 6 systems + ``none``) 78 x 7 = 546 (plain) or 63 x 7 = 441 (RES). The paper's
  fixed 231 = 33 x 7 would be a 32-unit hidden layer, which its other counts do not fit,
  so we keep the fitted widths; the head is dropped at export either way.

Compute (``edge-cm-train describe``): conv + linear MACs, FLOPs = 2 x MACs. Our SMALL costs
13.7 MFLOPs and LARGE 117.5 MFLOPs per 4-s window, against the paper's ~9 and ~256; the
paper does not say how it counts, and no single convention reproduces both figures (the
5x5 input conv at 433 x 195 alone is 2 x 4.2 M = 8.4 MFLOPs for SMALL).

Weights: Xavier-normal for conv and linear weights, zero biases.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from edge_cm.features import efficientcnn_spec

from .registry import Architecture, register

SIZES: dict[str, tuple[int, tuple[int, int, int, int]]] = {
    "small": (2, (3, 4, 3, 2)),
    "medium": (4, (6, 8, 6, 4)),
    "large": (8, (12, 16, 12, 8)),
}

HIDDEN_PLAIN = 77
"""Hidden units of the classification block, plain variant (fitted, see module docstring)."""
HIDDEN_RES = 62
"""Hidden units of the classification block, RES variant (fitted, see module docstring)."""
DROPOUT = 0.2
INPUT_SHAPE = (1, 865, 390)
"""(channel, bins, frames) of a 4-s window through :func:`efficientcnn_spec`."""

PAPER_PARAMS = {
    ("small", False): 7654, ("medium", False): 15690, ("large", False): 34114,
    ("small", True): 10580, ("medium", True): 21794, ("large", True): 46610,
}
PAPER_MFLOPS = {"small": 9.0, "large": 256.0}
PAPER_MULTITASK_EXTRA = 231


def _conv_unit(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """conv -> ReLU -> BN, the order the paper uses."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding),
                         nn.ReLU(inplace=True), nn.BatchNorm2d(cout))


class ConvBlock(nn.Module):
    """1x1 conv unit -> 3x3 conv unit (-> + shortcut) -> 2x2 max-pool."""

    def __init__(self, cin: int, cout: int, residual: bool, padding: int):
        super().__init__()
        self.reduce = _conv_unit(cin, cout, 1)
        self.conv = _conv_unit(cout, cout, 3, padding=padding)
        self.shortcut = _conv_unit(cin, cout, 1) if residual else None
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.reduce(x))
        if self.shortcut is not None:
            s = self.shortcut(x)
            if s.shape[-2:] != y.shape[-2:]:  # unpadded 3x3: keep the centre of the shortcut
                dh = (s.shape[-2] - y.shape[-2]) // 2
                dw = (s.shape[-1] - y.shape[-1]) // 2
                s = s[..., dh:dh + y.shape[-2], dw:dw + y.shape[-1]]
            y = y + s
        return self.pool(y)


class EfficientCNN(nn.Module):
    """EfficientCNN / RES-EfficientCNN, optionally multi-task.

    Args:
        size: ``small``, ``medium`` or ``large``.
        residual: add the RES shortcuts.
        n_sources: size of the source head (0 = single task).
        hidden: hidden units of the classification block (default: fitted per variant).
        padding: padding of the 3x3 convs (default: 1 for RES, 0 for plain).
        n_bins, n_frames: input geometry (default: a 4-s window of front end (a)).
        n_classes: outputs of the veracity head (2: bonafide, spoof).
    """

    def __init__(self, size: str = "small", residual: bool = False, n_sources: int = 0,
                 hidden: int | None = None, padding: int | None = None,
                 n_bins: int = INPUT_SHAPE[1], n_frames: int = INPUT_SHAPE[2], n_classes: int = 2):
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
        stem, widths = SIZES[size]
        hidden = hidden if hidden is not None else (HIDDEN_RES if residual else HIDDEN_PLAIN)
        padding = padding if padding is not None else (1 if residual else 0)
        self.config = dict(size=size, residual=residual, n_sources=n_sources, hidden=hidden,
                           padding=padding, n_bins=n_bins, n_frames=n_frames, n_classes=n_classes)
        self.input_block = nn.Sequential(_conv_unit(1, stem, 5, stride=2, padding=2), nn.MaxPool2d(2))
        blocks, cin = [], stem
        for w in widths:
            blocks.append(ConvBlock(cin, w, residual, padding))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        with torch.no_grad():
            flat = self.blocks(self.input_block(torch.zeros(1, 1, n_bins, n_frames))).numel()
        self.flat_features = flat
        self.hidden = nn.Sequential(nn.Flatten(), nn.Dropout(DROPOUT), nn.Linear(flat, hidden),
                                    nn.ReLU(inplace=True), nn.BatchNorm1d(hidden))
        self.head = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(hidden, n_classes))
        self.source_head = (nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(hidden, n_sources))
                            if n_sources > 0 else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def multitask(self) -> bool:
        return self.source_head is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, 1, bins, frames). Returns logits (B, 2), or (logits, source_logits) if multi-task."""
        h = self.hidden(self.blocks(self.input_block(x)))
        logits = self.head(h)
        if self.source_head is None:
            return logits
        return logits, self.source_head(h)

    def export_module(self) -> EfficientCNN:
        """A copy without the source head: forward returns only the (B, 2) logits."""
        cfg = dict(self.config, n_sources=0)
        out = EfficientCNN(**cfg)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("source_head.")}
        out.load_state_dict(state)
        out.train(self.training)
        return copy.deepcopy(out)


def _register_all() -> None:
    for residual in (False, True):
        for size in SIZES:
            for multitask in (False, True):
                name = f"{'res_' if residual else ''}efficientcnn_{size}{'_mt' if multitask else ''}"

                def builder(n_sources: int = 0, _size=size, _res=residual, _mt=multitask, **kw) -> EfficientCNN:
                    if _mt and n_sources < 2:
                        raise ValueError("a multi-task model needs n_sources >= 2 (systems + 'none')")
                    return EfficientCNN(_size, _res, n_sources if _mt else 0, **kw)

                paper = {"params": PAPER_PARAMS[(size, residual)]}
                if size in PAPER_MFLOPS and not residual:
                    paper["mflops"] = PAPER_MFLOPS[size]
                if multitask:
                    paper["params"] += PAPER_MULTITASK_EXTRA
                register(Architecture(
                    name=name, builder=builder, feature_spec=efficientcnn_spec, input_shape=INPUT_SHAPE,
                    description=(f"{'RES-' if residual else ''}EfficientCNN {size.upper()}"
                                 f"{' multi-task' if multitask else ''}"),
                    needs_global_stats=True, multitask=multitask, paper=paper))


_register_all()
