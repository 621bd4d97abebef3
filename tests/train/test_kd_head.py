"""`add_kd_head`: the loss out of a real student's forward equals `kd_loss` on its full logits."""

from __future__ import annotations

import pytest
import torch

from synthdistill.student_config import KDConfig
from synthdistill.train.kd_head import add_kd_head, supports_kd_head
from synthdistill.train.kd_loss import kd_loss


def _targets(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab, (2, 9), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0  # a padded row
    labels = input_ids.clone()
    labels[:, :3] = -100
    labels[1, 7:] = -100
    kd_ids = torch.randint(0, vocab, (2, 9, 4), generator=g)
    kd_logprobs = torch.log_softmax(torch.randn(2, 9, 5, generator=g), -1)[..., :4]
    kd_mask = (labels != -100).to(torch.int8)
    return (
        input_ids,
        attention_mask,
        {"labels": labels, "kd_ids": kd_ids, "kd_logprobs": kd_logprobs, "kd_mask": kd_mask},
    )


def _student(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


@pytest.mark.parametrize("settings", [KDConfig(), KDConfig(alpha=0.2, temperature=2.0)])
def test_kd_forward_matches_kd_loss_on_the_full_logits(tiny_student, settings):
    fused_model, plain_model = _student(tiny_student), _student(tiny_student)
    assert supports_kd_head(fused_model)
    add_kd_head(fused_model, settings)
    input_ids, attention_mask, targets = _targets(fused_model.config.vocab_size)

    out = fused_model(input_ids=input_ids, attention_mask=attention_mask, kd_targets=targets)
    logits = plain_model(input_ids=input_ids, attention_mask=attention_mask).logits
    expected, parts = kd_loss(
        logits, targets["labels"], targets["kd_ids"], targets["kd_logprobs"], targets["kd_mask"],
        alpha=settings.alpha, temperature=settings.temperature, tail=settings.tail,
    )  # fmt: skip
    out.loss.backward()
    expected.backward()

    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.ce.item() == pytest.approx(parts["ce"].item(), rel=1e-5)
    assert out.kl.item() == pytest.approx(parts["kl"].item(), rel=1e-5)
    plain = dict(plain_model.named_parameters())
    for name, parameter in fused_model.named_parameters():
        torch.testing.assert_close(parameter.grad, plain[name].grad, rtol=1e-4, atol=1e-6)


def test_without_kd_targets_the_forward_and_generate_are_unchanged(tiny_student):
    fused_model, plain_model = _student(tiny_student), _student(tiny_student)
    add_kd_head(fused_model, KDConfig())
    input_ids, attention_mask, _ = _targets(fused_model.config.vocab_size, seed=1)

    with torch.no_grad():
        torch.testing.assert_close(
            fused_model(input_ids=input_ids, attention_mask=attention_mask).logits,
            plain_model(input_ids=input_ids, attention_mask=attention_mask).logits,
        )
        generated = fused_model.generate(input_ids[:1], max_new_tokens=4, do_sample=False)
        assert generated.equal(plain_model.generate(input_ids[:1], max_new_tokens=4, do_sample=False))


def test_a_softcapped_student_keeps_the_logits_path(tiny_student):
    model = _student(tiny_student)
    model.config.final_logit_softcapping = 30.0  # as Gemma 2/3 configs set it
    assert not supports_kd_head(model)


def test_a_zero3_partitioned_head_takes_the_logits_path_with_the_same_loss(tiny_student):
    """DeepSpeed ZeRO-3 marks partitioned parameters with `ds_id` and gathers them only in the module's forward."""
    model = _student(tiny_student)
    add_kd_head(model, KDConfig())
    input_ids, attention_mask, targets = _targets(model.config.vocab_size, seed=2)
    fused = model(input_ids=input_ids, attention_mask=attention_mask, kd_targets=targets).loss

    # As ZeRO-3 does: the weight is empty outside the forward of the modules that own it (tied: both embeddings).
    head = model.get_output_embeddings()
    full, empty = head.weight.data, torch.empty(0)
    head.weight.ds_id = 7
    head.weight.data = empty
    for module in (head, model.get_input_embeddings()):
        module.register_forward_pre_hook(lambda module, args: setattr(module.weight, "data", full))
        module.register_forward_hook(lambda module, args, output: setattr(module.weight, "data", empty))
    through_logits = model(input_ids=input_ids, attention_mask=attention_mask, kd_targets=targets).loss

    assert through_logits.item() == pytest.approx(fused.item(), rel=1e-5)
