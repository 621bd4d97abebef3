"""kd_loss against direct dense computations on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from synthdistill.train.kd_loss import kd_loss

B, L, V = 2, 6, 11


def _batch(k: int, seed: int = 0, dtype=torch.float32):
    """Random student logits, teacher top-k at every answer position (positions 2.. of each row)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, V, generator=g, dtype=torch.float64).to(dtype)
    teacher_logits = torch.randn(B, L, V, generator=g, dtype=torch.float64) * 2
    teacher_logp = torch.log_softmax(teacher_logits, -1)
    top = teacher_logp.topk(k, dim=-1)
    labels = torch.randint(0, V, (B, L), generator=g)
    labels[:, :2] = -100  # the prompt
    kd_mask = (labels != -100).to(torch.int8)
    return logits, labels, top.indices, top.values.float(), kd_mask, teacher_logp


def _loop_reference(logits, labels, kd_ids, kd_logprobs, kd_mask, alpha, temperature, tail):
    """Position by position, in float64, straight from the definition in the module docstring."""
    logits = logits.double()
    ce_terms, kl_terms = [], []
    for b in range(logits.shape[0]):
        for t in range(1, logits.shape[1]):
            z = logits[b, t - 1]
            if labels[b, t] != -100:
                ce_terms.append(-torch.log_softmax(z, -1)[labels[b, t]])
            if not kd_mask[b, t]:
                continue
            lp = kd_logprobs[b, t].double()
            keep = torch.isfinite(lp)
            ids, lp = kd_ids[b, t][keep], lp[keep]
            q_top = torch.softmax(z / temperature, -1)[ids]
            if tail == "bucket":
                rest = 1 - lp.exp().sum()
                rest = rest if rest > 1e-6 else torch.zeros((), dtype=rest.dtype)  # summation noise
                p = torch.cat([lp.exp(), rest.reshape(1)])
                p = torch.softmax(torch.log(p) / temperature, -1)
                q = torch.cat([q_top, (1 - q_top.sum()).reshape(1)])
            else:
                p = torch.softmax(lp / temperature, -1)
                q = q_top / q_top.sum()
            kl_terms.append(sum(p[i] * (torch.log(p[i]) - torch.log(q[i])) for i in range(len(p)) if p[i] > 0))
    ce = torch.stack(ce_terms).mean()
    kl = torch.stack(kl_terms).mean()
    return alpha * ce + (1 - alpha) * temperature**2 * kl


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("tail", ["bucket", "zero"])
def test_full_vocabulary_equals_dense_kl(temperature, tail):
    logits, labels, kd_ids, kd_logprobs, kd_mask, teacher_logp = _batch(k=V)
    loss, parts = kd_loss(logits, labels, kd_ids, kd_logprobs, kd_mask, 0.3, temperature, tail, chunk_size=3)

    shifted = labels[:, 1:] != -100
    student = torch.log_softmax(logits[:, :-1].double() / temperature, -1)[shifted]
    teacher = torch.log_softmax(teacher_logp[:, 1:] / temperature, -1)[shifted]
    dense_kl = F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1).mean()
    dense_ce = F.cross_entropy(logits[:, :-1].reshape(-1, V).double(), labels[:, 1:].reshape(-1))
    expected = 0.3 * dense_ce + 0.7 * temperature**2 * dense_kl

    assert parts["label_tokens"] == parts["kd_tokens"] == 8
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert parts["kl"].item() == pytest.approx(dense_kl.item(), abs=1e-5)
    assert parts["ce"].item() == pytest.approx(dense_ce.item(), abs=1e-5)


@pytest.mark.parametrize(
    ("k", "temperature", "tail"), [(V, 1.0, "bucket"), (4, 1.0, "bucket"), (3, 2.0, "bucket"), (3, 1.5, "zero")]
)
def test_gradients_match_autograd_on_the_reference(k, temperature, tail):
    logits, labels, kd_ids, kd_logprobs, kd_mask, _ = _batch(k=k, seed=1, dtype=torch.float64)
    ours = logits.clone().requires_grad_(True)
    ref = logits.clone().requires_grad_(True)
    loss, _ = kd_loss(ours, labels, kd_ids, kd_logprobs, kd_mask, 0.4, temperature, tail, chunk_size=5)
    expected = _loop_reference(ref, labels, kd_ids, kd_logprobs, kd_mask, 0.4, temperature, tail)
    loss.backward()
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-10)
    torch.testing.assert_close(ours.grad, ref.grad, atol=1e-10, rtol=1e-8)
    assert ours.grad[:, -1].abs().max() == 0  # the last position predicts nothing


