"""Loss-tilted weights over the training spoofing systems (group DRO with a KL penalty).

Why: the shipped model fits some of its own training systems poorly (train-split EER Griffin-Lim
32 %, WORLD-Harvest 15 %, Lyra 3.2k 10 %; ``benchmarks/results/error_sources_*``), and dev's worst
systems are their unseen relatives (WORLD-DIO, Lyra 6k), while the TTS voices, most of the spoof
examples, are nearly solved. Fixed family weights (``class_weighting: family_balanced``) moved the
errors from codecs to TTS. Here each system's weight follows its own recent loss instead:

    w_g = exp(L_g / tau) / sum_h p_h exp(L_h / tau)

with ``L_g`` a moving average of system ``g``'s per-example cross-entropy and ``p_h`` each system's
share of the spoof examples. That is the closed-form worst case of group DRO with a KL penalty of
strength ``tau`` (nats) around the training mix (Sagawa et al. 2020 for group DRO; tilted ERM over
groups, Li et al. 2021): a system the model has learnt loses weight, one it has not gains it, and one
whose loss rises again gets its weight back, so no family is given up for good. The spoof class's
total weight is unchanged (``sum_g p_g w_g = 1``) and bona fide examples weigh 1, so the class balance
is the recipe's; a large ``tau`` gives the plain loss. Training only: nothing reaches the export.
"""
from __future__ import annotations

import torch


class SystemTilt:
    """Per-source example weights (index into the dataset's ``systems``) that tilt the spoof class
    towards the systems with the highest recent loss.

    Args:
        shares: (n_sources,) each spoofing system's number of training spoof examples; 0 for ``none``
            (bona fide) and for sources without training examples, which always weigh 1.
        temperature: ``tau`` in nats (> 0); the weight ratio of two systems is
            ``exp((L_a - L_b) / tau)``.
        decay: per-step decay of each system's loss average (0 <= decay < 1), applied in the steps
            where the system is in the batch; 0.99 averages about its last 100 appearances.
    """

    def __init__(self, shares: torch.Tensor, temperature: float, decay: float = 0.99):
        shares = torch.as_tensor(shares, dtype=torch.float32)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if shares.dim() != 1 or (shares < 0).any() or not (shares > 0).any():
            raise ValueError("shares must be a 1-d tensor of counts >= 0 with at least one spoofing system")
        self.share = shares / shares.sum()
        self.temperature = float(temperature)
        self.decay = float(decay)
        self.mean_loss = torch.zeros_like(shares)
        self.seen = torch.zeros(shares.shape, dtype=torch.bool)

    def weights(self) -> torch.Tensor:
        """(n_sources,) example weights: tilted for spoofing systems, 1 for the rest. A system not
        seen yet counts with the mean loss of those seen (all weigh 1 before the first batch)."""
        spoof = self.share > 0
        seen = spoof & self.seen
        loss = self.mean_loss.clone()
        loss[spoof & ~self.seen] = loss[seen].mean() if seen.any() else 0.0
        # Subtracting the largest loss leaves the ratios alone and keeps exp() from overflowing.
        tilt = torch.exp((loss - loss[spoof].max()) / self.temperature)
        return torch.where(spoof, tilt / (self.share * tilt).sum(), torch.ones_like(tilt))

    @torch.no_grad()
    def observe(self, losses: torch.Tensor, source: torch.Tensor) -> None:
        """Fold a batch's per-example losses (B,) into the averages of the spoofing systems (B,)
        it holds; other sources (bona fide, unseen systems, -100) are ignored. A system's first
        batch sets its average, so the average is not biased towards the zero it starts from."""
        n = self.share.numel()
        keep = (source >= 0) & (source < n) & (self.share[source.clamp(0, n - 1)] > 0)
        if not keep.any():
            return
        index, losses = source[keep], losses.detach().float()[keep]
        sums = torch.zeros_like(self.mean_loss).index_add_(0, index, losses)
        counts = torch.zeros_like(self.mean_loss).index_add_(0, index, torch.ones_like(losses))
        batch_mean = sums / counts.clamp(min=1)
        rate = torch.where(self.seen, torch.full_like(batch_mean, 1 - self.decay), torch.ones_like(batch_mean))
        now = counts > 0
        self.mean_loss[now] += rate[now] * (batch_mean[now] - self.mean_loss[now])
        self.seen |= now

    def state_dict(self) -> dict:
        return {"mean_loss": self.mean_loss.clone(), "seen": self.seen.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["mean_loss"].shape != self.mean_loss.shape:
            raise KeyError(f"the saved tilt has {state['mean_loss'].numel()} sources, this run "
                           f"{self.mean_loss.numel()}")
        self.mean_loss = state["mean_loss"].clone().float()
        self.seen = state["seen"].clone().bool()

    def describe(self, systems: list[str]) -> str:
        """``system weight (average loss)`` for each spoofing system, heaviest first."""
        w = self.weights()
        rows = sorted((i for i in range(len(systems)) if self.share[i] > 0), key=lambda i: -float(w[i]))
        return ", ".join(f"{systems[i]} {float(w[i]):.2f} ({float(self.mean_loss[i]):.3f})" for i in rows)
