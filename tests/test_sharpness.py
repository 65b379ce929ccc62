"""Sharpness-aware minimisation: the step follows the formula, BatchNorm statistics see one pass."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from edge_cm.errors import DataError
from training.config import TrainConfig
from training.sharpness import sam_step
from training.train import ClassificationLoss


def _tiny(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))
    return model, torch.randn(8, 6), torch.tensor([0, 1] * 4)


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_sam_step_uses_the_gradient_at_the_perturbed_weights(adaptive):
    model, x, y = _tiny()
    rho, lr = 0.3, 0.1

    def loss_at(weights: list[torch.Tensor]) -> torch.Tensor:
        w1, b1, w2, b2 = weights
        return nn.functional.cross_entropy(torch.tanh(x @ w1.T + b1) @ w2.T + b2, y)

    w = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    g = torch.autograd.grad(loss_at(w), w)
    t = [wi.detach().abs() if adaptive else torch.ones_like(wi) for wi in w]
    norm = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g)))
    moved = [(wi.detach() + rho * ti * ti * gi / norm).requires_grad_(True) for wi, ti, gi in zip(w, t, g)]
    g_moved = torch.autograd.grad(loss_at(moved), moved)
    expected = [wi.detach() - lr * gi for wi, gi in zip(w, g_moved)]

    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss = sam_step(model, opt, lambda: nn.functional.cross_entropy(model(x), y), rho, adaptive=adaptive)
    assert float(loss) == pytest.approx(float(loss_at(w).detach()))
    for p, e, gi, gm in zip(model.parameters(), expected, g, g_moved):
        assert torch.allclose(p, e, atol=1e-6)
        assert not torch.allclose(gi, gm, atol=1e-4)  # the perturbation changed the gradient


def _efficientcnn_batch():
    from training.models.efficientcnn import EfficientCNN

    torch.manual_seed(0)
    model = EfficientCNN("small", n_sources=3, n_bins=200, n_frames=200).train()
    batch = {"features": torch.randn(4, 1, 200, 200), "label": torch.tensor([0, 1] * 2),
             "source": torch.tensor([0, 1, 0, 2])}
    loss_fn = ClassificationLoss(torch.tensor([1.0, 1.0]))
    return model, batch, lambda: loss_fn(model(batch["features"]), batch)[0]


def test_sam_step_lowers_the_loss_on_a_fixed_batch():
    model, batch, loss_of = _efficientcnn_batch()

    def loss_now() -> float:
        torch.manual_seed(123)  # same dropout masks before and after
        with torch.no_grad():
            return float(loss_of())

    before = loss_now()
    sam_step(model, torch.optim.Adam(model.parameters(), lr=1e-3), loss_of, rho=0.05)
    assert loss_now() < before


def test_batchnorm_running_stats_see_only_the_first_pass():
    model, batch, loss_of = _efficientcnn_batch()
    twin = copy.deepcopy(model)
    torch.manual_seed(5)  # the same dropout masks (dropout feeds a BatchNorm1d) in both first passes
    with torch.no_grad():
        twin(batch["features"])  # one plain pass at the same weights
    torch.manual_seed(5)
    sam_step(model, torch.optim.Adam(model.parameters(), lr=1e-3), loss_of, rho=0.05)
    buffers = dict(twin.named_buffers())
    assert buffers
    for name, b in model.named_buffers():
        assert torch.allclose(b, buffers[name], atol=1e-6), name
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


@pytest.mark.parametrize("changes", [{"sam_rho": -0.1}, {"sam_rho": float("nan")}, {"sam_adaptive": True}])
def test_bad_sam_settings_are_refused(changes):
    with pytest.raises(DataError, match="sam_rho"):
        TrainConfig(architecture="efficientcnn_small", manifest="m.csv", **changes)
