"""A ledger record's token ids and logprobs as typed binary (one blob), not JSON text.

store.py keeps a record's other fields as JSON and these six in one blob beside it:

- ids (`token_ids`, `top_ids`): uint16 when every id fits (SmolLM2's 49,152), else uint32,
  else int64: exact.
- strings (`tokens`, `top_tokens`): when every string comes with its id and each id always
  names the same string within the record, one table of the strings of the record's distinct
  ids (sorted by id) and nothing per position: the ids recover them. Otherwise a table of the
  distinct strings and per position an index into it. Either way exact.
- `token_logprobs` (the sampled tokens'): float32. Lossless for logprobs a server computed in
  float32 (vLLM, llama.cpp, transformers); otherwise within float32's rounding (relative 6e-8).
- `top_logprobs`: float16 (relative error at most 2^-11 = 0.05 %, e.g. 0.002 at -4.0) when
  every value is finite and within its range, else float32.
- ragged top lists (fewer alternatives at some positions) keep each row's length.

The blob: version byte, then a byte whose bits say which fields are present (in
`LOGPROB_FIELDS` order, so `top_logprobs` is bit 5: a blob holds top logprobs exactly when that
byte is >= 0x20, which the ledger's SQL tests), then a flags byte, then the sections.
numpy is imported inside the functions (the CLI starts without it).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

LOGPROB_FIELDS = ("tokens", "token_ids", "token_logprobs", "top_tokens", "top_ids", "top_logprobs")
VERSION = 1
TOP_LOGPROBS_BIT = 1 << LOGPROB_FIELDS.index("top_logprobs")
STRINGS_BY_ID = 1  # flags: the string table is indexed by the (sorted) distinct ids
RAGGED = 0xFFFF  # a 2-D field's row length when its rows differ: the lengths follow
_DTYPES = ("<u2", "<u4", "<i8", "<f2", "<f4", "<f8")
_FP16_MAX = 65504.0


def split_record(payload: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    """(the payload with the six fields set to None, their blob or None when all six are None)."""
    fields = {name: payload.get(name) for name in LOGPROB_FIELDS}
    rest = {**payload, **dict.fromkeys(LOGPROB_FIELDS)}
    return rest, encode(fields)


def join_record(payload: dict[str, Any], blob: bytes | None) -> dict[str, Any]:
    """The payload with its six fields back from the blob (an old row, no blob, keeps its JSON fields)."""
    if blob is None:
        return payload
    return {**payload, **decode(blob)}


def split_model(record) -> tuple[str, bytes | None]:
    """A record model's JSON (the six fields None) and their blob: what the ledger stores of an answer."""
    blob = encode({name: getattr(record, name) for name in LOGPROB_FIELDS})
    return record.model_copy(update=dict.fromkeys(LOGPROB_FIELDS)).model_dump_json(), blob


def needs_split(payload: dict[str, Any]) -> bool:
    """Whether a stored JSON payload still holds any of the six fields (an old-format row)."""
    return any(payload.get(name) is not None for name in LOGPROB_FIELDS)


# -- encoding ----------------------------------------------------------------------


def encode(fields: dict[str, Any]) -> bytes | None:
    """The blob of the six fields (missing ones are None); None when none is present."""
    import numpy as np

    present = [name for name in LOGPROB_FIELDS if fields.get(name) is not None]
    if not present:
        return None
    mask = sum(1 << LOGPROB_FIELDS.index(name) for name in present)
    by_id = _strings_by_id(fields)
    out = [b""]  # the header, filled in below
    for name in ("token_ids", "token_logprobs", "top_ids", "top_logprobs"):
        value = fields.get(name)
        if value is None:
            continue
        flat, shape = _flatten(value, two_d=name.startswith("top_"))
        out.append(shape)
        if name.endswith("ids"):
            out.append(_typed(np.asarray(flat, dtype=np.int64), _id_dtype(flat)))
        else:
            out.append(_typed(np.asarray(flat, dtype=np.float64), _float_dtype(flat, name == "top_logprobs")))
    if by_id is not None:
        out.append(_table(by_id))
    else:
        out.extend(_strings_by_index(fields))
    out[0] = struct.pack("<BBB", VERSION, mask, STRINGS_BY_ID if by_id is not None else 0)
    return b"".join(out)


