"""The in-process teacher's decoding loop: a row that has ended leaves the batch.

`model.generate` keeps every row in the batch until the longest answer ends; on the quickstart
(answers average 54 of max_tokens 96) ~43 % of its row-steps came after their row had ended.
Here a finished row is dropped from the KV cache (`DynamicCache.batch_select_indices`), so a step
costs only the rows still answering, and the prompts' shared prefix is prefilled once (`prefill`).
In float32 on a CPU a row's logits move only in the 6th digit with the rows around it, and its
randomness comes from its own generator, so the answers are those `model.generate` gives token for
token (tests/teachers/test_decode_loop.py; 102 of 102 on the quickstart).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

# Prompts prefilled together: sorted by length, so each group pads little (a call costs ~60 ms however small).
PREFILL_GROUP = 16


@dataclass
class DecodedRow:
    """One prompt's answer: its token ids and, when top-k was asked, the logprobs of the raw logits."""

    token_ids: list[int] = field(default_factory=list)
    chosen_logprobs: list[float] = field(default_factory=list)  # the generated token's own, per position
    top_ids: list[list[int]] = field(default_factory=list)
    top_logprobs: list[list[float]] = field(default_factory=list)
    finish_reason: str = "length"


def row_seed(seed: int | None, request_key: str) -> int:
    """A row's sampling seed: the harvest seed mixed with the request key (which names prompt and sample)."""
    return int(hashlib.sha256(f"{seed or 0}:{request_key}".encode()).hexdigest()[:15], 16)


class RowSampler:
    """Chooses each row's next token at `sampling`'s temperature and top-p, from that row's own generator.

    Gumbel-max: argmax(log p + g) with g ~ Gumbel(0, 1) is a draw from p. A row's noise comes from
    its own generator (seeded by `row_seed`), so its answer is the same whatever else is in the batch.
    Temperature 0 is plain greedy decoding.
    """

    def __init__(self, sampling, request_keys: list[str]):
        import torch
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper

        self.greedy = sampling.temperature <= 0
        self.warpers = [] if self.greedy else [TemperatureLogitsWarper(sampling.temperature)]
        if not self.greedy and sampling.top_p is not None and sampling.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(sampling.top_p))
        self.generators = (
            [] if self.greedy else [torch.Generator().manual_seed(row_seed(sampling.seed, k)) for k in request_keys]
        )

    def __call__(self, logits, rows: list[int]):
        """The next token of each of `rows` (indices into request_keys), given their float32 logits [rows, vocab]."""
        import torch

        if self.greedy:
            return logits.argmax(dim=-1)
        scores = logits
        for warper in self.warpers:
            scores = warper(None, scores)  # neither warper reads the ids so far
        uniform = torch.stack(
            [torch.rand(scores.shape[-1], generator=self.generators[row], dtype=torch.float64) for row in rows]
        )
        return gumbel_argmax(scores, uniform.to(scores.device))


def gumbel(uniform):
    """Gumbel(0, 1) noise from uniforms in [0, 1): -log(-log u)."""
    import torch

    return -torch.log(-torch.log(uniform.clamp(min=1e-300)))


