"""The named parts of the KD loss beyond the logits: feature KD and relation KD, and their sum.

The student's loss is `sum(weight[name] * part[name])` over the parts `ce`, `kl` (kd_loss.py),
`feature` and `relation` (here); each part is logged on its own.

- **feature**: for each configured pair (student layer i, teacher layer j), the student's output of
  decoder layer i at the answer tokens, through a learned linear projection where the widths differ,
  against the teacher's output of layer j at the same tokens (same tokenizer: the same positions;
  another tokenizer: both mean-pooled over each byte segment both cover, train/teacher_tokens.py);
  `cosine` = mean of 1 − cosine similarity, `mse` = mean squared difference; averaged over the pairs.
- **relation** (RKD, Park et al. 2019): each example's last hidden state mean-pooled over its answer
  tokens, student and teacher alike (or, with `source: embeddings`, the teacher's harvested embedding
  of each answer: an API teacher's internals); `distance` compares the pairwise distances, each set divided by
  its mean, with a Huber loss; `angle` compares the cosines of the angles of every triplet.
  Relations are taken within one per-device micro-batch: under gradient accumulation each
  micro-batch contributes its own relation loss, averaged like every other part (relations across
  micro-batches are not formed); an epoch's last batch, when too short, contributes 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from synthdistill.chat_tokens import IGNORE_INDEX
from synthdistill.errors import ConfigError

# hidden_states[0] is the embedding output; the output of decoder layer i is hidden_states[i + 1]
_EMBEDDINGS = 1


def compose(parts: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """`sum(weights[name] * parts[name])`; a part of weight 0 (or without a weight) is left out entirely."""
    terms = [weights[name] * value for name, value in parts.items() if weights.get(name, 0.0)]
    if not terms:
        return next(iter(parts.values())) * 0.0
    return torch.stack(terms).sum() if len(terms) > 1 else terms[0]


def answer_mask(labels: torch.Tensor) -> torch.Tensor:
    """[B, T] True at the answer tokens (the positions that carry a label)."""
    return labels != IGNORE_INDEX


def evenly_spaced_pairs(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """Each student layer i paired with teacher layer round(i·(L_t − 1)/(L_s − 1)) (first to first, last to last)."""
    if student_layers == 1:
        return [(0, teacher_layers - 1)]
    return [(i, round(i * (teacher_layers - 1) / (student_layers - 1))) for i in range(student_layers)]


def layer_pairs(layers, student_layers: int, teacher_layers: int, kept: list[int] | None) -> list[tuple[int, int]]:
    """The (student, teacher) layer pairs of `student.kd.features.layers`, checked against both depths.

    `auto` uses `kept` (the teacher layers a depth-pruned student was copied from) when given, else
    spaces the student's layers evenly over the teacher's.
    """
    if layers == "auto":
        if kept is not None and len(kept) == student_layers and max(kept) < teacher_layers:
            return list(enumerate(kept))
        return evenly_spaced_pairs(student_layers, teacher_layers)
    pairs = [(int(s), int(t)) for s, t in layers]
    for s, t in pairs:
        if not (0 <= s < student_layers and 0 <= t < teacher_layers):
            raise ConfigError(
                f"student.kd.features.layers: pair [{s}, {t}] is out of range: the student has {student_layers} "
                f"layers (0..{student_layers - 1}), the teacher {teacher_layers} (0..{teacher_layers - 1})"
            )
    if not pairs:
        raise ConfigError("student.kd.features.layers is empty: give [student, teacher] pairs or auto")
    return pairs


class FeatureProjections(torch.nn.Module):
    """One linear map per layer pair from the student's width to the teacher's (identity when equal).

    Trained with the student; `drop_feature_projections` removes it before the student is saved.
    """

    def __init__(self, pairs: list[tuple[int, int]], student_width: int, teacher_width: int):
        super().__init__()
        self.pairs = pairs
        self.maps = torch.nn.ModuleList(
            [torch.nn.Linear(student_width, teacher_width, bias=False) for _ in pairs]
            if student_width != teacher_width
            else []
        )

    def project(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        if not len(self.maps):
            return hidden
        layer = self.maps[index]
        return layer(hidden.to(layer.weight.dtype))


def segment_means(hidden: torch.Tensor, segment: torch.Tensor, count: int) -> torch.Tensor:
    """[count, H]: the mean of `hidden` [B, T, H] over the positions of each segment (`segment` [B, T], -1 = none)."""
    ids = segment.to(hidden.device).reshape(-1)
    keep = ids >= 0
    rows = hidden.reshape(-1, hidden.shape[-1])[keep]
    sums = rows.new_zeros((count, rows.shape[-1])).index_add(0, ids[keep], rows)
    sizes = torch.bincount(ids[keep], minlength=count).clamp(min=1).to(rows.dtype)
    return sums / sizes[:, None]


def feature_loss(
    student_hidden: tuple[torch.Tensor, ...],
    teacher_hidden: tuple[torch.Tensor, ...],
    mask: torch.Tensor,
    projections: FeatureProjections,
    kind: str,
    alignment: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean over the layer pairs of the cosine / MSE distance at the answer tokens (`mask`).

    With `alignment` (a teacher with another tokenizer, train/teacher_tokens.py) the pairs are the
    mean-pooled hidden states of each segment both sides cover, student and teacher.
    """
    count = int(alignment["student_segment"].max()) + 1 if alignment is not None else 0
    losses = []
    for index, (s, t) in enumerate(projections.pairs):
        if alignment is None:
            student_rows, teacher = student_hidden[s + _EMBEDDINGS][mask], teacher_hidden[t + _EMBEDDINGS][mask]
        else:
            student_rows = segment_means(student_hidden[s + _EMBEDDINGS], alignment["student_segment"], count)
            teacher = segment_means(teacher_hidden[t + _EMBEDDINGS], alignment["teacher_segment"], count)
        student = projections.project(index, student_rows).float()
        teacher = teacher.to(student.device).float()
        if len(student) == 0:  # no answer token (or no common segment) in this batch
            losses.append(student.sum() * 0.0)
        elif kind == "cosine":
            losses.append((1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean())
        else:
            losses.append(F.mse_loss(student, teacher))
    return torch.stack(losses).mean()


def pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, H]: each example's hidden states averaged over its answer tokens."""
    weights = mask.to(hidden.dtype)[..., None]
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _distances(x: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(x, x)
    off = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    return d[off] / d[off].mean().clamp(min=1e-12)


def _angles(x: torch.Tensor) -> torch.Tensor:
    e = F.normalize(x[None, :, :] - x[:, None, :], dim=-1, eps=1e-12)  # e[j, i] = unit(x_i - x_j)
    return torch.bmm(e, e.transpose(1, 2)).flatten()  # cos of angle i-j-k for every j, i, k


def min_batch(kind: str) -> int:
    """Examples a micro-batch needs for the relation loss `kind`.

    Angles need a triplet; distances need 3 too, since divided by their mean the one distance of a
    pair is always 1 (no signal).
    """
    return 3


def check_relation_batch(kind: str, batch_size: int) -> None:
    """A clear error before training when `student.batch_size` is too small for the relation loss."""
    if batch_size < min_batch(kind):
        raise ConfigError(
            f"student.kd.relations.loss {kind} compares examples within a batch and needs student.batch_size >= "
            f"{min_batch(kind)} per device, not {batch_size} (gradient accumulation does not add examples to a batch; "
            "with 2 examples the one normalised distance is always 1)"
        )


def relation_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """RKD between the rows of `student` [B, Hs] and `teacher` [B, Ht] (pooled answer representations)."""
    if len(student) < min_batch(kind):  # an epoch's last, short batch (the configured batch size is checked)
        return student.sum() * 0.0
    student, teacher = student.float(), teacher.to(student.device).float()
    losses = []
    if "distance" in kind:
        losses.append(F.smooth_l1_loss(_distances(student), _distances(teacher)))
    if "angle" in kind:
        losses.append(F.smooth_l1_loss(_angles(student), _angles(teacher)))
    return torch.stack(losses).sum()


def representation_parts(
    student_hidden, teacher_hidden, labels, settings, projections, alignment=None
) -> dict[str, torch.Tensor]:
    """The configured `feature` and `relation` parts from both models' hidden states (unweighted).

    `alignment`: the batch's segments when the teacher has another tokenizer (`feature_loss`);
    the teacher's answer is then its own answer tokens (`alignment["teacher_answer"]`).
    """
    mask = answer_mask(labels)
    parts = {}
    if settings.features is not None:
        kind = settings.features.loss
        parts["feature"] = feature_loss(student_hidden, teacher_hidden, mask, projections, kind, alignment)
    if settings.relations is not None and settings.relations.source == "teacher-hidden":
        student = pooled(student_hidden[-1], mask)
        teacher_mask = mask if alignment is None else alignment["teacher_answer"]
        teacher = pooled(teacher_hidden[-1].to(student.device).float(), teacher_mask.to(student.device))
        parts["relation"] = relation_loss(student, teacher, settings.relations.loss)
    return parts


def embedding_relation(student_last: torch.Tensor, labels: torch.Tensor, embeddings, present, kind: str):
    """RKD between the student's pooled answers and the teacher's harvested embeddings [B, D] (`present` [B]:
    which examples have one; the others are left out of the batch's relations)."""
    student = pooled(student_last, answer_mask(labels))
    present = present.to(student.device)
    return relation_loss(student[present], embeddings.to(student.device)[present], kind)


def next_token_rows(labels: torch.Tensor) -> torch.Tensor:
    """[B, T-1] True where position t's output predicts an answer token (label t + 1 is set)."""
    return labels[:, 1:] != IGNORE_INDEX


def _chunk_kl(student_logits: torch.Tensor, teacher_logp: torch.Tensor, temperature: float) -> torch.Tensor:
    student = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    return (teacher_logp.exp() * (teacher_logp - student)).sum()


def _head_chunk_kl(hidden, weight, bias, teacher_logp, temperature: float) -> torch.Tensor:
    return _chunk_kl(F.linear(hidden, weight, bias), teacher_logp, temperature)


def online_kl(rows: torch.Tensor, weight, bias, teacher_logp: torch.Tensor, temperature: float, chunk: int = 256):
    """Mean KL(teacher ‖ student) over the whole vocabulary, from the student's hidden `rows` [N, H] and LM head.

    `teacher_logp` [N, V] is the teacher's log-softmax at `temperature`. Each chunk of rows is
    projected, and projected again in the backward pass (activation checkpointing), so only one
    chunk's [chunk, V] logits are alive at a time. `weight` None means `rows` are already logits.
    """
    from torch.utils.checkpoint import checkpoint

    if len(rows) == 0:
        return rows.sum() * 0.0
    total = rows.new_zeros((), dtype=torch.float32)
    for start in range(0, len(rows), chunk):
        part, target = rows[start : start + chunk], teacher_logp[start : start + chunk].to(rows.device)
        if weight is None:
            total = total + _chunk_kl(part, target, temperature)
        else:
            total = total + checkpoint(_head_chunk_kl, part, weight, bias, target, temperature, use_reentrant=False)
    return total / len(rows)
