"""Teacher top-k logprobs → KD targets on the student's tokens.

Two cases (design §8):

- **Same tokenizer** (`exact_targets`): the record carries the teacher's token ids and
  they are the student's; targets are copied position by position.
- **Different tokenizer** (`align_answer`, any API teacher): the teacher's tokens are
  matched to the student's tokenization of the same answer text by byte offsets.

The alignment rule, for each student answer token j spanning bytes [a, b) of the answer:

1. j is kept only if it is the only student token spanning [a, b) (byte-level BPE splits
   a character into several tokens that share one character span) and some teacher token
   i spans exactly [a, b) (same boundaries on both sides);
2. the teacher's sampled token i must be one student token, the one at j;
3. each top-k candidate string of i is mapped to the student token that spells it, when
   one token does (`single_token_id`); candidates that are not one student token are
   dropped, and their probability falls into the tail bucket of the loss;
4. j is kept only if the dropped candidates carry at most `max_unmapped_mass` of
   probability (absolute, i.e. `sum(exp(logprob))`), because a dropped candidate such as
   " worldwide" would have lent its mass to a kept one such as " world";
5. the kept targets are the mapped candidates in the teacher's order (two candidates that
   map to one student token are merged: their probabilities add), plus the sampled token
   with its own logprob when it is not among them.

Every other position gets no targets (`kd_mask` 0) and is learned by cross-entropy only.
The reason of each masked position is counted.

Teacher tokens are decoded text pieces (OpenAI, llama.cpp and vLLM return those); their
concatenation must spell the answer. When it does not, the pieces are tried as raw vocab
pieces, byte-level BPE (`Ġ` for a space) or SentencePiece (`▁`, `<0x0A>`), and the first
spelling that reproduces the answer is used for the candidates too. If none does, they
are read as text: pieces holding U+FFFD (part of a character, decoded one token at a
time) get no span and the walk resumes after them where that is unambiguous; any other
departure from the text (such as a stop token the text lacks) ends the walk.

Layout: the targets of list index j belong to the student token j itself; the loss pairs
them with the student's logits at j - 1 (synthdistill/train/kd_loss.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

# Reads one teacher piece as bytes; None when the piece cannot be in that spelling.
Spelling = Callable[[str], bytes | None]


@dataclass
class AnswerTargets:
    """Student token ids of an answer and, per token, its KD targets (empty = masked)."""

    student_ids: list[int]
    kd_ids: list[list[int]]
    kd_logprobs: list[list[float]]
    masked: dict[str, int] = field(default_factory=dict)  # reason → masked positions
    spelling: str = "exact-ids"

    @property
    def kept(self) -> int:
        return sum(1 for ids in self.kd_ids if ids)

    @property
    def coverage(self) -> float:
        return self.kept / len(self.student_ids) if self.student_ids else 0.0


def exact_targets(
    token_ids: Sequence[int],
    token_logprobs: Sequence[float],
    top_ids: Sequence[Sequence[int]],
    top_logprobs: Sequence[Sequence[float]],
) -> AnswerTargets:
    """Targets when the teacher's ids are the student's: top-k as given, plus the sampled token."""
    kd_ids, kd_logprobs = [], []
    for position, token in enumerate(token_ids):
        ids, logprobs = list(top_ids[position]), list(map(float, top_logprobs[position]))
        # Keep the sampled token beside the top-k: it lowers the bias of top-k caching.
        if token not in ids:
            ids.append(token)
            logprobs.append(float(token_logprobs[position]))
        kd_ids.append(ids)
        kd_logprobs.append(logprobs)
    return AnswerTargets(list(token_ids), kd_ids, kd_logprobs)


# -- teacher pieces -----------------------------------------------------------------------


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's printable-character alphabet for the 256 bytes, inverted (char → byte)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


def text_piece(piece: str) -> bytes | None:
    """A decoded text piece (what APIs return) as UTF-8 bytes."""
    return piece.encode("utf-8")


def byte_level_piece(piece: str) -> bytes | None:
    """A raw byte-level BPE vocab piece (`Ġworld`) as bytes; None if it is not one."""
    table = _byte_level_decoder()
    if any(char not in table for char in piece):
        return None
    return bytes(table[char] for char in piece)


def sentencepiece_piece(piece: str) -> bytes | None:
    """A raw SentencePiece vocab piece (`▁world`, `<0x0A>`) as bytes."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            return None
    return piece.replace("▁", " ").encode("utf-8")


SPELLINGS: dict[str, Spelling] = {
    "text": text_piece,
    "byte-level-bpe": byte_level_piece,
    "sentencepiece": sentencepiece_piece,
}


def choose_spelling(tokens: Sequence[str], text: str) -> str:
    """The first spelling under which the teacher's tokens concatenate to the answer ("text" if none)."""
    target = text.encode("utf-8")
    for name, spell in SPELLINGS.items():
        pieces = [spell(token) for token in tokens]
        if all(p is not None for p in pieces) and b"".join(pieces) == target:  # type: ignore[arg-type]
            return name
    return "text"