def gumbel_argmax(scores, uniform):
    """Each row's argmax of scores + gumbel(uniform), the noise taken only where an entry could still win.

    The noise grows with u, so an entry whose score falls short of the best-scoring entry's total by
    more than the row's largest noise cannot win; the rest (on average 151 of SmolLM2's 49,152 on the
    quickstart) get the same arithmetic as the whole row would, so the choice is the same; over every
    token the logarithms took 11.5 % of the quickstart's decoding (torch profiler, batch 128).
    """
    import torch

    top = scores.argmax(dim=-1, keepdim=True)
    top_total = scores.gather(1, top) + gumbel(uniform.gather(1, top)).to(scores.dtype)
    most_noise = gumbel(uniform.max(dim=-1, keepdim=True).values).to(scores.dtype)
    # contenders: within the row's largest noise of the top total, less 1e-3 (far above float32's rounding of
    # these sums, ~1e-5 at |score| ~ 100, so a near miss stays in); -inf (cut by top-p) never contends
    row, column = (scores >= top_total - most_noise - 1e-3).nonzero(as_tuple=True)
    totals = scores[row, column] + gumbel(uniform[row, column]).to(scores.dtype)
    # each row's highest total; among equal ones the first column, as argmax chooses
    highest = torch.full_like(top_total[:, 0], float("-inf")).scatter_reduce(0, row, totals, "amax")
    at_highest = torch.where(totals == highest[row], column, scores.shape[-1])
    return torch.full_like(top[:, 0], scores.shape[-1]).scatter_reduce(0, row, at_highest, "amin")


def decode(
    model,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    eos_ids: list[int],
    pad_id: int,
    top_k: int,
    sampler,
    prefill_group: int = PREFILL_GROUP,
    drop_finished: bool = True,
) -> list[DecodedRow]:
    """Generate an answer for each prompt (token ids), recording top-k logprobs of the raw logits when top_k > 0.

    A row ends at its first end-of-turn token (kept as its last position, finish "stop") or after
    max_new_tokens (finish "length"). An ended row leaves the batch where the cache can drop rows
    (`can_drop_rows`); otherwise it stays, fed padding, its outputs unread.
    """
    import torch

    with torch.no_grad():
        cache, mask, position, logits = prefill(model, prompts, pad_id, prefill_group, room=max_new_tokens)
        droppable = drop_finished and can_drop_rows(cache)
        rows: list[int | None] = list(range(len(prompts)))  # the prompt each batch row answers; None: it ended
        decoded = [DecodedRow() for _ in prompts]
        eos = set(eos_ids)
        for step in range(max_new_tokens):
            live = [i for i, prompt in enumerate(rows) if prompt is not None]
            live_logits = logits if len(live) == len(rows) else logits[live]
            chosen = sampler(live_logits, [rows[i] for i in live])
            chosen_ids = chosen.tolist()
            if top_k > 0:
                logprobs = live_logits.log_softmax(dim=-1)
                values, indices = logprobs.topk(top_k, dim=-1)
                own = logprobs.gather(1, chosen[:, None]).squeeze(1).tolist()
                values, indices = values.tolist(), indices.tolist()
            ended = []
            for n, batch_row in enumerate(live):
                answer = decoded[rows[batch_row]]
                token = chosen_ids[n]
                answer.token_ids.append(token)
                if top_k > 0:
                    answer.chosen_logprobs.append(own[n])
                    answer.top_ids.append(indices[n])
                    answer.top_logprobs.append(values[n])
                if token in eos:
                    answer.finish_reason = "stop"
                    ended.append(batch_row)
            if len(ended) == len(live) or step == max_new_tokens - 1:
                break
            next_ids = chosen.new_full((len(rows),), pad_id)
            next_ids[live] = chosen
            for batch_row in ended:
                rows[batch_row] = None
            if ended and droppable:  # rows that ended leave the cache, so later steps skip them
                keep = compacted_order(rows)
                selected = torch.tensor(keep, device=mask.device)
                cache.batch_select_indices(selected)
                mask, position, next_ids = mask[selected], position[selected], next_ids[selected]
                rows = [rows[i] for i in keep]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=-1)
            out = model(
                input_ids=next_ids[:, None],
                attention_mask=mask,
                position_ids=position,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1, :].float()
            position = position + 1
    return decoded


def compacted_order(rows: list[int | None]) -> list[int]:
    """The batch rows that go on (not None), in their new order: the last ones take the ended rows' places.

    So the cache moves only as many rows as ended (`RoomyLayer.batch_select_indices`), where keeping
    the order would copy every row after the first that ended. A row's answer does not depend on its
    place in the batch.
    """
    going_on = sum(prompt is not None for prompt in rows)
    movers = [i for i in range(going_on, len(rows)) if rows[i] is not None]
    return [i if rows[i] is not None else movers.pop() for i in range(going_on)]


