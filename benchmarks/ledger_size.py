"""Bytes per answer token of the harvest ledger at top-20: logprobs as JSON text (before m005) and as typed binary.

Realistic records: answers of 128 tokens, SmolLM2-135M-Instruct's real top-20 ids and logprobs
at each position, the sampled token drawn at T = 1, token strings as the in-process teacher
writes them (`tokenizer.decode([id])`). The answer texts are synthdistill's module docstrings
(nothing beyond the repository is needed). The same records are written twice:

- *before*: each record whole as JSON in the `record` column (the format before m005);
- *after*: `HarvestStore.put_done` (ids, strings and logprobs in the `logprobs` blob).

Also, when a ledger is given (`--ledger`, e.g. a quickstart run's), a copy of it is migrated
by m005 and measured before and after. It reports the error the stored precision adds: the
sampled tokens' logprobs (float32) and the top-k logprobs (float16), in logprob and probability.

    .venv/bin/python benchmarks/ledger_size.py [--records 40] [--ledger RUN/harvest/ledger.sqlite]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.kd_storage import answer_texts, machine, teacher_targets  # noqa: E402

TOP_K = 20
ANSWER_TOKENS = 128
TARGET = 150


def build_records(n: int) -> list:
    """`n` records of 128 answer tokens with SmolLM2's real top-20 ids, strings and logprobs."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthdistill.chat_tokens import prompt_token_ids
    from synthdistill.model_store import resolve_model
    from synthdistill.records import Usage
    from tests.records_fixtures import make_record

    folder = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(0)
    texts = [t for t in answer_texts() if len(tokenizer(t)["input_ids"]) >= ANSWER_TOKENS]
    records = []
    for i in range(n):
        text = texts[i % len(texts)]
        record = make_record(f"Explain part {i} of the tool.", "")
        prompt_ids = prompt_token_ids(tokenizer, [m.model_dump() for m in record.messages])
        answer_ids = tokenizer(text, add_special_tokens=False)["input_ids"][:ANSWER_TOKENS]
        top_ids, top_logprobs, logprobs, drawn = teacher_targets(model, prompt_ids, answer_ids, generator)
        drawn = drawn.tolist()
        fields = {
            "tokens": [tokenizer.decode([t]) for t in drawn],
            "token_ids": drawn,
            "token_logprobs": logprobs.gather(1, torch.tensor(drawn)[:, None])[:, 0].tolist(),
            "top_tokens": [[tokenizer.decode([t]) for t in row] for row in top_ids],
            "top_ids": top_ids,
            "top_logprobs": top_logprobs,
        }
        usage = Usage(prompt_tokens=len(prompt_ids), completion_tokens=ANSWER_TOKENS)
        answer = tokenizer.decode(drawn)
        records.append(record.model_copy(update={"text": answer, "usage": usage, **fields}))
    return records


def write_old(path: Path, records: list) -> None:
    from tests.ledger_fixtures import write_old_ledger

    write_old_ledger(path, records, failed=0)


def write_new(path: Path, records: list) -> None:
    from synthdistill.store import HarvestStore

    with HarvestStore(path) as store:
        for record in records:
            store.put_done(record)


