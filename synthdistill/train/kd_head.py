"""The KD loss inside the student's forward: backbone → chunked LM head → `kd_loss_from_hidden`.

`model(..., kd_targets={...})` returns the loss without building the [batch, seq, vocab]
logits; without `kd_targets` the forward is the model's own, so generation is unchanged. The
loss runs inside the forward (as TRL's fused LM head does for cross-entropy) so that DDP, FSDP
and DeepSpeed wrappers see an ordinary forward and reduce the gradients as usual.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from synthdistill.student_config import KDConfig
from synthdistill.train.kd_loss import kd_loss, kd_loss_from_hidden
from synthdistill.train.loss_parts import (
    FeatureProjections,
    compose,
    embedding_relation,
    next_token_rows,
    online_kl,
    representation_parts,
)

# Config fields that transform the logits after the LM head; a student with any of them set
# (Gemma's softcapping, Granite's scaling...) keeps the full-logit path, which applies them.
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


@dataclass
class KDOutput(ModelOutput):
    """The KD forward's result: the loss and its detached parts (feature and relation when configured)."""

    loss: torch.Tensor | None = None
    ce: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    feature: torch.Tensor | None = None
    relation: torch.Tensor | None = None


def supports_kd_head(model) -> bool:
    """True when the logits are exactly `lm_head(last_hidden_state)` and can be projected chunk by chunk."""
    config = model.config.get_text_config()
    head = model.get_output_embeddings()
    transforms = [getattr(config, name, None) for name in _LOGIT_TRANSFORMS]
    return isinstance(head, torch.nn.Linear) and all(value in (None, 1.0) for value in transforms)


def add_kd_head(model, settings: KDConfig, projections: FeatureProjections | None = None) -> None:
    """Patch `model.forward` to accept `kd_targets` (labels, kd_ids, kd_logprobs, kd_mask) and return a `KDOutput`.

    With `kd_teacher` (`LocalTeacher.run`'s outputs) the forward adds the feature and relation
    parts, and with `settings.online` takes the kl part from the teacher's full distribution; `projections` (feature KD between different widths) becomes the submodule
    `kd_feature_projections`, so it trains, and gradient-syncs under DDP, with the student.
    """
    original_forward = model.forward
    weights = settings.loss_weights()
    # online KD: the kl part comes from the teacher's full distribution, not the stored top-k
    stored_weights = {**weights, "kl": 0.0} if settings.online else weights
    logit_settings = {"alpha": settings.alpha, "temperature": settings.temperature, "tail": settings.tail}
    if projections is not None:
        model.kd_feature_projections = projections

    @functools.wraps(type(model).forward)  # keeps the signature `generate` checks its kwargs against
    def forward(self, *args, kd_targets=None, kd_teacher=None, **kwargs):
        if kd_targets is None:
            return original_forward(*args, **kwargs)
        kwargs["use_cache"] = False
        kwargs["output_hidden_states"] = kd_teacher is not None
        # Looked up per call: FSDP and PEFT replace modules after this patch.
        head = self.get_output_embeddings()
        weight, bias = head.weight, head.bias
        if hasattr(weight, "ds_id"):
            # DeepSpeed ZeRO-3 gathers a partitioned head only inside the head's own forward: take the logits path.
            out = original_forward(*args, **kwargs)
            loss, parts = kd_loss(out.logits, **kd_targets, **logit_settings, weights=stored_weights)
            head_input = (out.logits[:, :-1], None, None)  # already logits
            return _with_teacher(self, loss, parts, out.hidden_states, kd_teacher, kd_targets["labels"], head_input)
        if hasattr(weight, "full_tensor"):  # an FSDP2 DTensor shard: the projection needs the whole head
            weight = weight.full_tensor()
            bias = bias.full_tensor() if bias is not None else None
        out = self.base_model(*args, **kwargs)
        targets = {key: value.to(weight.device) for key, value in kd_targets.items()}
        hidden = out.last_hidden_state.to(weight.device)
        loss, parts = kd_loss_from_hidden(hidden, weight, bias, **targets, **logit_settings, weights=stored_weights)
        head_input = (hidden[:, :-1], weight, bias)
        return _with_teacher(self, loss, parts, out.hidden_states, kd_teacher, targets["labels"], head_input)

    def _with_teacher(self, loss, parts, student_hidden, teacher, labels, head_input) -> KDOutput:
        """Adds the parts that need the local teacher's outputs (`teacher`: LocalTeacher.run's dict)."""
        named = {"ce": parts["ce"], "kl": parts["kl"]}
        if teacher is None:
            return KDOutput(loss=loss, **named)
        projections = getattr(self, "kd_feature_projections", None)
        extra = {}
        if teacher.get("hidden") is not None:
            extra = representation_parts(
                student_hidden, teacher["hidden"], labels, settings, projections, teacher.get("alignment")
            )
        if teacher.get("embeddings") is not None:  # relations from the harvested embeddings (no local teacher)
            vectors, present = teacher["embeddings"], teacher["embedding_mask"]
            kind = settings.relations.loss
            extra["relation"] = embedding_relation(student_hidden[-1], labels, vectors, present, kind)
        if settings.online:
            rows, head_weight, head_bias = head_input
            rows = rows[next_token_rows(labels.to(rows.device))]
            extra["kl"] = online_kl(rows, head_weight, head_bias, teacher["logprobs"], settings.temperature)
        if extra:
            loss = loss + compose(extra, weights)
        named.update({name: value.detach() for name, value in extra.items()})
        return KDOutput(loss=loss, **named)

    model.forward = types.MethodType(forward, model)
