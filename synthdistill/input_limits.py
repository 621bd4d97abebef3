"""Limits on what a hand-edited input may cost, and the rule for characters a prompt may not hold.

Configs and packs are written by people and sometimes by attackers; none of them may
make a command run for minutes or take gigabytes before it says a word:

- YAML aliases may not expand a document past `MAX_YAML_NODES` nodes (a "billion
  laughs" of nine nested aliases is refused at the line of its first alias);
- a `variables:` product may make at most `MAX_VARIABLE_COMBINATIONS` prompts (the
  count is computed, never expanded, before it is refused);
- one line of a rows file may hold at most `max_row_bytes(max_prompt_chars)` bytes
  (read with a bounded `readline`, so a 1 GB line is never held in memory);
- a rendered prompt may hold at most `harvest.max_prompt_chars` characters.

Characters: a prompt (any row value, the rendered messages) may not hold NUL (U+0000)
or a lone surrogate (U+D800–U+DFFF). NUL is refused because servers treat it as a
string end or reject it, and SQLite text and C-based tokenizers cut at it; a lone
surrogate cannot be encoded as UTF-8 at all, so it could be neither hashed into a
prompt id nor sent. Both are reported at the row's file and line, never replaced
silently (a replaced character would change the prompt the user wrote).
"""

from __future__ import annotations

import re
from typing import Any

MAX_YAML_BYTES = 8 * 1024 * 1024
MAX_YAML_NODES = 100_000
MAX_VARIABLE_COMBINATIONS = 100_000
DEFAULT_MAX_PROMPT_CHARS = 200_000
# JSON may spell one character in up to 12 bytes (a \uXXXX\uXXXX surrogate pair).
_BYTES_PER_CHAR = 12
_ROW_SLACK_BYTES = 1024 * 1024

_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")


def max_row_bytes(max_prompt_chars: int | None) -> int:
    """The longest line of a rows file read before the row is refused."""
    chars = max_prompt_chars if max_prompt_chars is not None else DEFAULT_MAX_PROMPT_CHARS
    return chars * _BYTES_PER_CHAR + _ROW_SLACK_BYTES


def forbidden_character(value: Any, where: str = "") -> str | None:
    """A description of the first NUL or lone surrogate in `value` (strings, lists, dicts), or None."""
    if isinstance(value, str):
        found = _FORBIDDEN.search(value)
        if found is None:
            return None
        char = found.group()
        kind = "a NUL character (U+0000)" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
        return f"{where or 'the text'} holds {kind} at character {found.start()}"
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        label = f"{where}.{key}" if where and isinstance(key, str) else (f"{where}[{key}]" if where else f"'{key}'")
        if isinstance(key, str) and (problem := forbidden_character(key, f"the key {label}")):
            return problem
        if problem := forbidden_character(item, label):
            return problem
    return None
