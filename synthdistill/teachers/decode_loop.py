"""The in-process teacher's decoding loop: a row that has ended leaves the batch.

`model.generate` keeps every row in the batch until the longest answer ends; on the quickstart
(answers average 54 of max_tokens 96) ~43 % of its row-steps came after their row had ended.
Here a finished row is dropped from the KV cache (`DynamicCache.batch_select_indices`), so a step
costs only the rows still answering. A row's numbers do not depend on which rows share its batch
(float32 on a CPU), and its randomness comes from its own generator, so the answers are those
`model.generate` gives token for token (tests/teachers/test_decode_loop.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


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
        gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-300)))
        # -inf (cut by top-p) stays -inf
        return (scores + gumbel.to(device=scores.device, dtype=scores.dtype)).argmax(dim=-1)


def decode(
    model, prompts: list[list[int]], *, max_new_tokens: int, eos_ids: list[int], pad_id: int, top_k: int, sampler
) -> list[DecodedRow]:
    """Generate an answer for each prompt (token ids), recording top-k logprobs of the raw logits when top_k > 0.

    A row ends at its first end-of-turn token (kept as its last position, finish "stop") or after
    max_new_tokens (finish "length").
    """
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as generate() numbers left-padded rows
    cache = DynamicCache(config=model.config)
    rows = list(range(len(prompts)))  # the prompt each batch row answers
    decoded = [DecodedRow() for _ in prompts]
    eos = set(eos_ids)
    with torch.no_grad():
        for step in range(max_new_tokens):
            out = model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1, :].float()
            chosen = sampler(logits, rows)
            chosen_ids = chosen.tolist()
            if top_k > 0:
                logprobs = logits.log_softmax(dim=-1)
                values, indices = logprobs.topk(top_k, dim=-1)
                own = logprobs.gather(1, chosen[:, None]).squeeze(1).tolist()
                values, indices = values.tolist(), indices.tolist()
            keep = []
            for batch_row, prompt in enumerate(rows):
                answer = decoded[prompt]
                token = chosen_ids[batch_row]
                answer.token_ids.append(token)
                if top_k > 0:
                    answer.chosen_logprobs.append(own[batch_row])
                    answer.top_ids.append(indices[batch_row])
                    answer.top_logprobs.append(values[batch_row])
                if token in eos:
                    answer.finish_reason = "stop"
                else:
                    keep.append(batch_row)
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(rows):  # rows that ended leave the cache, so later steps skip them
                selected = torch.tensor(keep, device=device)
                cache.batch_select_indices(selected)
                mask, positions, chosen = mask[selected], positions[selected], chosen[selected]
                rows = [rows[i] for i in keep]
            input_ids = chosen[:, None]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=-1)
            positions = positions[:, -1:] + 1
    return decoded
