"""The one-class (OC-Softmax) head: the paper's loss and direction-only scores (training with it and
its ONNX export: tests/test_training_loop.py)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.models.one_class import OneClassHead, OneClassLoss
from training.train import ClassificationLoss


def paper_loss(cos: torch.Tensor, labels: torch.Tensor, alpha=20.0, m_real=0.9, m_fake=0.2) -> torch.Tensor:
    """Zhang et al. (2021), per item: log(1 + exp(alpha (m_y - cos) (-1)^y)), y = 0 bona fide."""
    margin = torch.where(labels == 0, torch.tensor(m_real), torch.tensor(m_fake))
    sign = torch.where(labels == 0, torch.tensor(1.0), torch.tensor(-1.0))
    return torch.log1p(torch.exp(alpha * (margin - cos) * sign))


def test_one_class_loss_is_the_papers_formula_computed_from_the_two_logits():
    torch.manual_seed(0)
    head = OneClassHead(12).eval()
    x = torch.randn(9, 12)
    labels = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0, 1])
    cos = F.cosine_similarity(x, head.weight.detach().unsqueeze(0), dim=1)
    assert torch.allclose(head.cosine(x), cos, atol=1e-5)
    expected = paper_loss(cos, labels)
    assert head.margin == pytest.approx(7.0)
    assert torch.allclose(OneClassLoss(head.margin)(head(x), labels), expected.mean(), atol=1e-4)
    weights = torch.tensor([3.0, 0.5])  # inverse class frequency, as training uses it
    w = weights[labels]
    weighted = ClassificationLoss(weights, one_class_margin=head.margin)(head(x), {"label": labels})[0]
    assert torch.allclose(weighted, (w * expected).sum() / w.sum(), atol=1e-4)
    # the margins bite: a bona fide item at cosine 0.6 (spoof side of 0.9) still costs, a spoof
    # at 0.6 (above 0.2) too, though a 2-class softmax would already call both correctly
    assert float(paper_loss(torch.tensor([0.6]), torch.tensor([0]))) > 1.0
    assert float(paper_loss(torch.tensor([0.6]), torch.tensor([1]))) > 1.0


def test_one_class_scores_depend_on_direction_only_and_order_by_cosine():
    torch.manual_seed(1)
    head = OneClassHead(8).eval()
    x = torch.randn(5, 8)
    with torch.no_grad():
        assert torch.allclose(head(x), head(7.5 * x), atol=1e-5)
        p_spoof = torch.softmax(head(x), dim=1)[:, 1]  # what the runtime reports
        order = torch.argsort(head.cosine(x))
        assert torch.all(p_spoof[order][1:] < p_spoof[order][:-1])
        assert torch.isfinite(head(torch.zeros(2, 8))).all()  # an all-zero embedding after ReLU
    with pytest.raises(ValueError, match="m_fake"):
        OneClassHead(8, m_real=0.2, m_fake=0.5)
