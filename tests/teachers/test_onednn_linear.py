"""A float32 teacher's linear layers on oneDNN: each row's result independent of its neighbours, within rounding."""

from __future__ import annotations

import pytest
import torch

from synthdistill.teachers.onednn_linear import onednn_available, onednn_linear, packed_weight, use_onednn_linears

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")


@pytest.mark.parametrize(("inputs", "outputs"), [(576, 1536), (1536, 576), (576, 49152)])
def test_a_row_is_the_same_to_the_last_bit_whatever_rows_share_its_product(inputs, outputs):
    generator = torch.Generator().manual_seed(inputs + outputs)
    weight = torch.randn(outputs, inputs, generator=generator) * 0.05
    bias = torch.randn(outputs, generator=generator)
    rows = torch.randn(128, inputs, generator=generator)
    together = onednn_linear(rows, weight, bias)
    for count in (1, 2, 7, 37, 100):
        assert torch.equal(onednn_linear(rows[:count].clone(), weight, bias), together[:count]), count
    neighbours = torch.randn(128, inputs, generator=generator)
    neighbours[5] = rows[5]
    assert torch.equal(onednn_linear(neighbours, weight, bias)[5], together[5])
    # one row however it is shaped: a vector, one token of one sequence, a batch of one
    assert torch.equal(onednn_linear(rows[5], weight, bias), together[5])
    assert torch.equal(onednn_linear(rows[5].view(1, 1, -1), weight, bias), together[5].view(1, 1, -1))
    # sequences [batch, length, features] are rows too
    assert torch.equal(onednn_linear(rows.view(4, 32, -1), weight, bias), together.view(4, 32, -1))
    packed = packed_weight(weight)  # laid out once for the kernel: the same numbers
    assert torch.equal(onednn_linear(rows, packed, bias), together)
    assert torch.equal(onednn_linear(rows[:3].clone(), packed, bias), together[:3])
    exact = rows.double() @ weight.double().T + bias.double()
    assert (together.double() - exact).abs().max().item() < 1e-4
    assert torch.allclose(together, torch.nn.functional.linear(rows, weight, bias), rtol=1e-5, atol=1e-5)


def test_the_teachers_linears_go_through_onednn_only_without_gradients(tiny_student):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_student, dtype=torch.float32).eval()
    plain = AutoModelForCausalLM.from_pretrained(tiny_student, dtype=torch.float32).eval()
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    assert use_onednn_linears(model) == len(linears) == 4 * 7 + 1  # q k v o gate up down per layer, lm_head
    ids = torch.tensor([[1, 17, 400, 9, 33], [1, 5, 6, 7, 8]])
    with torch.no_grad():
        assert _onednn_calls(lambda: model(input_ids=ids)) == len(linears)
        fast, reference = model(input_ids=ids).logits, plain(input_ids=ids).logits
    assert torch.allclose(fast, reference, rtol=1e-4, atol=1e-4)  # another kernel, the same product
    with torch.no_grad():  # one sequence alone: the linears' rows do not move; attention's may in the last bits
        assert torch.allclose(model(input_ids=ids[:1]).logits[0], fast[0], rtol=1e-6, atol=1e-6)

    # with gradients (a model that trains) the layers are PyTorch's own: autograd sees them
    assert _onednn_calls(lambda: model(input_ids=ids)) == 0
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert linears[0].weight.grad is not None and linears[0].weight.grad.abs().sum() > 0
    assert torch.equal(loss, plain(input_ids=ids, labels=ids).loss)


def _onednn_calls(run) -> int:
    """How many times `run()` calls oneDNN's linear kernel."""
    from torch.profiler import profile

    with profile() as trace:
        run()
    return sum(event.name == "mkldnn::_linear_pointwise" for event in trace.events())


def test_a_model_on_onednn_is_freed_as_soon_as_it_is_dropped(tiny_student):
    """No reference cycle: the model's memory goes when the teacher lets it go, not at the next full gc pass."""
    import gc
    import weakref

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_student, dtype=torch.float32).eval()
    assert use_onednn_linears(model) > 0
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3]]))
    gone = [weakref.ref(model), *(weakref.ref(m) for m in model.modules() if type(m) is torch.nn.Linear)]
    gc.disable()
    try:
        del model
        assert [ref() for ref in gone] == [None] * len(gone)  # the layers (and their weights) too
    finally:
        gc.enable()
