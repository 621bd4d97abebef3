"""The hidden-state KD path (`kd_loss_from_hidden`) against `kd_loss` on explicitly built logits."""

from __future__ import annotations

import pytest
import torch

from synthdistill.train.chunked_logits import linear_gather_logsumexp
from synthdistill.train.kd_loss import kd_loss, kd_loss_from_hidden
from tests.train.test_kd_loss import B, L, V, _batch

H = 5


def _head(seed: int, bias: bool):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, L, H, generator=g, dtype=torch.float64)
    weight = torch.randn(V, H, generator=g, dtype=torch.float64)
    return hidden, weight, (torch.randn(V, generator=g, dtype=torch.float64) if bias else None)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("tail", ["bucket", "zero"])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
@pytest.mark.parametrize("bias", [False, True])
def test_hidden_path_equals_the_logits_path_in_value_and_gradients(temperature, tail, alpha, bias):
    _, labels, kd_ids, kd_logprobs, kd_mask, _ = _batch(k=3, seed=7)
    kd_mask[0, 3] = 0  # a label position without KD targets
    labels[1, 4] = -100  # and a KD position without a label
    hidden, weight, head_bias = _head(seed=1, bias=bias)
    originals = (hidden, weight) + ((head_bias,) if bias else ())
    leaves = [t.clone().requires_grad_(True) for t in originals]
    twins = [t.clone().requires_grad_(True) for t in originals]

    fused, fused_parts = kd_loss_from_hidden(
        leaves[0], leaves[1], leaves[2] if bias else None, labels, kd_ids, kd_logprobs, kd_mask,
        alpha=alpha, temperature=temperature, tail=tail,
    )  # fmt: skip
    logits = twins[0] @ twins[1].T + (twins[2] if bias else 0)
    direct, direct_parts = kd_loss(
        logits, labels, kd_ids, kd_logprobs, kd_mask, alpha=alpha, temperature=temperature, tail=tail
    )
    fused.backward()
    direct.backward()

    assert fused.item() == pytest.approx(direct.item(), rel=1e-6)
    assert fused_parts["label_tokens"] == direct_parts["label_tokens"] == int((labels[:, 1:] != -100).sum())
    assert fused_parts["kd_tokens"] == direct_parts["kd_tokens"] == int(kd_mask[:, 1:].sum())
    for mine, theirs in zip(leaves, twins):
        assert mine.grad is not None and mine.grad.abs().max() > 0
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-5, atol=1e-7)


def test_chunking_does_not_change_the_result():
    hidden, weight, bias = _head(seed=2, bias=True)
    ids = torch.randint(0, V, (7, 4), generator=torch.Generator().manual_seed(0))
    rows = hidden.reshape(-1, H)[:7]
    one = linear_gather_logsumexp(rows, weight, bias, ids, (1.0, 2.0), chunk_size=1)
    all_rows = linear_gather_logsumexp(rows, weight, bias, ids, (1.0, 2.0), chunk_size=100)
    logits = rows @ weight.T + bias
    for got in (one, all_rows):
        torch.testing.assert_close(got[0], logits.gather(1, ids))
        torch.testing.assert_close(got[1][:, 0], torch.logsumexp(logits, -1))
        torch.testing.assert_close(got[1][:, 1], torch.logsumexp(logits / 2, -1))


def test_bf16_autocast_projects_in_bf16_and_keeps_fp32_gradients():
    _, labels, kd_ids, kd_logprobs, kd_mask, _ = _batch(k=3, seed=8)
    hidden, weight, _ = _head(seed=3, bias=False)
    hidden = hidden.float().requires_grad_(True)
    weight = weight.float().requires_grad_(True)
    exact, _ = kd_loss_from_hidden(hidden, weight, None, labels, kd_ids, kd_logprobs, kd_mask)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        approx, _ = kd_loss_from_hidden(hidden, weight, None, labels, kd_ids, kd_logprobs, kd_mask)
    approx.backward()

    assert approx.dtype == torch.float32
    assert approx.item() == pytest.approx(exact.item(), abs=0.05)
    assert weight.grad.dtype == torch.float32 and torch.isfinite(weight.grad).all()


def test_no_scored_position_gives_a_connected_zero():
    hidden = torch.randn(1, 4, H, requires_grad=True)
    weight = torch.randn(V, H, requires_grad=True)
    labels = torch.full((1, 4), -100)
    loss, parts = kd_loss_from_hidden(
        hidden, weight, None, labels, torch.zeros(1, 4, 2, dtype=torch.long), torch.zeros(1, 4, 2), torch.zeros(1, 4)
    )
    loss.backward()
    assert loss.item() == 0.0 and parts["kd_tokens"] == 0
    assert hidden.grad.abs().max() == 0 and weight.grad.abs().max() == 0


def test_a_frozen_head_gets_no_gradient_and_the_hidden_gradient_is_unchanged():
    """LoRA freezes the LM head: only the hidden states need a gradient."""
    _, labels, kd_ids, kd_logprobs, kd_mask, _ = _batch(k=3, seed=9)
    hidden, weight, bias = _head(seed=4, bias=True)
    trained, frozen = hidden.clone().requires_grad_(True), hidden.clone().requires_grad_(True)
    loss, _ = kd_loss_from_hidden(trained, weight.requires_grad_(True), bias, labels, kd_ids, kd_logprobs, kd_mask)
    loss.backward()

    frozen_weight = weight.detach()
    loss, _ = kd_loss_from_hidden(frozen, frozen_weight, bias, labels, kd_ids, kd_logprobs, kd_mask)
    loss.backward()

    assert frozen_weight.grad is None
    torch.testing.assert_close(frozen.grad, trained.grad)
