"""Gather and log-sum-exp over a vocabulary, a chunk of rows at a time: the memory side of KD.

The KD loss needs, per scored position, the student's logits at a few ids (the teacher's top-k
and the label) and `logsumexp(logits / t)` over the whole vocabulary. Both kernels keep only
those; their backward passes rebuild one chunk's logits (or softmax) at a time.

- `gather_logsumexp` starts from logits the model already built ([N, V] in memory once).
- `linear_gather_logsumexp` starts from hidden states and the LM head and never holds more than
  one chunk of logits, like TRL's fused LM head does for cross-entropy.
"""

from __future__ import annotations

import torch

# Rows per chunk are chosen so that one chunk of fp32 logits stays near this many elements
# (128 MiB): 682 rows for SmolLM2's 49,152-token vocabulary, 220 for Qwen's 151,936.
_CHUNK_ELEMENTS = 1 << 25


def _chunk_forward(logits: torch.Tensor, ids: torch.Tensor, temps: tuple[float, ...], gathered, lse) -> None:
    """Fill one chunk's rows of `gathered` (logits at ids) and `lse` (logsumexp(logits / t) per t)."""
    gathered.copy_(logits.gather(1, ids))
    for j, temp in enumerate(temps):
        lse[:, j] = torch.logsumexp(logits / temp if temp != 1.0 else logits, dim=-1)


def _chunk_grad(logits, ids, temps: tuple[float, ...], lse, grad_gathered, grad_lse) -> torch.Tensor:
    """d(loss)/d(logits) for one chunk, from the gradients of the gathered logits and the log-sum-exps."""
    grad = torch.zeros_like(logits)
    for j, temp in enumerate(temps):
        # d logsumexp(z / t) / dz = softmax(z / t) / t
        grad += torch.exp(logits / temp - lse[:, j : j + 1]) * (grad_lse[:, j : j + 1] / temp)
    return grad.scatter_add_(1, ids, grad_gathered)


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
            _chunk_forward(logits[start:stop].to(dtype), ids[start:stop], temps, gathered[start:stop], lse[start:stop])
        ctx.save_for_backward(logits, ids, lse)
        ctx.temps, ctx.chunk_size = temps, chunk_size
        return gathered, lse

    @staticmethod
    def backward(ctx, grad_gathered: torch.Tensor, grad_lse: torch.Tensor):
        logits, ids, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ctx.chunk_size):
            rows = slice(start, min(logits.shape[0], start + ctx.chunk_size))
            chunk_grad = _chunk_grad(
                logits[rows].to(lse.dtype), ids[rows], ctx.temps, lse[rows], grad_gathered[rows], grad_lse[rows]
            )
            grad[rows] = chunk_grad.to(logits.dtype)
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


def _rows_per_chunk(vocab: int) -> int:
    return max(16, _CHUNK_ELEMENTS // max(vocab, 1))


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The matmul dtype: autocast's (bf16 training on a GPU) when it is on, else the weight's."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return weight.dtype


class _LinearGatherLogSumExp(torch.autograd.Function):
    """`hidden` [N, H] @ `weight`.T (+ `bias`) → (logits at `ids` [N, M], logsumexp(logits / t) [N, len(temps)])."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, ids, temps: tuple[float, ...], chunk_size: int):
        compute = _compute_dtype(hidden, weight)
        rows = hidden.shape[0]
        exact = torch.promote_types(compute, torch.float32)
        gathered = hidden.new_empty((rows, ids.shape[1]), dtype=exact)
        lse = hidden.new_empty((rows, len(temps)), dtype=exact)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(compute)
            b = bias.to(compute) if bias is not None else None
            for start in range(0, rows, chunk_size):
                stop = min(rows, start + chunk_size)
                logits = _project(hidden[start:stop].to(compute), w, b)
                _chunk_forward(logits, ids[start:stop], temps, gathered[start:stop], lse[start:stop])
        ctx.save_for_backward(hidden, weight, bias, ids, lse)
        ctx.temps, ctx.chunk_size, ctx.compute = temps, chunk_size, compute
        return gathered, lse

    @staticmethod
    def backward(ctx, grad_gathered, grad_lse):
        hidden, weight, bias, ids, lse = ctx.saved_tensors
        compute = ctx.compute
        grad_hidden = torch.empty_like(hidden)
        # fp32 accumulators: summing many chunks' bf16 products would lose the small ones.
        # A frozen head (LoRA) gets none: its [V, H] gradient would be computed only to be dropped.
        exact = lse.dtype
        wants_weight = ctx.needs_input_grad[1]
        wants_bias = bias is not None and ctx.needs_input_grad[2]
        grad_weight = torch.zeros(weight.shape, dtype=exact, device=weight.device) if wants_weight else None
        grad_bias = torch.zeros(weight.shape[0], dtype=exact, device=weight.device) if wants_bias else None
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(compute)
            b = bias.to(compute) if bias is not None else None
            for start in range(0, hidden.shape[0], ctx.chunk_size):
                rows = slice(start, min(hidden.shape[0], start + ctx.chunk_size))
                chunk = hidden[rows].to(compute)
                grad_logits = _chunk_grad(
                    _project(chunk, w, b), ids[rows], ctx.temps, lse[rows], grad_gathered[rows], grad_lse[rows]
                )
                grad_low = grad_logits.to(compute)
                grad_hidden[rows] = (grad_low @ w).to(hidden.dtype)
                if grad_weight is not None and compute == exact:
                    grad_weight.addmm_(grad_low.t(), chunk)
                elif grad_weight is not None:
                    grad_weight += (grad_low.t() @ chunk).to(exact)
                if grad_bias is not None:
                    grad_bias += grad_logits.sum(0)
        return (
            grad_hidden,
            grad_weight.to(weight.dtype) if grad_weight is not None else None,
            grad_bias.to(bias.dtype) if grad_bias is not None else None,
            None,
            None,
            None,
        )


def _project(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """One chunk's logits, in at least fp32."""
    logits = hidden @ weight.t()
    if bias is not None:
        logits = logits + bias
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def linear_gather_logsumexp(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    ids: torch.Tensor,
    temps: tuple[float, ...] = (1.0,),
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`gather_logsumexp` of `hidden @ weight.T + bias` ([N, H] rows, [V, H] head), never holding the [N, V] logits."""
    rows = chunk_size or _rows_per_chunk(weight.shape[0])
    return _LinearGatherLogSumExp.apply(hidden, weight, bias, ids.long(), tuple(float(t) for t in temps), int(rows))
