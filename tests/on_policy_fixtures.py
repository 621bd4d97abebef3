"""A stand-in teacher scorer for on-policy tests: a real tiny model's forward over each sample.

It answers like `synthdistill.student_samples.score_samples` (scores in the samples' order, each
with the teacher's tokens of exactly the text and their top-k) and, like the scoring ledger,
answers a sample it scored before without running the model again; `forwards` counts the
samples it actually scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from synthdistill.chat_tokens import prompt_token_ids
from synthdistill.records import TokenLogprobs
from synthdistill.tool_turns import template_messages


@dataclass
class LocalScore:
    logprobs: TokenLogprobs
    endpoint: str
    prompt_tokens_scored: int


class LocalScorer:
    def __init__(self, folder: Path, top_k: int = 5):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.top_k = top_k
        self.ledger: dict[tuple, LocalScore] = {}
        self.forwards = 0

    def __call__(self, config, samples) -> list[LocalScore]:
        out = []
        for sample in samples:
            key = (sample.checkpoint, sample.prompt_id, sample.sample_index, sample.text)
            if key not in self.ledger:
                self.ledger[key] = self.score(sample.messages, sample.text)
                self.forwards += 1
            out.append(self.ledger[key])
        return out

    def score(self, messages, text: str) -> LocalScore:
        import torch

        prompt = prompt_token_ids(self.tokenizer, template_messages(messages))
        answer = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            logits = self.model(torch.tensor([prompt + answer])).logits[0].float()
        logp = torch.log_softmax(logits[len(prompt) - 1 : len(prompt) + len(answer) - 1], dim=-1)
        top = logp.topk(self.top_k, dim=-1)
        decode = self.tokenizer.decode
        logprobs = TokenLogprobs(
            tokens=[decode([t]) for t in answer],
            token_ids=answer,
            token_logprobs=[float(logp[i, t]) for i, t in enumerate(answer)],
            top_tokens=[[decode([t]) for t in row] for row in top.indices.tolist()],
            top_ids=top.indices.tolist(),
            top_logprobs=top.values.tolist(),
        )
        return LocalScore(logprobs, "in-process test teacher", len(prompt))


def write_sharp_teacher(folder: Path, tokenizer_dir: Path, sharpness: float = 300.0) -> Path:
    """A tiny random Llama whose LM head is scaled up: peaked next-token distributions a student can learn."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests.training_fixtures import write_tiny_llama

    write_tiny_llama(folder, tokenizer_dir, tie=False, seed=1)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(sharpness)
    model.save_pretrained(folder)
    return folder