def can_drop_rows(cache) -> bool:
    """Whether rows can leave this cache: attention layers only (a recurrent layer's state would be left behind)."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    from synthdistill.teachers.roomy_cache import RoomyLayer

    return all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer, RoomyLayer) for layer in cache.layers)


def prefill(model, prompts: list[list[int]], pad_id: int, group_size: int = PREFILL_GROUP, room: int = 0):
    """Run the prompts through the model: (KV cache, attention mask, next position [rows, 1], last logits).

    Padding is computed like any token, and the quickstart's prompts (39 tokens on average, 66 at
    most) share a 22-token system prompt. So the prefix every prompt shares is run once, and the
    rest in groups of similar length, each padded only to its own longest; the groups' caches are
    then laid out as one batch: [shared prefix | padding | the row's own tokens], with `room`
    positions left for the answers (`RoomyLayer`).
    """
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    from synthdistill.teachers.roomy_cache import RoomyLayer, empty_states

    device = next(model.parameters()).device
    if not all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers):
        return _padded_prefill(model, prompts, pad_id)  # sliding-window or other layers: one padded batch
    shared = min(len(os.path.commonprefix(prompts)), min(len(p) for p in prompts) - 1)
    prefix = []
    if shared > 0:
        prefix_cache = DynamicCache(config=model.config)
        model(input_ids=torch.tensor([prompts[0][:shared]], device=device), cache=prefix_cache, use_cache=True)
        prefix = [(layer.keys, layer.values) for layer in prefix_cache.layers]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    longest = max(len(p) for p in prompts) - shared
    merged = None
    logits = None
    for start in range(0, len(order), group_size):
        group = order[start : start + group_size]
        rest = [prompts[i][shared:] for i in group]
        cache, mask, _, group_logits = _padded_prefill(model, rest, pad_id, prefix=prefix, shared=shared)
        width = mask.shape[1] - shared
        if merged is None:
            merged = [
                (
                    empty_states(layer.keys, len(prompts), shared + longest + room),
                    empty_states(layer.values, len(prompts), shared + longest + room),
                )
                for layer in cache.layers
            ]
            logits = group_logits.new_empty(len(prompts), group_logits.shape[-1])
        rows = torch.tensor(group, device=device)
        for (keys, values), layer in zip(merged, cache.layers):
            if shared > 0:
                keys[:, :, :shared] = layer.keys[:1, :, :shared]
                values[:, :, :shared] = layer.values[:1, :, :shared]
            keys[rows, :, shared + longest - width : shared + longest] = layer.keys[:, :, shared:]
            values[rows, :, shared + longest - width : shared + longest] = layer.values[:, :, shared:]
        logits[rows] = group_logits
    mask = torch.tensor(
        [[1] * shared + [0] * (shared + longest - len(p)) + [1] * (len(p) - shared) for p in prompts], device=device
    )
    position = torch.tensor([[len(p)] for p in prompts], device=device)
    cache = DynamicCache(config=model.config)
    cache.layers = [RoomyLayer(keys, values, shared + longest) for keys, values in merged]
    return cache, mask, position, logits


def _padded_prefill(model, prompts: list[list[int]], pad_id: int, prefix=(), shared: int = 0):
    """Prefill one left-padded batch after an optional cached prefix of `shared` tokens (as `prefill` returns)."""
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[1] * shared + [0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)[:, shared:]  # as generate() numbers padded rows
    rows = len(prompts)
    cache = DynamicCache(
        ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix] or None,
        config=model.config,
    )
    out = model(
        input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1
    )
    position = torch.tensor([[shared + len(p)] for p in prompts], device=device)
    return cache, mask, position, out.logits[:, -1, :].float()