def _flatten(value: list, two_d: bool) -> tuple[list, bytes]:
    """The values in one list, and the shape: n, or n and one row length (or RAGGED and each row's)."""
    if not two_d:
        return value, struct.pack("<I", len(value))
    lengths = {len(row) for row in value}
    flat = [item for row in value for item in row]
    if len(lengths) <= 1:
        return flat, struct.pack("<IH", len(value), lengths.pop() if lengths else 0)
    if max(lengths) >= RAGGED:
        raise ValueError("a top list longer than 65534 entries")
    return flat, struct.pack("<IH", len(value), RAGGED) + struct.pack(f"<{len(value)}H", *map(len, value))


def _typed(array, dtype: str) -> bytes:
    return bytes([_DTYPES.index(dtype)]) + array.astype(dtype).tobytes()


def _id_dtype(ids: list[int]) -> str:
    low, high = (min(ids), max(ids)) if ids else (0, 0)
    if low < 0 or high >= 1 << 32:
        return "<i8"
    return "<u2" if high < 1 << 16 else "<u4"


def _float_dtype(values: list[float], half: bool) -> str:
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all() or (array.size and np.abs(array).max() > np.finfo(np.float32).max):
        return "<f8"
    return "<f2" if half and (not array.size or np.abs(array).max() <= _FP16_MAX) else "<f4"


def _strings_by_id(fields: dict[str, Any]) -> dict[int, str] | None:
    """id → string when every string field comes with ids of its shape and each id names one string."""
    pairs = [("tokens", "token_ids", False), ("top_tokens", "top_ids", True)]
    table: dict[int, str] = {}
    for strings, ids, two_d in pairs:
        if fields.get(strings) is None:
            continue
        if fields.get(ids) is None or not _same_shape(fields[strings], fields[ids], two_d):
            return None
        flat_strings = [s for row in fields[strings] for s in row] if two_d else fields[strings]
        flat_ids = [i for row in fields[ids] for i in row] if two_d else fields[ids]
        for token_id, string in zip(flat_ids, flat_strings):
            if table.setdefault(token_id, string) != string:
                return None
    return table


def _same_shape(a: list, b: list, two_d: bool) -> bool:
    return len(a) == len(b) and (not two_d or all(len(x) == len(y) for x, y in zip(a, b)))


def _table(by_id: dict[int, str]) -> bytes:
    """The strings of the distinct ids, in id order."""
    return _pack_strings([by_id[token_id] for token_id in sorted(by_id)])


def _strings_by_index(fields: dict[str, Any]) -> list[bytes]:
    """A table of the distinct strings (first seen first), then each string field's shape and indices."""
    import numpy as np

    index: dict[str, int] = {}
    sections = []
    for name in ("tokens", "top_tokens"):
        value = fields.get(name)
        if value is None:
            continue
        flat, shape = _flatten(value, two_d=name == "top_tokens")
        positions = [index.setdefault(s, len(index)) for s in flat]
        sections += [shape, _typed(np.asarray(positions, dtype=np.int64), _id_dtype(positions))]
    return [_pack_strings(list(index)), *sections]


def _pack_strings(strings: list[str]) -> bytes:
    """Count, then zlib of (each string's UTF-8 length as uint32, then the UTF-8 bytes)."""
    import numpy as np

    encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
    lengths = np.asarray([len(e) for e in encoded], dtype="<u4")
    body = zlib.compress(lengths.tobytes() + b"".join(encoded), 9)
    return struct.pack("<II", len(strings), len(body)) + body


# -- decoding ----------------------------------------------------------------------