_REPLACEMENT = "\ufffd".encode("utf-8")


def _resync(piece: bytes, text_bytes: bytes, start: int, skipped: Sequence[bytes]) -> int | None:
    """Where `piece` starts after a run of pieces holding U+FFFD (partial characters), if unambiguous.

    A teacher token that is part of a character decodes alone to U+FFFD, standing for 1–3
    bytes of the text; the run covers between `low` and `high` bytes. The next clean piece
    must occur exactly once in that window (UTF-8 never matches mid-character).
    """
    replaced = sum(p.count(_REPLACEMENT) for p in skipped)
    clean = sum(len(p) for p in skipped) - len(_REPLACEMENT) * replaced
    low, high = start + clean + replaced, start + clean + 3 * replaced
    found = [o for o in range(low, high + 1) if text_bytes[o : o + len(piece)] == piece]
    return found[0] if len(found) == 1 else None


def teacher_spans(pieces: Sequence[bytes | None], text_bytes: bytes) -> list[tuple[int, int] | None]:
    """Byte span of each teacher piece in the answer (None where unknown).

    Pieces holding U+FFFD (a character split across tokens, decoded one token at a time)
    get no span; the walk resumes at the next clean piece when `_resync` places it
    unambiguously. Any other departure from the text ends the walk.
    """
    spans: list[tuple[int, int] | None] = []
    start, lost = 0, False
    skipped: list[bytes] = []
    for piece in pieces:
        if lost or not piece:
            lost = True
        elif _REPLACEMENT in piece and text_bytes[start : start + len(piece)] != piece:
            skipped.append(piece)
        else:
            at = _resync(piece, text_bytes, start, skipped) if skipped else start
            if at is None or text_bytes[at : at + len(piece)] != piece:
                lost = True
            else:
                skipped, start = [], at + len(piece)
                spans.append((at, start))
                continue
        spans.append(None)
    return spans


# -- student side -------------------------------------------------------------------------


def byte_offsets(text: str) -> list[int]:
    """offsets[c] = UTF-8 byte offset of character c (offsets[len(text)] = total bytes)."""
    offsets = [0]
    for char in text:
        offsets.append(offsets[-1] + len(char.encode("utf-8")))
    return offsets


