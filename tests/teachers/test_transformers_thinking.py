"""The in-process teacher and a thinking model: inline <think> split like a server's parser, template kwargs passed."""

from __future__ import annotations

import asyncio
import shutil

from synthdistill.config import TeacherConfig
from synthdistill.records import Message, ReasoningKnobs, Sampling, TeacherRequest, request_key_for
from synthdistill.teachers.transformers_local import TransformersTeacher, split_answer
from synthdistill.thinking import locate_spans

# the generation prompt of a Qwen3-like hybrid: thinking off pre-fills an empty thought
HYBRID_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def test_generated_inline_thought_is_split_and_found_in_the_per_token_strings(tokenizer):
    ids = tokenizer("<think>\nhmm, two and two\n</think>\n\nIt is 4.", add_special_tokens=False)["input_ids"]
    ids = [*ids, tokenizer.eos_token_id]
    assert split_answer(tokenizer, ids, [tokenizer.eos_token_id], "stop") == ("hmm, two and two", "It is 4.")
    tokens = [tokenizer.decode([t]) for t in ids]
    spans = locate_spans(tokens, "hmm, two and two", "It is 4.")
    assert "".join(tokens[slice(*spans.reasoning)]).strip() == "hmm, two and two"
    assert "".join(tokens[slice(*spans.answer)]).strip() == "It is 4."
    cut = ids[:5]
    assert split_answer(tokenizer, cut, [tokenizer.eos_token_id], "length")[1] == ""  # cut off mid-thought


def test_chat_template_kwargs_reach_the_in_process_template(tiny_student, tmp_path):
    from transformers import AutoTokenizer

    folder = tmp_path / "hybrid"
    shutil.copytree(tiny_student, folder)
    hybrid = AutoTokenizer.from_pretrained(folder)
    hybrid.chat_template = HYBRID_TEMPLATE
    hybrid.save_pretrained(folder)
    messages = [Message(role="user", content="2+2?")]

    def ask(kwargs, reasoning=None):
        sampling = Sampling(
            temperature=0.0, max_tokens=2, top_logprobs=0, chat_template_kwargs=kwargs, reasoning=reasoning
        )
        request = TeacherRequest(
            request_key=request_key_for("m", messages, sampling, 0), messages=messages, sampling=sampling
        )
        teacher = TransformersTeacher(TeacherConfig(backend="transformers", model=str(folder)))

        async def go():
            try:
                return await teacher.complete(request), teacher.knob_warnings.messages
            finally:
                await teacher.aclose()

        return asyncio.run(go())

    (on, _), (off, warnings) = ask(None), ask({"enable_thinking": False}, ReasoningKnobs(effort="low"))
    assert warnings == ["harvest.reasoning.effort ignored: an in-process model has no such setting"]
    empty_thought = len(hybrid("<think>\n\n</think>\n\n", add_special_tokens=False)["input_ids"])
    assert off.usage.prompt_tokens == on.usage.prompt_tokens + empty_thought