class _Reader:
    def __init__(self, blob: bytes):
        self.blob = memoryview(blob)
        self.at = 0

    def unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from(fmt, self.blob, self.at)
        self.at += struct.calcsize(fmt)
        return values

    def shape(self, two_d: bool) -> tuple[int, list[int] | None]:
        """(count of values, row lengths of a 2-D field)."""
        if not two_d:
            return self.unpack("<I")[0], None
        rows, k = self.unpack("<IH")
        lengths = list(self.unpack(f"<{rows}H")) if k == RAGGED else [k] * rows
        return sum(lengths), lengths

    def array(self, count: int):
        import numpy as np

        dtype = np.dtype(_DTYPES[self.unpack("<B")[0]])
        array = np.frombuffer(self.blob, dtype=dtype, count=count, offset=self.at)
        self.at += count * dtype.itemsize
        return array

    def strings(self) -> list[str]:
        import numpy as np

        count, size = self.unpack("<II")
        body = zlib.decompress(self.blob[self.at : self.at + size])
        self.at += size
        lengths = np.frombuffer(body, dtype="<u4", count=count)
        ends = np.cumsum(lengths) + 4 * count
        starts = ends - lengths
        return [body[s:e].decode("utf-8", "surrogatepass") for s, e in zip(starts.tolist(), ends.tolist())]


def decode(blob: bytes) -> dict[str, Any]:
    """The six fields of a blob (absent ones None), as the Python lists a record holds; ValueError if damaged."""
    return {name: None if flat is None else rows_of(*flat) for name, flat in decode_flat(blob).items()}


def decode_flat(blob: bytes) -> dict[str, tuple[Any, list[int] | None] | None]:
    """The six fields of a blob as (1-D numpy array, row lengths of a 2-D field or None), absent ones None.

    Ids and logprobs stay in their stored dtypes; strings are an object array. ValueError if damaged.
    """
    try:
        return _decode(blob)
    except (struct.error, zlib.error, IndexError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"damaged logprobs blob ({exc})") from None


def _decode(blob: bytes) -> dict[str, tuple[Any, list[int] | None] | None]:
    import numpy as np

    reader = _Reader(blob)
    version, mask, flags = reader.unpack("<BBB")
    if version != VERSION:
        raise ValueError(f"unknown logprobs blob version {version}")
    fields: dict[str, Any] = dict.fromkeys(LOGPROB_FIELDS)
    for name in ("token_ids", "token_logprobs", "top_ids", "top_logprobs"):
        if mask & (1 << LOGPROB_FIELDS.index(name)):
            count, lengths = reader.shape(two_d=name.startswith("top_"))
            fields[name] = (reader.array(count), lengths)
    wanted = [(s, i) for s, i in (("tokens", "token_ids"), ("top_tokens", "top_ids")) if mask & _bit(s)]
    if flags & STRINGS_BY_ID:
        table = np.asarray(reader.strings(), dtype=object)
        ids = np.concatenate([fields[i][0] for _, i in wanted] or [np.zeros(0, dtype=np.int64)])
        positions = _ranks(ids)  # each id's place among the distinct ids
        at = 0
        for strings, ids_name in wanted:
            values, lengths = fields[ids_name]
            fields[strings] = (table[positions[at : at + len(values)]], lengths)
            at += len(values)
    else:
        table = np.asarray(reader.strings(), dtype=object)
        for strings, _ in wanted:
            count, lengths = reader.shape(two_d=strings == "top_tokens")
            fields[strings] = (table[reader.array(count)], lengths)
    return fields


def _ranks(ids):
    """Each id's place among the sorted distinct ids: `np.unique(ids, return_inverse=True)[1]` without its
    sort (a vocabulary-sized count instead)."""
    import numpy as np

    if not len(ids):
        return np.zeros(0, dtype=np.int64)
    if int(ids.max()) >= 1 << 21 or int(ids.min()) < 0:  # not a vocabulary's ids: no id-sized array
        return np.unique(ids, return_inverse=True)[1]
    present = np.zeros(int(ids.max()) + 1, dtype=np.int64)
    present[ids] = 1
    return (np.cumsum(present) - 1)[ids]


def _bit(name: str) -> int:
    return 1 << LOGPROB_FIELDS.index(name)


def rows_of(flat, lengths: list[int] | None) -> list:
    """A 1-D numpy array as the list (or, with row `lengths`, the list of lists) a record holds."""
    if lengths is None:
        return flat.tolist()
    if lengths and lengths.count(lengths[0]) == len(lengths) and lengths[0]:
        return flat.reshape(len(lengths), lengths[0]).tolist()  # k per position, the usual case: one C call
    values, rows, at = flat.tolist(), [], 0
    for length in lengths:
        rows.append(values[at : at + length])
        at += length
    return rows