def columns(path: Path) -> dict[str, float]:
    """Answer tokens and the bytes of the record JSON and of the blobs."""
    db = sqlite3.connect(path)
    has_blob = "logprobs" in {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    blob = "COALESCE(SUM(LENGTH(logprobs)), 0)" if has_blob else "0"
    tokens, json_bytes, blob_bytes = db.execute(
        f"SELECT SUM(json_extract(record, '$.usage.completion_tokens')), SUM(LENGTH(CAST(record AS BLOB))), {blob} "
        "FROM requests WHERE status = 'done'"
    ).fetchone()
    db.close()
    return {"tokens": tokens, "json": json_bytes / tokens, "blob": blob_bytes / tokens}


def measure(path: Path) -> dict[str, float]:
    return {**columns(path), "file": path.stat().st_size / columns(path)["tokens"]}


def precision(records: list) -> dict[str, float]:
    """Largest errors the stored precision adds, over every value of the records."""
    import numpy as np

    from synthdistill.ledger_codec import decode, encode

    worst = {"sampled_abs": 0.0, "top_abs": 0.0, "top_rel": 0.0, "top_prob_rel": 0.0, "sampled_f16_abs": 0.0}
    for record in records:
        fields = {name: getattr(record, name) for name in ("token_ids", "token_logprobs", "top_ids", "top_logprobs")}
        back = decode(encode(fields))
        sampled = np.asarray(record.token_logprobs)
        top, top_back = np.asarray(record.top_logprobs), np.asarray(back["top_logprobs"])
        worst["sampled_abs"] = max(worst["sampled_abs"], np.abs(np.asarray(back["token_logprobs"]) - sampled).max())
        worst["sampled_f16_abs"] = max(worst["sampled_f16_abs"], np.abs(sampled.astype(np.float16) - sampled).max())
        worst["top_abs"] = max(worst["top_abs"], np.abs(top_back - top).max())
        worst["top_rel"] = max(worst["top_rel"], (np.abs(top_back - top) / np.maximum(np.abs(top), 1e-30)).max())
        worst["top_prob_rel"] = max(worst["top_prob_rel"], np.abs(np.expm1(top_back - top)).max())
    return {name: float(value) for name, value in worst.items()}


def row(name: str, m: dict) -> str:
    return f"| {name} | {m['tokens']} | {m['json']:.1f} | {m['blob']:.1f} | {m['file']:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=24, help="real records to make (a model pass each)")
    parser.add_argument("--copies", type=int, default=10, help="rows per record (distinct keys): a ledger's scale")
    parser.add_argument("--ledger", type=Path, help="an existing ledger: a copy is migrated and measured")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    records = build_records(args.records)
    rows = [r.model_copy(update={"request_key": f"{r.request_key}-{c}"}) for c in range(args.copies) for r in records]
    lines = [
        f"# Harvest ledger size, top-{TOP_K} ({dt.date.today().isoformat()})",
        "",
        f"Machine: {machine()}; Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}.",
        "",
        f"Records: {args.records} answers of {ANSWER_TOKENS} tokens, SmolLM2-135M-Instruct's real top-{TOP_K} ids,",
        "logprobs and token strings (`tokenizer.decode([id])`, as the in-process teacher writes them), the sampled",
        f"token drawn at T = 1; each written {args.copies} times under distinct request keys, so that the ledger's",
        "fixed pages (its tables and indexes, ~40 KiB) weigh as little as in a real harvest. Bytes per answer",
        "token: the record JSON, the logprobs blob, the ledger file.",
        "",
        "| ledger | answer tokens | JSON | blob | file |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        old, new = Path(scratch) / "old.sqlite", Path(scratch) / "new.sqlite"
        write_old(old, rows)
        write_new(new, rows)
        lines += [row("before (JSON text)", measure(old)), row("after (typed binary)", measure(new))]
        if args.ledger:
            copy = Path(scratch) / "given.sqlite"
            shutil.copyfile(args.ledger, copy)
            before = measure(copy)
            from synthdistill.store import HarvestStore

            HarvestStore(copy).close()
            db = sqlite3.connect(copy)
            db.execute("VACUUM")  # the migration frees the JSON's pages; VACUUM gives them back to the disk
            db.close()
            lines += [
                row(f"{args.ledger.name} given, before m005", before),
                row("… after m005 + VACUUM", measure(copy)),
            ]
    errors = precision(records)
    lines += [
        "",
        f"Target: at most {TARGET} B per answer token. Ids and token strings round-trip exactly.",
        "Stored precision, largest error over every value above:",
        f"- sampled tokens' logprobs, float32: {errors['sampled_abs']:.2e} (float16 would add up to "
        f"{errors['sampled_f16_abs']:.2e}, so they stay float32: 2 B per token more);",
        f"- top-{TOP_K} logprobs, float16: {errors['top_abs']:.2e} absolute, {errors['top_rel']:.2e} relative; "
        f"the probabilities they give change by at most {errors['top_prob_rel']:.2%}.",
        "",
        f"    .venv/bin/python benchmarks/ledger_size.py --records {args.records} --copies {args.copies}"
        + (" --ledger RUN/harvest/ledger.sqlite" if args.ledger else ""),
    ]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"ledger_size-{dt.date.today().isoformat()}.md"
    target.write_text(text)
    print(text)
    print(f"written to {target}")


if __name__ == "__main__":
    main()
