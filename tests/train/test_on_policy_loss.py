"""The generalised JSD of on-policy distillation (kd_loss with beta) against dense definitions."""

from __future__ import annotations

import math

import pytest
import torch

from synthdistill.train.kd_loss import divergence_rows, kd_loss

V = 7


def _dense_jsd(p_logits: torch.Tensor, q_logits: torch.Tensor, beta: float) -> torch.Tensor:
    """TRL's generalized_jsd_loss per row, in float64: beta 0 forward KL, 1 reverse KL, else the mixture JSD."""
    p, q = torch.softmax(p_logits.double(), -1), torch.softmax(q_logits.double(), -1)
    if beta == 0:
        return (p * (p.log() - q.log())).sum(-1)
    if beta == 1:
        return (q * (q.log() - p.log())).sum(-1)
    m = beta * p + (1 - beta) * q
    return beta * (p * (p.log() - m.log())).sum(-1) + (1 - beta) * (q * (q.log() - m.log())).sum(-1)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_divergence_rows_is_the_generalised_jsd(beta):
    g = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(4, V, generator=g) * 2, torch.randn(4, V, generator=g)
    got = divergence_rows(torch.log_softmax(teacher, -1), torch.log_softmax(student, -1), beta)
    assert torch.allclose(got.double(), _dense_jsd(teacher, student, beta), atol=1e-5)
    assert (got >= -1e-6).all()
    same = divergence_rows(torch.log_softmax(teacher, -1), torch.log_softmax(teacher, -1), beta)
    assert torch.allclose(same, torch.zeros(4), atol=1e-6)


def test_half_beta_is_symmetric_and_bounded_by_log_two():
    g = torch.Generator().manual_seed(1)
    a, b = (
        torch.log_softmax(torch.randn(3, V, generator=g) * 5, -1),
        torch.log_softmax(torch.randn(3, V, generator=g) * 5, -1),
    )
    assert torch.allclose(divergence_rows(a, b, 0.5), divergence_rows(b, a, 0.5), atol=1e-6)
    assert (divergence_rows(a, b, 0.5) <= math.log(2) + 1e-6).all()


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_kd_loss_with_beta_over_the_whole_vocabulary_is_the_dense_jsd_of_the_shifted_positions(beta):
    """k = V: the tail is empty, so the sparse loss is the dense one; position t's logits meet target t + 1."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 4, V, generator=g)
    teacher_logits = torch.randn(1, 4, V, generator=g) * 2
    top = torch.log_softmax(teacher_logits, -1).topk(V, dim=-1)
    kd_mask = torch.tensor([[0, 1, 1, 1]])
    labels = torch.full((1, 4), -100)  # on-policy rows: no cross-entropy

    loss, parts = kd_loss(logits, labels, top.indices, top.values, kd_mask, weights={"ce": 0.0, "kl": 1.0}, beta=beta)

    expected = _dense_jsd(teacher_logits[0, 1:], logits[0, :-1], beta).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert parts["kd_tokens"] == 3 and parts["label_tokens"] == 0


def test_reverse_kl_floors_a_candidate_the_teacher_gives_no_mass():
    teacher = torch.log(torch.tensor([[1.0, 0.0]]))
    student = torch.log(torch.tensor([[0.5, 0.5]]))
    got = divergence_rows(teacher, student, 1.0)
    assert torch.isfinite(got).all()
    assert got.item() == pytest.approx(0.5 * math.log(0.5) + 0.5 * (math.log(0.5) - math.log(1e-12)), rel=1e-5)