def test_tail_bucket_by_hand():
    # Teacher p = [0.5, 0.3, 0.1, 0.1] keeps its top-2; uniform student q = 0.25 each.
    labels = torch.tensor([[-100, 0]])
    kd_ids = torch.tensor([[[0, 0], [0, 1]]])
    kd_logprobs = torch.tensor([[[float("-inf")] * 2, [math.log(0.5), math.log(0.3)]]])
    kd_mask = torch.tensor([[0, 1]])
    logits = torch.zeros(1, 2, 4)

    bucket, parts = kd_loss(logits, labels, kd_ids, kd_logprobs, kd_mask, alpha=0.0, tail="bucket")
    zero, _ = kd_loss(logits, labels, kd_ids, kd_logprobs, kd_mask, alpha=0.0, tail="zero")

    # Bucket: teacher [0.5, 0.3, tail 0.2] against student [0.25, 0.25, tail 0.5].
    assert bucket.item() == pytest.approx(0.5 * math.log(2) + 0.3 * math.log(1.2) + 0.2 * math.log(0.4), abs=1e-6)
    # Zero tail: teacher renormalised to [0.625, 0.375] against [0.5, 0.5].
    assert zero.item() == pytest.approx(0.625 * math.log(1.25) + 0.375 * math.log(0.75), abs=1e-6)
    assert parts == {
        "ce": pytest.approx(math.log(4)),
        "kl": pytest.approx(bucket.item()),
        "label_tokens": 1,
        "kd_tokens": 1,
    }


def test_top_k_mass_below_one_matches_reference():
    logits, labels, kd_ids, kd_logprobs, kd_mask, _ = _batch(k=3, seed=2)
    assert (kd_logprobs[kd_mask.bool()].exp().sum(-1) < 0.999).all()
    loss, _ = kd_loss(logits, labels, kd_ids, kd_logprobs, kd_mask, 0.5, 1.0, "bucket")
    expected = _loop_reference(logits, labels, kd_ids, kd_logprobs, kd_mask, 0.5, 1.0, "bucket")
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_masked_positions_and_padding_candidates_contribute_nothing():
    logits, labels, kd_ids, kd_logprobs, kd_mask, _ = _batch(k=3, seed=3)
    loss, parts = kd_loss(logits, labels, kd_ids, kd_logprobs, kd_mask)

    # Garbage where kd_mask is 0 (and position 0, which has no preceding logits).
    noisy_ids, noisy_lp = kd_ids.clone(), kd_logprobs.clone()
    noisy_ids[:, :2] = 7
    noisy_lp[:, :2] = -0.01
    # Two padding candidates per position (id 0, logprob -inf), as the collator pads K.
    padded_ids = torch.cat([noisy_ids, torch.zeros(B, L, 2, dtype=noisy_ids.dtype)], -1)
    padded_lp = torch.cat([noisy_lp, torch.full((B, L, 2), float("-inf"))], -1)
    again, again_parts = kd_loss(logits, labels, padded_ids, padded_lp, kd_mask)
    assert again.item() == pytest.approx(loss.item(), abs=1e-6)
    assert again_parts["kd_tokens"] == parts["kd_tokens"] == 8

    # Dropping the KD targets of one position changes the KL to the mean over the others.
    fewer = kd_mask.clone()
    fewer[0, 3] = 0
    _, fewer_parts = kd_loss(logits, labels, kd_ids, kd_logprobs, fewer)
    assert fewer_parts["kd_tokens"] == 7


def test_alpha_one_is_plain_cross_entropy():
    logits, labels, kd_ids, kd_logprobs, kd_mask, _ = _batch(k=3, seed=4)
    loss, parts = kd_loss(logits, labels, kd_ids, kd_logprobs, kd_mask, alpha=1.0, temperature=3.0)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert parts["kl"].item() > 0  # still reported, not trained on


def test_chunk_size_does_not_change_the_result_and_bf16_runs():
    logits, labels, kd_ids, kd_logprobs, kd_mask, _ = _batch(k=4, seed=5)
    one, _ = kd_loss(logits, labels, kd_ids, kd_logprobs, kd_mask, chunk_size=1)
    many, _ = kd_loss(logits, labels, kd_ids, kd_logprobs, kd_mask, chunk_size=10_000)
    assert one.item() == pytest.approx(many.item(), abs=1e-6)

    half = logits.to(torch.bfloat16).requires_grad_(True)
    loss, _ = kd_loss(half, labels, kd_ids, kd_logprobs, kd_mask)
    loss.backward()
    assert loss.dtype == torch.float32 and half.grad.dtype == torch.bfloat16
    assert loss.item() == pytest.approx(many.item(), abs=0.05)


def test_no_targets_gives_a_connected_zero():
    logits = torch.randn(1, 4, V, requires_grad=True)
    labels = torch.full((1, 4), -100)
    loss, parts = kd_loss(
        logits, labels, torch.zeros(1, 4, 2, dtype=torch.long), torch.zeros(1, 4, 2), torch.zeros(1, 4)
    )
    loss.backward()
    assert loss.item() == 0.0 and parts["label_tokens"] == 0 and parts["kd_tokens"] == 0
    assert logits.grad.abs().max() == 0


def test_unknown_tail_is_rejected():
    logits, labels, kd_ids, kd_logprobs, kd_mask, _ = _batch(k=2)
    with pytest.raises(ValueError, match="tail must be 'bucket' or 'zero'"):
        kd_loss(logits, labels, kd_ids, kd_logprobs, kd_mask, tail="uniform")