def student_tokens(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The student's ids for the answer text and each token's byte span (fast tokenizer offsets)."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    chars = byte_offsets(text)
    spans = [(chars[a], chars[b]) for a, b in encoded["offset_mapping"]]
    return list(encoded["input_ids"]), spans


def single_token_mapper(tokenizer) -> Callable[[str], int | None]:
    """string → the one student token id that spells it, else None (memoised per tokenizer).

    The string is tokenized on its own, leading space included: API pieces carry their
    space (" world"), and neither byte-level BPE nor Gemma's SentencePiece adds a prefix
    space, so this is the token the student uses at that position. The decode check
    rejects tokenizers that normalise or add a dummy prefix.
    """
    cache: dict[str, int | None] = {}

    def single_token_id(piece: str) -> int | None:
        if piece not in cache:
            ids = tokenizer(piece, add_special_tokens=False)["input_ids"] if piece else []
            ok = len(ids) == 1 and tokenizer.decode(ids, skip_special_tokens=False) == piece
            cache[piece] = ids[0] if ok else None
        return cache[piece]

    return single_token_id


# -- alignment ----------------------------------------------------------------------------


def _piece_text(spell: Spelling, piece: str) -> str | None:
    raw = spell(piece)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # a partial character: no student token spells it alone
        return None


def position_targets(
    student_id: int,
    token: str,
    token_logprob: float,
    candidates: Sequence[str],
    candidate_logprobs: Sequence[float],
    spell: Spelling,
    single_token_id: Callable[[str], int | None],
    max_unmapped_mass: float,
) -> tuple[list[int], list[float], str | None]:
    """Targets of one aligned position (rules 2–5 of the module docstring); (ids, logprobs, mask reason)."""
    sampled_text = _piece_text(spell, token)
    if sampled_text is None or single_token_id(sampled_text) != student_id:
        return [], [], "sampled-token-not-that-student-token"
    ids: list[int] = []
    logprobs: list[float] = []
    unmapped = 0.0
    for candidate, logprob in zip(candidates, candidate_logprobs):
        text = _piece_text(spell, candidate)
        mapped = single_token_id(text) if text is not None else None
        if mapped is None:
            unmapped += math.exp(logprob)
        elif mapped in ids:
            at = ids.index(mapped)
            logprobs[at] = float(math.log(math.exp(logprobs[at]) + math.exp(logprob)))
        else:
            ids.append(mapped)
            logprobs.append(float(logprob))
    if unmapped > max_unmapped_mass:
        return [], [], "candidates-not-student-tokens"
    if student_id not in ids:
        ids.append(student_id)
        logprobs.append(float(token_logprob))
    return ids, logprobs, None


def align_answer(
    text: str,
    tokens: Sequence[str],
    token_logprobs: Sequence[float],
    top_tokens: Sequence[Sequence[str]],
    top_logprobs: Sequence[Sequence[float]],
    tokenizer,
    *,
    max_unmapped_mass: float = 0.1,
    single_token_id: Callable[[str], int | None] | None = None,
) -> AnswerTargets:
    """KD targets on the student's tokens of `text` from a teacher with another tokenizer (module rules)."""
    spelling = choose_spelling(tokens, text)
    spell = SPELLINGS[spelling]
    teacher_by_span = {
        span: i for i, span in enumerate(teacher_spans([spell(t) for t in tokens], text.encode("utf-8"))) if span
    }
    student_ids, spans = student_tokens(tokenizer, text)
    span_uses: dict[tuple[int, int], int] = {}
    for span in spans:
        span_uses[span] = span_uses.get(span, 0) + 1
    mapper = single_token_id or single_token_mapper(tokenizer)
    result = AnswerTargets(student_ids, [], [], spelling=spelling)
    for student_id, span in zip(student_ids, spans):
        teacher = teacher_by_span.get(span)
        if span_uses[span] > 1 or span[0] == span[1]:
            ids, logprobs, reason = [], [], "student-token-splits-a-character"
        elif teacher is None:
            ids, logprobs, reason = [], [], "no-teacher-token-with-same-boundaries"
        else:
            ids, logprobs, reason = position_targets(
                student_id,
                tokens[teacher],
                token_logprobs[teacher],
                top_tokens[teacher],
                top_logprobs[teacher],
                spell,
                mapper,
                max_unmapped_mass,
            )
        if reason is not None:
            result.masked[reason] = result.masked.get(reason, 0) + 1
        result.kd_ids.append(ids)
        result.kd_logprobs.append(logprobs)
    return result


# -- a thinking teacher's turn: trace and answer ------------------------------------------


def align_turn(
    turn: str,
    parts: Sequence[tuple[str, tuple[int, int], int]],
    tokens: Sequence[str],
    token_logprobs: Sequence[float],
    top_tokens: Sequence[Sequence[str]],
    top_logprobs: Sequence[Sequence[float]],
    tokenizer,
    *,
    max_unmapped_mass: float = 0.1,
    single_token_id: Callable[[str], int | None] | None = None,
) -> tuple[AnswerTargets, dict[str, tuple[int, int]]]:
    """KD targets on the student's tokens of a whole assistant turn (template text, trace, answer).

    `turn` is the text the student learns (its template's rendering of trace and answer);
    each part is (name, its character range in `turn`, where the same text starts in the joined
    teacher tokens). A student token inside a part is aligned with the teacher token that spans
    the same characters of that part (rules 2–5 of the module docstring); a token outside every
    part (the template's `<think>` markers, newlines) or straddling a part's edge gets no targets.
    Returns the targets and, per part, (student tokens inside it, those with targets).
    """
    starts, at = [], 0
    for token in tokens:
        starts.append(at)
        at += len(token)
    teacher_by_chars = {(s, s + len(t)): i for i, (s, t) in enumerate(zip(starts, tokens))}
    encoded = tokenizer(turn, add_special_tokens=False, return_offsets_mapping=True)
    student_ids = list(encoded["input_ids"])
    offsets = [tuple(span) for span in encoded["offset_mapping"]]
    uses: dict[tuple[int, int], int] = {}
    for span in offsets:
        uses[span] = uses.get(span, 0) + 1
    mapper = single_token_id or single_token_mapper(tokenizer)
    result = AnswerTargets(student_ids, [], [], spelling="text")
    counts = {name: [0, 0] for name, _, _ in parts}
    for student_id, (a, b) in zip(student_ids, offsets):
        part = next(((name, lo, g) for name, (lo, hi), g in parts if lo <= a and b <= hi and a < b), None)
        ids: list[int] = []
        logprobs: list[float] = []
        if part is None:
            reason = "outside-trace-and-answer"
        elif uses[(a, b)] > 1:
            reason = "student-token-splits-a-character"
        else:
            name, lo, g = part
            counts[name][0] += 1
            teacher = teacher_by_chars.get((a - lo + g, b - lo + g))
            if teacher is None:
                reason = "no-teacher-token-with-same-boundaries"
            else:
                ids, logprobs, reason = position_targets(
                    student_id,
                    tokens[teacher],
                    token_logprobs[teacher],
                    top_tokens[teacher],
                    top_logprobs[teacher],
                    text_piece,
                    mapper,
                    max_unmapped_mass,
                )
                counts[name][1] += reason is None
        if reason is not None:
            result.masked[reason] = result.masked.get(reason, 0) + 1
        result.kd_ids.append(ids)
        result.kd_logprobs.append(logprobs)
    return result, {name: (n, kept) for name, (n, kept) in counts.items()}
