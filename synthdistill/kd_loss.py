"""Offline sparse knowledge-distillation loss over stored top-k teacher logprobs.

Per position the loss is `alpha * CE + (1 - alpha) * T^2 * KL(p_teacher || q_student)`:

- CE is the ordinary next-token cross-entropy against `labels` at temperature 1, averaged
  over every label position (Hinton's hard-target term).
- KL is taken over the teacher's top-k candidate ids plus one **tail bucket** (the mass
  outside the top-k: `1 - sum(top-k)`, for teacher and student alike), averaged over the
  positions where `kd_mask` is 1. `tail="zero"` drops the bucket and renormalises both
  distributions over the top-k instead (it over-sharpens the teacher; kept for comparison).
- The teacher's distribution for token t pairs with the student's logits at t - 1, the same
  shift as the labels.

Temperature: the student is tempered exactly (`log_softmax(z / T)` over the whole vocabulary).
The teacher's logprobs were stored at T = 1, so they are re-tempered as
`log_softmax(logp / T)` over the top-k entries plus the tail bucket. That treats the tail as
one token: exact when k covers the vocabulary, an approximation otherwise (the true tempered
tail would spread `p^(1/T)` over every tail token), which is why T = 1 is the default.

Memory: the student's log-softmax is never built for the whole batch in fp32. A custom
autograd function walks the logits in chunks of `chunk_size` positions, upcasts one chunk at
a time, and keeps only the gathered logits of the k ids (+ the label) and the log-sum-exp;
the backward pass recomputes the softmax chunk by chunk.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

IGNORE_INDEX = -100
# Floor for the student's tail mass: log(0) would give -inf and NaN gradients once the
# top-k cover (numerically) all of the student's mass.
_TINY_MASS = 1e-12
# A teacher tail below this is summation noise of the stored logprobs (k covering the
# vocabulary sums to 1 +- 1e-7): tempering would amplify it (1e-7 ** (1/2) = 3e-4), so it is 0.
_TAIL_NOISE = 1e-6


class _GatherLogSumExp(torch.autograd.Function):
    """Rows of `logits` [N, V] → (logits at `ids` [N, M], logsumexp(logits / t) [N, len(temps)])."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, ids: torch.Tensor, temps: tuple[float, ...], chunk_size: int):
        dtype = torch.promote_types(logits.dtype, torch.float32)
        rows = logits.shape[0]
        gathered = logits.new_empty((rows, ids.shape[1]), dtype=dtype)
        lse = logits.new_empty((rows, len(temps)), dtype=dtype)
        for start in range(0, rows, chunk_size):
            stop = min(rows, start + chunk_size)
            chunk = logits[start:stop].to(dtype)
            gathered[start:stop] = chunk.gather(1, ids[start:stop])
            for j, temp in enumerate(temps):
                lse[start:stop, j] = torch.logsumexp(chunk / temp if temp != 1.0 else chunk, dim=-1)
        ctx.save_for_backward(logits, ids, lse)
        ctx.temps, ctx.chunk_size = temps, chunk_size
        return gathered, lse

    @staticmethod
    def backward(ctx, grad_gathered: torch.Tensor, grad_lse: torch.Tensor):
        logits, ids, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ctx.chunk_size):
            stop = min(logits.shape[0], start + ctx.chunk_size)
            chunk = logits[start:stop].to(lse.dtype)
            acc = torch.zeros_like(chunk)
            for j, temp in enumerate(ctx.temps):
                # d logsumexp(z / t) / dz = softmax(z / t) / t
                probs = torch.exp(chunk / temp - lse[start:stop, j : j + 1])
                acc += probs * (grad_lse[start:stop, j : j + 1] / temp)
            acc.scatter_add_(1, ids[start:stop], grad_gathered[start:stop])
            grad[start:stop] = acc.to(logits.dtype)
        return grad, None, None, None


