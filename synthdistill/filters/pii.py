"""`pii`: drop or redact answers holding emails, phone numbers, card numbers or API keys.

Answers are checked (prompts are the user's own pack content). Redaction replaces
each find with a placeholder such as `[EMAIL]` and removes the record's token
logprobs: they spell out the original text, PII included, so the redacted answer
goes on to the SFT dataset only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from synthdistill.filters.outcome import FilterOutcome
from synthdistill.records import HarvestRecord

Kind = Literal["api_key", "card", "email", "phone"]
ORDER: tuple[str, ...] = ("api_key", "card", "email", "phone")  # cards before phones: a card looks like one
PLACEHOLDER = {"api_key": "[API_KEY]", "card": "[CARD]", "email": "[EMAIL]", "phone": "[PHONE]"}

_API_KEY = re.compile(
    r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_-]{35}"  # Google
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|glpat-[A-Za-z0-9_-]{20,})"  # GitLab
    r"|-----BEGIN (?:RSA |EC |DSA |OPENSSH )?PRIVATE KEY-----"
)
# `api_key = "…"`: the value alone is a secret when it looks random (letters and digits).
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|password)\b[\"']?\s*[:=]\s*[\"']?"
    r"(?P<value>[A-Za-z0-9_\-/+=.]{16,})"
)
_CARD = re.compile(r"(?<!\d)(?<!\d\.)\d(?:[ -]?\d){12,18}(?!\.?\d)")
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})\b")
# Separators are required, and a neighbouring digit group means a longer number (a card, an IP).
_PHONE = re.compile(
    r"(?<![\w.+-])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?|\d{1,3} )?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?!\w|[ .-]\d)"
)
# RFC 2606/6761 names are placeholders, not anyone's address.
_PLACEHOLDER_DOMAINS = re.compile(r"(?i)(?:^|\.)(?:example\.(?:com|org|net)|example|test|invalid|localhost)$")


class PiiParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["drop", "redact"] = Field(
        "drop", description="drop: the record goes; redact: the PII is replaced by a [KIND] placeholder and it stays"
    )
    kinds: list[Kind] = Field(default_factory=lambda: list(ORDER), min_length=1, description="What counts as PII")


def luhn_valid(digits: str) -> bool:
    """The card-number checksum: real card numbers pass it, most random digit runs do not."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _is_card(match: re.Match) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 13 <= len(digits) <= 19 and luhn_valid(digits) and len(set(digits)) > 1


def _is_phone(match: re.Match) -> bool:
    return 10 <= len(re.sub(r"\D", "", match.group())) <= 15


def _is_email(match: re.Match) -> bool:
    return not _PLACEHOLDER_DOMAINS.search(match.group("domain"))


def _is_secret(match: re.Match) -> bool:
    value = match.group("value")
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _has_secret_word(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in ("key", "secret", "token", "password"))


# kind → (cheap test that the pattern can match, pattern, accept a match, group to replace or None for all)
_FINDERS: dict[str, list[tuple[Callable[[str], bool], re.Pattern, Callable[[re.Match], bool], str | None]]] = {
    "api_key": [
        (lambda text: True, _API_KEY, lambda m: True, None),
        (_has_secret_word, _ASSIGNED_SECRET, _is_secret, "value"),
    ],
    "card": [(lambda text: True, _CARD, _is_card, None)],
    "email": [(lambda text: "@" in text, _EMAIL, _is_email, None)],
    "phone": [(lambda text: True, _PHONE, _is_phone, None)],
}


def find_pii(text: str, kinds: list[str]) -> tuple[str, dict[str, int]]:
    """(text with each find replaced by its placeholder, finds per kind)."""
    counts: dict[str, int] = {}
    for kind in ORDER:
        if kind not in kinds:
            continue
        for may_match, pattern, accept, group in _FINDERS[kind]:
            if not may_match(text):
                continue

            def replace(match: re.Match, kind=kind, accept=accept, group=group) -> str:
                if not accept(match):
                    return match.group()
                counts[kind] = counts.get(kind, 0) + 1
                if group is None:
                    return PLACEHOLDER[kind]
                start, end = match.span(group)
                whole = match.group()
                offset = match.start()
                return whole[: start - offset] + PLACEHOLDER[kind] + whole[end - offset :]

            text = pattern.sub(replace, text)
    return text, counts


# The logprob fields of a redacted answer describe the original text: they go, it stays SFT-only.
_NO_LOGPROBS = dict.fromkeys(
    ("tokens", "token_ids", "token_logprobs", "top_tokens", "top_ids", "top_logprobs", "reasoning_span", "answer_span")
)


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} x{n}" if n > 1 else kind for kind, n in counts.items())


def pii(records: list[HarvestRecord], params: PiiParams):
    """Drop ('pii: email, phone') or redact answers that hold PII; the rest pass unchanged."""
    verdicts: list[str | None] = []
    out: list[HarvestRecord] = []
    notes: list[str | None] = []
    for record in records:
        redacted, counts = find_pii(record.text, params.kinds)
        trace = record.reasoning
        if trace is not None:  # a thinking teacher's trace goes into the datasets too
            trace, in_trace = find_pii(trace, params.kinds)
            counts = {
                kind: counts.get(kind, 0) + in_trace.get(kind, 0)
                for kind in ORDER
                if kind in counts or kind in in_trace
            }
        verdict = note = None
        if counts and params.action == "drop":
            verdict = f"pii: {_describe(counts)}"
        elif counts:
            record = record.model_copy(update={"text": redacted, "reasoning": trace, **_NO_LOGPROBS})
            note = f"redacted: {_describe(counts)}"
        verdicts.append(verdict)
        out.append(record)
        notes.append(note)
    return FilterOutcome(verdicts, out, notes)
