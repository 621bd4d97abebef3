"""`pii`: emails, phone numbers, card numbers and API keys are dropped or redacted; look-alikes are kept."""

from __future__ import annotations

from synthdistill.config import FilterSpec
from synthdistill.filters import FilterOutcome, run_filters
from synthdistill.filters.pii import PiiParams, find_pii, luhn_valid, pii
from tests.records_fixtures import make_record

ALL = ["api_key", "card", "email", "phone"]


def test_pii_drop_names_what_it_found():
    records = [
        make_record("a", "Write to jane.doe@gmail.com for details."),
        make_record("b", "Call +1 415-555-0100 or (020) 7946 0958."),
        make_record("c", "Pay with 4111 1111 1111 1111 today."),
        make_record("d", "export OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx12"),
        make_record("e", 'config = {"api_key": "a1b2c3d4e5f6g7h8i9j0"}'),
        make_record("f", "-----BEGIN RSA PRIVATE KEY-----\nMIIE..."),
    ]
    outcome = pii(records, PiiParams(action="drop"))
    assert outcome.verdicts == [
        "pii: email",
        "pii: phone x2",
        "pii: card",
        "pii: api_key",
        "pii: api_key",
        "pii: api_key",
    ]
    assert outcome.records == records  # dropping changes nothing


def test_pii_keeps_look_alikes():
    records = [
        make_record("a", "Send it to user@example.com or admin@mail.test (placeholders)."),
        make_record("b", "The server is at 192.168.100.200; the release was on 2024-01-15."),
        make_record("c", "The total is 1,234,567 and the product is 123456789012."),
        make_record("d", "Set api_key = 'YOUR_API_KEY_HERE' before running."),
        make_record("e", "Digits 1234 5678 9012 3456 fail the card checksum."),
        make_record("f", "Dial 555-0100 for the front desk."),  # 7 digits: too short for a full number
    ]
    assert pii(records, PiiParams()).verdicts == [None] * 6


def test_pii_redact_replaces_finds_keeps_the_record_and_clears_its_logprobs():
    logprobs = {
        "tokens": ["mail"],
        "token_ids": [1],
        "token_logprobs": [-0.1],
        "top_tokens": [["mail"]],
        "top_ids": [[1]],
        "top_logprobs": [[-0.1]],
    }
    records = [
        make_record("a", "Mail jane@corp.io or call 415 555 0100.", logprobs=logprobs),
        make_record("b", "Nothing personal here.", logprobs=logprobs),
    ]
    outcome = pii(records, PiiParams(action="redact"))
    assert isinstance(outcome, FilterOutcome)
    assert outcome.verdicts == [None, None]
    assert outcome.notes == ["redacted: email, phone", None]
    redacted, untouched = outcome.records
    assert redacted.text == "Mail [EMAIL] or call [PHONE]."
    assert (redacted.tokens, redacted.token_ids, redacted.token_logprobs, redacted.top_logprobs) == (
        None,
        None,
        None,
        None,
    )
    assert redacted.request_key == records[0].request_key
    assert untouched is records[1]


def test_pii_redact_through_the_pipeline_counts_modified_records():
    records = [make_record("a", "Card: 5500-0000-0000-0004."), make_record("b", "No secrets.")]
    result = run_filters(records, [FilterSpec(name="pii", params={"action": "redact"})])
    assert [r.text for r in result.kept] == ["Card: [CARD].", "No secrets."]
    assert result.dropped == []
    step = result.steps[0]
    assert (step.input, step.kept, step.dropped, step.modified, step.modified_reasons) == (2, 2, 0, 1, {"redacted": 1})
    assert [(m.filter, m.note, m.request_key) for m in result.modified] == [
        ("pii", "redacted: card", records[0].request_key)
    ]


def test_pii_kinds_limit_what_is_looked_for():
    text = "jane@corp.io, 415-555-0100"
    assert find_pii(text, ["email"]) == ("[EMAIL], 415-555-0100", {"email": 1})
    assert find_pii(text, ALL) == ("[EMAIL], [PHONE]", {"email": 1, "phone": 1})
    assert pii([make_record("a", text)], PiiParams(kinds=["phone"])).verdicts == ["pii: phone"]


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_a_thinking_teachers_trace_is_checked_and_redacted_too():
    record = make_record("q", "It is 4.").model_copy(
        update={"reasoning": "Mail jane.doe@gmail.com first.", "reasoning_span": [0, 3], "answer_span": [3, 5]}
    )
    dropped = pii([record], PiiParams(action="drop"))
    assert dropped.verdicts == ["pii: email"]
    redacted = pii([record], PiiParams(action="redact"))
    kept = redacted.records[0]
    assert redacted.verdicts == [None] and kept.text == "It is 4." and "jane.doe@gmail.com" not in kept.reasoning
    assert kept.reasoning_span is None and redacted.notes == ["redacted: email"]
