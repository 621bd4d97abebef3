"""A chat template with `{% generation %}` markers, for students whose base template lacks them.

TRL's `SFTTrainer(assistant_only_loss=True)` asks the tokenizer for an assistant mask
(`apply_chat_template(..., return_assistant_tokens_mask=True)`), which only a template with
`{% generation %}` / `{% endgeneration %}` around the assistant's text can give; without them TRL
refuses a template it has no training copy of (SmolLM2's, among others). The trained student is
saved with a copy of its template that carries the markers, so a user who goes on training it
with plain TRL gets loss on the answers only.

The copy is derived from the base template's own text: in each output tag that prints a message's
content, the `+`-joined terms are split, and for assistant messages the content and what follows
it up to the end-of-turn token (what the model must generate after the generation prompt) are
wrapped in the markers; everything else renders as before. The result is kept only if it renders
every probe conversation exactly as the base template does and its mask covers exactly each
assistant answer and its end-of-turn token; otherwise the base template is kept and train.json
says why.
"""

from __future__ import annotations

import re
from typing import Any

_MARKERS = re.compile(r"\{%-?\s*generation\s*-?%\}")
_OUTPUT = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.DOTALL)
_LOOP = re.compile(r"\{%-?\s*for\s+(\w+)\s+in\s+messages\b")
_PROBES = [
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue is calm."}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there!"},
        {"role": "user", "content": "And a fruit?"},
        {"role": "assistant", "content": "An apple."},
    ],
]


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and _MARKERS.search(template) is not None


def _split_terms(expression: str) -> list[str]:
    """The top-level `+` operands of a Jinja expression (quotes and brackets respected)."""
    terms, depth, quote, start, i = [], 0, None, 0, 0
    while i < len(expression):
        char = expression[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "+" and depth == 0:
            terms.append(expression[start:i])
            start = i + 1
        i += 1
    terms.append(expression[start:])
    return [t.strip() for t in terms]


def _split_literal_after(term: str, token: str) -> tuple[str, str] | None:
    """A string literal holding `token`, cut just after it: ('<|im_end|>', '\\n'), or None."""
    if len(term) < 2 or term[0] not in "'\"" or term[-1] != term[0] or token not in term:
        return None
    if "\\" in token or term[0] in token:
        return None
    cut = term.index(token) + len(token)
    head, tail = term[:cut] + term[0], term[0] + term[cut:]
    return head, (tail if tail != term[0] * 2 else "")


def _wrap(expression: str, var: str, eos: str, left: str = "", right: str = "") -> str | None:
    """Jinja for one output expression that prints `var`'s content: markers around the answer span."""
    content = re.compile(rf"\b{var}\s*(\[\s*['\"]content['\"]\s*\]|\.content\b)")
    terms = _split_terms(expression)
    hits = [i for i, term in enumerate(terms) if content.search(term)]
    if len(hits) != 1:
        return None
    first, before, span, after = hits[0], terms[: hits[0]], [terms[hits[0]]], []
    for index in range(first + 1, len(terms)):
        if after:
            after.append(terms[index])
            continue
        cut = _split_literal_after(terms[index], eos)
        if cut is None:
            span.append(terms[index])
        else:
            span.append(cut[0])
            after = [cut[1]] if cut[1] else [""]
    if not after:
        return None  # the end-of-turn token is printed elsewhere: not a shape this rewrite knows
    after = [t for t in after if t]

    def out(parts: list[str]) -> str:
        return "{{ " + " + ".join(parts) + " }}" if parts else ""

    # the tag's whitespace control (`{{-`, `-}}`) moves to the `if` that now surrounds it
    return (
        f"{{%{left} if {var}['role'] == 'assistant' %}}{out(before)}{{% generation %}}{out(span)}"
        f"{{% endgeneration %}}{out(after)}{{% else %}}{{{{ {expression.strip()} }}}}{{% endif {right}%}}"
    )


def add_generation_markers(template: str, eos: str) -> str | None:
    """`template` with markers around each assistant answer (and its end-of-turn token `eos`), or None."""
    loop = _LOOP.search(template)
    if loop is None or not eos:
        return None
    var = loop.group(1)
    changed = False

    def replace(match: re.Match) -> str:
        nonlocal changed
        left, expression, right = match.groups()
        wrapped = _wrap(expression, var, eos, left, right)
        if wrapped is None:
            return match.group(0)
        changed = True
        return wrapped

    patched = _OUTPUT.sub(replace, template)
    return patched if changed else None


def _assistant_spans_ok(tokenizer, template: str) -> str | None:
    """None if `template` renders like the base one and masks exactly each answer + end-of-turn token."""
    eos_id = tokenizer.eos_token_id
    for messages in _PROBES:
        base = tokenizer.apply_chat_template(messages, tokenize=False)
        patched = tokenizer.apply_chat_template(messages, tokenize=False, chat_template=template)
        if base != patched:
            return "the rewritten template renders differently from the base template"
        encoded = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=template
        )
        ids, mask = list(encoded["input_ids"]), list(encoded["assistant_masks"])
        expected = []
        for message in (m for m in messages if m["role"] == "assistant"):
            expected.append(tokenizer(message["content"], add_special_tokens=False)["input_ids"] + [eos_id])
        got, run = [], []
        for token, flag in zip(ids, mask, strict=True):
            if flag:
                run.append(token)
            elif run:
                got.append(run)
                run = []
        if run:
            got.append(run)
        if got != expected:
            return "the rewritten template's assistant mask is not exactly each answer and its end-of-turn token"
    return None


def training_chat_template(tokenizer) -> tuple[str | None, str]:
    """(template to save, what was done): the base one with markers added, or None to keep it, and why."""
    template: Any = tokenizer.chat_template
    if not isinstance(template, str) or not template:
        return None, "no chat template (a single one) to add generation markers to"
    if has_generation_markers(template):
        return None, "the base chat template already has generation markers"
    patched = add_generation_markers(template, tokenizer.eos_token or "")
    if patched is None:
        return None, "base template kept: no output of the message content this rewrite understands"
    problem = _assistant_spans_ok(tokenizer, patched)
    if problem is not None:
        return None, f"base template kept: {problem}"
    return patched, "generation markers added around each assistant answer and its end-of-turn token"
