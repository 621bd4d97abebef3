"""Offline sparse knowledge-distillation loss over stored top-k teacher logprobs.

Per position the loss is `alpha * CE + (1 - alpha) * T^2 * KL(p_teacher || q_student)`, or
`w_ce * CE + w_kl * KL` with explicit weights (`student.kd.weights`); a part of weight 0 is
reported but adds nothing (not even a NaN) to the loss:

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

Memory: the student's log-softmax is never built for the whole batch in fp32 (see
`chunked_logits`). `kd_loss` takes the model's logits and walks them in chunks;
`kd_loss_from_hidden` takes the last hidden state and the LM head instead and never builds the
logits at all, which is what `KDTrainer` uses: its memory then stays near an SFT step's.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from synthdistill.chat_tokens import IGNORE_INDEX
from synthdistill.train.chunked_logits import gather_logsumexp, linear_gather_logsumexp
from synthdistill.train.loss_parts import compose

# Floor for the student's tail mass: log(0) would give -inf and NaN gradients once the
# top-k cover (numerically) all of the student's mass.
_TINY_MASS = 1e-12
# A teacher tail below this is summation noise of the stored logprobs (k covering the
# vocabulary sums to 1 +- 1e-7): tempering would amplify it (1e-7 ** (1/2) = 3e-4), so it is 0.
_TAIL_NOISE = 1e-6


def _log_tail(log_mass: torch.Tensor, floor: float) -> torch.Tensor:
    """log(1 - exp(log_mass)): the log of the mass outside a set whose log-mass is given."""
    return torch.log(torch.clamp(-torch.expm1(log_mass), min=floor))


def _kl_rows(teacher_logp: torch.Tensor, student_logp: torch.Tensor) -> torch.Tensor:
    """sum_j p_j (log p_j - log q_j) per row; entries with p_j = 0 contribute exactly 0."""
    present = teacher_logp > float("-inf")
    terms = torch.where(present, teacher_logp.exp() * (teacher_logp - student_logp), torch.zeros_like(student_logp))
    return terms.sum(-1)


def divergence_rows(teacher: torch.Tensor, student: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
    """Generalised JSD per row between two log-distributions over the same support (GKD; TRL's `beta`).

    beta 0 = forward KL(teacher || student); beta 1 = reverse KL(student || teacher); between, with
    the mixture m = beta·teacher + (1 − beta)·student: beta·KL(teacher || m) + (1 − beta)·KL(student || m).
    Where the teacher gives an entry no mass, the reverse KL floors it at 1e-12 (else it is infinite).
    """
    if beta == 0.0:
        return _kl_rows(teacher, student)
    if beta == 1.0:
        return _kl_rows(student, torch.clamp(teacher, min=math.log(_TINY_MASS)))
    mixture = torch.logsumexp(torch.stack([student + math.log(1.0 - beta), teacher + math.log(beta)]), dim=0)
    return beta * _kl_rows(teacher, mixture) + (1.0 - beta) * _kl_rows(student, mixture)


def sparse_kl(
    student_logits_at_ids: torch.Tensor,
    student_lse: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    valid: torch.Tensor,
    temperature: float,
    tail: Literal["bucket", "zero"],
    beta: float = 0.0,
) -> torch.Tensor:
    """KL(teacher || student) per row over the top-k ids (+ tail bucket), both at `temperature`.

    `student_logits_at_ids` [N, K] are raw logits, `student_lse` [N] is logsumexp(logits / T) over
    the vocabulary, `teacher_logprobs` [N, K] are stored at T = 1, `valid` [N, K] marks real
    candidates (every row needs at least one). `beta` > 0 takes the generalised JSD over the same
    support instead (`divergence_rows`; 1 = reverse KL), as on-policy distillation does.
    """
    neg_inf = torch.tensor(float("-inf"), dtype=student_lse.dtype, device=student_lse.device)
    student = torch.where(valid, student_logits_at_ids / temperature - student_lse[:, None], neg_inf)
    teacher = torch.where(valid, teacher_logprobs.to(student.dtype), neg_inf)
    student_top = torch.logsumexp(student, dim=-1)
    if tail == "zero":
        return divergence_rows(torch.log_softmax(teacher / temperature, dim=-1), student - student_top[:, None], beta)
    # Teacher: mass outside the stored top-k (0 when it is rounding noise or the sum passed 1).
    teacher_tail = _log_tail(torch.logsumexp(teacher, dim=-1), 0.0)
    teacher_tail = torch.where(teacher_tail > math.log(_TAIL_NOISE), teacher_tail, neg_inf)
    teacher = torch.log_softmax(torch.cat([teacher, teacher_tail[:, None]], dim=-1) / temperature, dim=-1)
    student = torch.cat([student, _log_tail(student_top, _TINY_MASS)[:, None]], dim=-1)
    return divergence_rows(teacher, student, beta)


def _shifted_targets(labels, kd_ids, kd_logprobs, kd_mask, vocab: int) -> dict[str, torch.Tensor]:
    """Targets for the logits at positions 0 .. T-2: each pairs with the target one position later."""
    target = labels[:, 1:]
    ids = kd_ids[:, 1:].long().clamp(0, vocab - 1)
    teacher = kd_logprobs[:, 1:].float()
    valid = torch.isfinite(teacher) & kd_mask[:, 1:].bool()[..., None]
    return {
        # the k teacher ids, then the label: one gather serves both terms
        "ids": torch.cat([ids, target.clamp(min=0)[..., None]], dim=-1),
        "teacher": teacher,
        "valid": valid,
        "kd_pos": valid.any(-1),
        "label_pos": target != IGNORE_INDEX,
    }


def _combine(gathered, lse, targets, scored, weights: dict[str, float], temperature: float, tail: str, beta=0.0):
    """The loss from per-row student logits at the target ids and log-sum-exps (rows = `scored` positions)."""
    label_pos, kd_pos = targets["label_pos"][scored], targets["kd_pos"][scored]
    zero = gathered.sum() * 0.0  # keeps the graph connected when a term has no positions
    label_tokens = int(label_pos.sum())
    ce = (lse[label_pos, 0] - gathered[label_pos, -1]).sum() / label_tokens if label_tokens else zero
    kd_tokens = int(kd_pos.sum())
    if kd_tokens:
        teacher, valid = targets["teacher"][scored][kd_pos], targets["valid"][scored][kd_pos]
        kl = sparse_kl(gathered[kd_pos, :-1], lse[kd_pos, -1], teacher, valid, temperature, tail, beta).mean()
    else:
        kl = zero
    loss = compose({"ce": ce, "kl": kl}, weights)
    parts = {"ce": ce.detach(), "kl": kl.detach(), "label_tokens": label_tokens, "kd_tokens": kd_tokens}
    return loss, parts


def _check_tail(tail: str) -> None:
    if tail not in ("bucket", "zero"):
        raise ValueError(f"tail must be 'bucket' or 'zero', not {tail!r}")


def logit_weights(alpha: float, temperature: float, weights: dict[str, float] | None) -> dict[str, float]:
    """The ce and kl weights: `weights` as given, else alpha's mix `alpha·CE + (1−alpha)·T²·KL`."""
    if weights is not None:
        return {"ce": weights["ce"], "kl": weights["kl"]}
    return {"ce": alpha, "kl": (1.0 - alpha) * temperature**2}


def _temperatures(temperature: float) -> tuple[float, ...]:
    return (1.0,) if temperature == 1.0 else (1.0, float(temperature))


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
    weights: dict[str, float] | None = None,
    beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor | int]]:
    """`alpha * CE + (1 - alpha) * T^2 * KL` for a batch (or `weights["ce"]·CE + weights["kl"]·KL`); returns (loss, parts).

    `beta` > 0 replaces the KL by the generalised JSD (`divergence_rows`; the part keeps the name kl).

    Shapes: `student_logits` [B, T, V] (any float dtype), `labels` [B, T] (-100 = no CE target),
    `kd_ids` [B, T, K] (teacher top-k ids for the token AT position t), `kd_logprobs` [B, T, K]
    (-inf marks padding candidates), `kd_mask` [B, T] (1 = position t has KD targets).
    `parts` holds the detached means `ce` and `kl` and the counts `label_tokens` and `kd_tokens`.
    """
    _check_tail(tail)
    targets = _shifted_targets(labels, kd_ids, kd_logprobs, kd_mask, student_logits.shape[-1])
    gather_ids = targets["ids"]
    # The last position has no target; give it dummy ids so the logits need no slicing copy.
    padded_ids = torch.cat([gather_ids, gather_ids.new_zeros(gather_ids.shape[0], 1, gather_ids.shape[2])], dim=1)
    gathered, lse = gather_logsumexp(student_logits, padded_ids, _temperatures(temperature), chunk_size)
    scored = targets["label_pos"] | targets["kd_pos"]
    weights = logit_weights(alpha, temperature, weights)
    return _combine(gathered[:, :-1][scored], lse[:, :-1][scored], targets, scored, weights, temperature, tail, beta)


def kd_loss_from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    kd_ids: torch.Tensor,
    kd_logprobs: torch.Tensor,
    kd_mask: torch.Tensor,
    alpha: float = 0.5,
    temperature: float = 1.0,
    tail: Literal["bucket", "zero"] = "bucket",
    weights: dict[str, float] | None = None,
    beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor | int]]:
    """`kd_loss` of the logits `hidden @ weight.T + bias`, without ever building them for the batch.

    `hidden` [B, T, H] is the backbone's last hidden state, `weight` [V, H] (and `bias` [V]) the LM
    head. Only positions with a label or KD targets are projected, a chunk of rows at a time; the
    backward pass projects each chunk again (see `linear_gather_logsumexp`).
    """
    _check_tail(tail)
    targets = _shifted_targets(labels, kd_ids, kd_logprobs, kd_mask, weight.shape[0])
    scored = targets["label_pos"] | targets["kd_pos"]
    gathered, lse = linear_gather_logsumexp(
        hidden[:, :-1][scored], weight, bias, targets["ids"][scored], _temperatures(temperature)
    )
    weights = logit_weights(alpha, temperature, weights)
    return _combine(gathered, lse, targets, scored, weights, temperature, tail, beta)
