"""A float32 teacher's linear layers on oneDNN when it runs on a CPU.

PyTorch computes a float32 `nn.Linear` on a CPU with MKL's sgemm. On the AMD EPYC (AVX-512) the
benchmarks ran on, oneDNN's kernel for the same product was 2.2–2.7× as fast at the decoding loop's
shapes (benchmarks/results/embedded_teacher-2026-12-02.md, session 10; not measured on an Intel CPU,
where MKL may do better), within float32's rounding of the exact product. It also leaves a row's result independent of the rows beside it
for any number of rows from 2 up, where MKL's changes in the last bits below 16 rows; a single
row is therefore computed as two (tests/teachers/test_onednn_linear.py), so the rows a decoding
step holds never move a row's logits.
"""

from __future__ import annotations

import functools
import weakref

# The batch oneDNN is told to expect when it lays a weight out; a row's result does not depend on it (tested).
PACKED_FOR_ROWS = 64


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's fused linear (every x86 and arm64 wheel does)."""
    import torch

    # private operators (PyTorch's compiler uses them): a build without either keeps PyTorch's own linear
    return torch.backends.mkldnn.is_available() and all(
        hasattr(torch.ops.mkldnn, name) for name in ("_linear_pointwise", "_reorder_linear_weight")
    )


def packed_weight(weight):
    """The weight [out, in] laid out once as oneDNN's kernel reads it (else it is laid out again on every call)."""
    import torch

    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACKED_FOR_ROWS)


def onednn_linear(x, weight, bias=None):
    """`F.linear(x, weight, bias)` through oneDNN: float32 on a CPU, no autograd; `weight` plain or packed."""
    import torch

    if x.numel() == x.shape[-1]:  # one row: oneDNN's single-row kernel rounds otherwise than its many-row one
        return torch.ops.mkldnn._linear_pointwise(x.expand(2, *x.shape).contiguous(), weight, bias, "none", [], "")[0]
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")


def _forward(module_ref, packed, x):
    import torch

    module = module_ref()
    if torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu":
        return torch.nn.functional.linear(x, module.weight, module.bias)
    return onednn_linear(x, packed, module.bias)


def use_onednn_linears(model) -> int:
    """Route the float32 CPU model's `nn.Linear` layers through oneDNN while no gradient is taken; how many.

    Each layer keeps a packed copy of its weight, taken now, beside its own: the linear weights take
    twice their memory, and a weight changed afterwards is not seen without gradients.
    """
    import torch

    if not onednn_available():
        return 0
    swapped = 0
    for module in model.modules():
        if (
            type(module) is torch.nn.Linear
            and module.weight.dtype == torch.float32
            and module.weight.device.type == "cpu"
        ):
            # a weak reference: the module holds its forward, which must not hold the module (a cycle would
            # keep the model's memory until the garbage collector's next full pass, into the training after)
            module.forward = functools.partial(_forward, weakref.ref(module), packed_weight(module.weight))
            swapped += 1
    return swapped
