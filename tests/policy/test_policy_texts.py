"""Every quoted clause of a shipped policy is word for word in a stored copy of its document."""

from __future__ import annotations

import hashlib
import re

import pytest

from synthdistill.policy import load_policies
from synthdistill.policy.format import document_text_path

QUOTE_MARKS = str.maketrans({c: "'" for c in '"“”‘’«»`'})
SPAN = re.compile(r"[\"“”]([^\"“”]+)[\"“”]")


def fold(text: str) -> str:
    """Whitespace folded, every quote mark the same: how a quote is compared with its document."""
    return " ".join(text.translate(QUOTE_MARKS).split())


def quoted_spans(clause: str) -> list[str]:
    """The spans in double quotes, each cut at an ellipsis (the parts must appear in order)."""
    return [m.group(1) for m in SPAN.finditer(clause)]


def test_fold_and_spans():
    assert quoted_spans('§1: "a  b" and “c…d”') == ["a  b", "c…d"]
    assert fold("it’s  “x”\n y") == "it's 'x' y"


SHIPPED = load_policies(None)


@pytest.mark.parametrize("loaded", SHIPPED, ids=lambda p: p.id)
def test_a_quote_is_verbatim_in_the_stored_text_or_the_clause_is_a_labelled_summary(loaded):
    policy = loaded.policy
    spans = quoted_spans(policy.clause)
    if policy.clause_kind == "summary":
        return
    assert spans, f"{policy.id}: a clause of kind 'quote' must quote the document (or set clause_kind: summary)"
    stored = document_text_path(loaded)
    assert stored is not None, f"{policy.id}: quoted clause without a stored text (document.text)"
    text = fold(stored.read_text(encoding="utf-8"))
    for span in spans:
        position = 0
        for part in filter(None, (fold(p).strip(" .,;") for p in re.split(r"…|\.\.\.", span))):
            found = text.find(part, position)
            assert found >= 0, f"{policy.id}: not in {stored.name}: {part!r}"
            position = found + len(part)


@pytest.mark.parametrize("loaded", [p for p in SHIPPED if p.policy.document.text], ids=lambda p: p.id)
def test_a_stored_text_is_hashed_in_the_policy(loaded):
    stored = document_text_path(loaded)
    assert loaded.policy.document.sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
