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

from synthdistill.config import KDConfig
from synthdistill.train.kd_loss import kd_loss, kd_loss_from_hidden

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
    """The KD forward's result: the loss and its detached CE and KL means."""

    loss: torch.Tensor | None = None
    ce: torch.Tensor | None = None
    kl: torch.Tensor | None = None


def supports_kd_head(model) -> bool:
    """True when the logits are exactly `lm_head(last_hidden_state)` and can be projected chunk by chunk."""
    config = model.config.get_text_config()
    head = model.get_output_embeddings()
    transforms = [getattr(config, name, None) for name in _LOGIT_TRANSFORMS]
    return isinstance(head, torch.nn.Linear) and all(value in (None, 1.0) for value in transforms)


def add_kd_head(model, settings: KDConfig) -> None:
    """Patch `model.forward` to accept `kd_targets` (labels, kd_ids, kd_logprobs, kd_mask) and return a `KDOutput`."""
    original_forward = model.forward

    @functools.wraps(type(model).forward)  # keeps the signature `generate` checks its kwargs against
    def forward(self, *args, kd_targets=None, **kwargs):
        if kd_targets is None:
            return original_forward(*args, **kwargs)
        kwargs["use_cache"] = False
        # Looked up per call: FSDP and PEFT replace modules after this patch.
        head = self.get_output_embeddings()
        weight, bias = head.weight, head.bias
        if hasattr(weight, "ds_id"):
            # DeepSpeed ZeRO-3 gathers a partitioned head only inside the head's own forward: take the logits path.
            logits = original_forward(*args, **kwargs).logits
            loss, parts = kd_loss(logits, **kd_targets, **settings.model_dump())
            return KDOutput(loss=loss, ce=parts["ce"], kl=parts["kl"])
        if hasattr(weight, "full_tensor"):  # an FSDP2 DTensor shard: the projection needs the whole head
            weight = weight.full_tensor()
            bias = bias.full_tensor() if bias is not None else None
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        targets = {key: value.to(weight.device) for key, value in kd_targets.items()}
        loss, parts = kd_loss_from_hidden(hidden.to(weight.device), weight, bias, **targets, **settings.model_dump())
        return KDOutput(loss=loss, ce=parts["ce"], kl=parts["kl"])

    model.forward = types.MethodType(forward, model)