def gather_logsumexp(
    logits: torch.Tensor, ids: torch.Tensor, temps: tuple[float, ...] = (1.0,), chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at `ids` and `logsumexp(logits / t)` for each t in `temps`, computed in chunks.

    `logits` is [..., V], `ids` is [..., M]; returns ([..., M], [..., len(temps)]) in at least fp32.
    """
    lead = logits.shape[:-1]
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_ids = ids.reshape(-1, ids.shape[-1]).long()
    gathered, lse = _GatherLogSumExp.apply(flat_logits, flat_ids, tuple(float(t) for t in temps), int(chunk_size))
    return gathered.view(*lead, -1), lse.view(*lead, -1)


def _log_tail(log_mass: torch.Tensor, floor: float) -> torch.Tensor:
    """log(1 - exp(log_mass)): the log of the mass outside a set whose log-mass is given."""
    return torch.log(torch.clamp(-torch.expm1(log_mass), min=floor))


def _kl_rows(teacher_logp: torch.Tensor, student_logp: torch.Tensor) -> torch.Tensor:
    """sum_j p_j (log p_j - log q_j) per row; entries with p_j = 0 contribute exactly 0."""
    present = teacher_logp > float("-inf")
    terms = torch.where(present, teacher_logp.exp() * (teacher_logp - student_logp), torch.zeros_like(student_logp))
    return terms.sum(-1)


def sparse_kl(
    student_logits_at_ids: torch.Tensor,
    student_lse: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    valid: torch.Tensor,
    temperature: float,
    tail: Literal["bucket", "zero"],
) -> torch.Tensor:
    """KL(teacher || student) per row over the top-k ids (+ tail bucket), both at `temperature`.

    `student_logits_at_ids` [N, K] are raw logits, `student_lse` [N] is logsumexp(logits / T) over
    the vocabulary, `teacher_logprobs` [N, K] are stored at T = 1, `valid` [N, K] marks real
    candidates (every row needs at least one).
    """
    neg_inf = torch.tensor(float("-inf"), dtype=student_lse.dtype, device=student_lse.device)
    student = torch.where(valid, student_logits_at_ids / temperature - student_lse[:, None], neg_inf)
    teacher = torch.where(valid, teacher_logprobs.to(student.dtype), neg_inf)
    student_top = torch.logsumexp(student, dim=-1)
    if tail == "zero":
        return _kl_rows(torch.log_softmax(teacher / temperature, dim=-1), student - student_top[:, None])
    # Teacher: mass outside the stored top-k (0 when it is rounding noise or the sum passed 1).
    teacher_tail = _log_tail(torch.logsumexp(teacher, dim=-1), 0.0)
    teacher_tail = torch.where(teacher_tail > math.log(_TAIL_NOISE), teacher_tail, neg_inf)
    teacher = torch.log_softmax(torch.cat([teacher, teacher_tail[:, None]], dim=-1) / temperature, dim=-1)
    student = torch.cat([student, _log_tail(student_top, _TINY_MASS)[:, None]], dim=-1)
    return _kl_rows(teacher, student)


def kd_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    kd_ids: torch.Tensor,
    kd_logprobs: torch.Tensor,
    kd_mask: torch.Tensor,
    alpha: float = 0.5,
    temperature: float = 1.0,
    tail: Literal["bucket", "zero"] = "bucket",
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, dict[str, torch.Tensor | int]]:
    """`alpha * CE + (1 - alpha) * T^2 * KL` for a batch; returns (loss, parts).

    Shapes: `student_logits` [B, T, V] (any float dtype), `labels` [B, T] (-100 = no CE target),
    `kd_ids` [B, T, K] (teacher top-k ids for the token AT position t), `kd_logprobs` [B, T, K]
    (-inf marks padding candidates), `kd_mask` [B, T] (1 = position t has KD targets).
    `parts` holds the detached means `ce` and `kl` and the counts `label_tokens` and `kd_tokens`.
    """
    if tail not in ("bucket", "zero"):
        raise ValueError(f"tail must be 'bucket' or 'zero', not {tail!r}")
    vocab = student_logits.shape[-1]
    # Targets at t pair with logits at t - 1: drop the first target and (below) the last logits row.
    target = labels[:, 1:]
    ids = kd_ids[:, 1:].long().clamp(0, vocab - 1)
    teacher = kd_logprobs[:, 1:].float()
    valid = torch.isfinite(teacher) & kd_mask[:, 1:].bool()[..., None]
    kd_pos = valid.any(-1)
    label_pos = target != IGNORE_INDEX

    gather_ids = torch.cat([ids, target.clamp(min=0)[..., None]], dim=-1)
    temps = (1.0,) if temperature == 1.0 else (1.0, float(temperature))
    # The last position has no target; give it dummy ids so the logits need no slicing copy.
    padded_ids = torch.cat([gather_ids, gather_ids.new_zeros(gather_ids.shape[0], 1, gather_ids.shape[2])], dim=1)
    gathered, lse = gather_logsumexp(student_logits, padded_ids, temps, chunk_size)
    gathered, lse = gathered[:, :-1], lse[:, :-1]
    zero = gathered.sum() * 0.0  # keeps the graph connected when a term has no positions

    label_tokens = int(label_pos.sum())
    ce_rows = lse[..., 0][label_pos] - gathered[..., -1][label_pos]
    ce = ce_rows.sum() / label_tokens if label_tokens else zero

    kd_tokens = int(kd_pos.sum())
    if kd_tokens:
        kl = sparse_kl(
            gathered[..., :-1][kd_pos], lse[..., -1][kd_pos], teacher[kd_pos], valid[kd_pos], temperature, tail
        ).mean()
    else:
        kl = zero
    loss = alpha * ce + (1.0 - alpha) * temperature**2 * kl if alpha < 1.0 else ce
    parts = {"ce": ce.detach(), "kl": kl.detach(), "label_tokens": label_tokens, "kd_tokens": kd_tokens}
    return loss, parts
