"""Scoring with the in-process `transformers` teacher: exact, one forward per sample, full vocabulary.

The prompt is rendered with the teacher's chat template (generation prompt included), the
sample's text is tokenized as training tokenizes an answer (`chat_tokens`), and one forward
gives, at every answer position, the logprob of the answer's token and the top-k of the whole
vocabulary, with exact token ids. Tokens are spelled as the in-process teacher's harvest
records spell them (`tokenizer.decode([id])`).
"""

from __future__ import annotations

import threading

from synthdistill.chat_tokens import prompt_token_ids
from synthdistill.records import TokenLogprobs, Usage
from synthdistill.scoring.records import SampleToScore, ScoreAnswer, ScoreRequest
from synthdistill.teachers.transformers_local import TransformersTeacher


class LocalScorer:
    """Scores samples with the in-process teacher's model (one forward each, one at a time)."""

    backend = "transformers"
    style = "in-process"

    def __init__(self, teacher_config, project_dir=None):
        self.teacher = TransformersTeacher(teacher_config, project_dir=project_dir)
        self.model = teacher_config.model
        self.template_kwargs = teacher_config.chat_template_kwargs or {}
        self._lock = threading.Lock()

    def endpoint_for(self, request) -> None:
        return None

    async def complete(self, request: ScoreRequest) -> ScoreAnswer:
        return await self.teacher.in_model_thread(self.score, request.sample, request.top_k)

    def score(self, sample: SampleToScore, top_k: int) -> ScoreAnswer:
        """The teacher's logprobs of `sample`'s text (blocking)."""
        import torch

        with self._lock:
            model, tokenizer, device = self.teacher._load()
            prompt = prompt_token_ids(tokenizer, [m.model_dump() for m in sample.messages], **self.template_kwargs)
            answer = list(tokenizer(sample.text, add_special_tokens=False)["input_ids"]) if sample.text else []
            if sample.ended:
                answer.append(tokenizer.eos_token_id)
            if not answer:
                return ScoreAnswer(_empty(), self.model, Usage(prompt_tokens=len(prompt)), None)
            ids = torch.tensor([prompt + answer], device=device)
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
            logprobs = logits.log_softmax(dim=-1)
            top_values, top_indices = logprobs.topk(min(top_k, logprobs.shape[-1]), dim=-1)
            chosen = logprobs.gather(1, torch.tensor(answer, device=logprobs.device)[:, None])[:, 0].tolist()
            top_ids = top_indices.tolist()
            result = TokenLogprobs(
                tokens=[tokenizer.decode([t]) for t in answer],
                token_ids=answer,
                token_logprobs=chosen,
                top_tokens=[[tokenizer.decode([t]) for t in row] for row in top_ids],
                top_ids=top_ids,
                top_logprobs=top_values.tolist(),
            )
            return ScoreAnswer(result, self.model, Usage(prompt_tokens=len(prompt) + len(answer)), None)

    async def aclose(self) -> None:
        """Nothing to release: the model stays loaded for the next round (`local_scorer` keeps it)."""


_LOADED: dict[tuple, LocalScorer] = {}


def local_scorer(teacher_config, project_dir=None) -> LocalScorer:
    """The scorer for an in-process teacher, loaded once per process: every round scores with the same model."""
    key = (teacher_config.model, teacher_config.device, str(project_dir), repr(teacher_config.chat_template_kwargs))
    if key not in _LOADED:
        _LOADED[key] = LocalScorer(teacher_config, project_dir)
    return _LOADED[key]


def _empty() -> TokenLogprobs:
    return TokenLogprobs(tokens=[], token_ids=[], token_logprobs=[], top_tokens=[], top_ids=[], top_logprobs=[])
