"""Bytes per answer token of the KD dataset at k = 20, before and after Parquet compression.

Real targets: SmolLM2-135M-Instruct reads answers (teacher forcing) and its top-20
logprobs at every answer position become the KD targets, with the sampled (here: the
actual) token appended when it is outside the top 20, exactly as `synthdistill build`
stores them (`exact_targets` → `kd_row` → `kd_schema`). The answers are the docstrings
of synthdistill's own modules, so the run needs nothing beyond the repository.

Reported per answer token (positions whose label is learned):
- KD columns (`kd_ids`, `kd_logprobs`, `kd_mask`) in Arrow memory, offsets included;
- all columns of the row in Arrow memory;
- the Parquet file (pyarrow defaults: snappy).
for kd_ids stored as uint16 (vocabularies up to 65536, SmolLM2's 49152) and as int32.

    .venv/bin/python benchmarks/kd_storage.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import os
import platform
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOP_K = 20
TARGET_BYTES = 130


def answer_texts(min_words: int = 40) -> list[str]:
    """Module docstrings of the package: English prose of 40 to a few hundred words."""
    texts = []
    for path in sorted((REPO / "synthdistill").rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if doc and len(doc.split()) >= min_words:
            texts.append(doc)
    return texts


def teacher_targets(model, prompt_ids: list[int], answer_ids: list[int], generator):
    """Per answer position: top-k (ids, logprobs), the text's token and a token drawn at T = 1.

    The drawn token stands for what a teacher sampling at temperature 1 stores: it falls
    outside the top k with the probability of the tail, while the text's own token (not
    the model's words) falls outside far more often: the worst case.
    """
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + answer_ids])).logits[0].float()
    logprobs = logits[len(prompt_ids) - 1 : -1].log_softmax(-1)  # logits at t - 1 predict token t
    top = logprobs.topk(TOP_K, dim=-1)
    drawn = torch.multinomial(logprobs.exp(), 1, generator=generator)[:, 0]
    return top.indices.tolist(), top.values.tolist(), logprobs, drawn


def build_rows(limit: int | None) -> dict[str, list[dict]]:
    """KD rows for both cases: the text's own tokens ("foreign text") and tokens drawn at T = 1."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthdistill.alignment import exact_targets
    from synthdistill.build import kd_row
    from synthdistill.chat_tokens import prompt_token_ids
    from synthdistill.model_store import resolve_model
    from tests.records_fixtures import make_record

    folder = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(0)
    eos = tokenizer.eos_token_id
    rows: dict[str, list[dict]] = {"sampled at T = 1": [], "foreign text (worst case)": []}
    for i, text in enumerate(answer_texts()[:limit]):
        record = make_record(f"Explain part {i} of the tool.", text)
        prompt_ids = prompt_token_ids(tokenizer, [m.model_dump() for m in record.messages])
        answer_ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
        top_ids, top_logprobs, logprobs, drawn = teacher_targets(model, prompt_ids, answer_ids, generator)
        for case, tokens in (("sampled at T = 1", drawn.tolist()), ("foreign text (worst case)", answer_ids)):
            sampled = logprobs.gather(1, torch.tensor(tokens)[:, None])[:, 0].tolist()
            targets = exact_targets(tokens, sampled, top_ids, top_logprobs)
            rows[case].append(kd_row(record, prompt_ids, targets, eos, max_length=4096))
    return rows


def measure(rows: list[dict], id_type: str, folder: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synthdistill.dataset_schemas import kd_schema

    table = pa.Table.from_pylist(rows, schema=kd_schema(id_type))
    id_bytes = pa.type_for_alias(id_type).bit_width // 8
    answer_positions = [len(ids) for row in rows for ids, label in zip(row["kd_ids"], row["labels"]) if label != -100]
    answer = len(answer_positions)
    path = folder / f"kd-{id_type}.parquet"
    pq.write_table(table, path)
    return {
        "id_type": id_type,
        "answer_tokens": answer,
        "entries": sum(answer_positions) / answer,
        "outside": sum(1 for n in answer_positions if n > TOP_K),
        # The Arrow layout per position: n ids, n fp16, one int32 offset per list column, int8 mask.
        "kd_answer_positions": sum(n * (id_bytes + 2) + 4 + 4 + 1 for n in answer_positions) / answer,
        "kd_columns": sum(table.column(c).nbytes for c in ("kd_ids", "kd_logprobs", "kd_mask")) / answer,
        "all_columns": table.nbytes / answer,
        "parquet": path.stat().st_size / answer,
    }


def machine() -> str:
    """CPU model, cores, memory and OS of this machine, from /proc where it exists."""
    cpu = platform.processor() or platform.machine()
    memory = ""
    if Path("/proc/cpuinfo").exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    if Path("/proc/meminfo").exists():
        total_kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kib / 2**20:.0f} GiB memory"
    return f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}, no GPU used"


def report(results: dict[str, list[dict]], rows: dict[str, list[dict]]) -> str:
    some = next(iter(rows.values()))
    answer = next(iter(results.values()))[0]["answer_tokens"]
    prompt = sum(len(r["input_ids"]) for r in some) - answer
    lines = [
        f"# KD dataset storage, k = {TOP_K} ({dt.date.today().isoformat()})",
        "",
        f"Machine: {machine()}; Python {platform.python_version()}, pyarrow "
        f"{__import__('pyarrow').__version__}, torch {__import__('torch').__version__}.",
        "",
        f"Data: {len(some)} answers (synthdistill's module docstrings), {answer} answer tokens and "
        f"{prompt} prompt tokens (SmolLM2 chat template). Targets are SmolLM2-135M-Instruct's real "
        f"top-{TOP_K} logprobs at each answer position; the sampled token is appended (entry "
        f"{TOP_K + 1}) when it is outside the top {TOP_K}, as `synthdistill build` stores it.",
        "",
        "- *sampled at T = 1*: each position's sampled token is drawn from the model's distribution,",
        "  as a teacher harvested at temperature 1 would have sampled it;",
        "- *foreign text*: the sampled token is the docstring's own token (text the model did not",
        "  write), which is far more often outside the top k: a worst case.",
        "",
        "Bytes per answer token. *answer positions*: the KD columns' bytes at answer positions",
        "(n ids + n fp16 + two int32 list offsets + int8 mask). *KD columns*: the whole",
        "`kd_ids`/`kd_logprobs`/`kd_mask` Arrow buffers, prompt positions (empty lists, 9 B",
        "each) charged to the answer tokens. *whole row*: every column in Arrow. *Parquet*:",
        "the file (pyarrow defaults, snappy).",
        "",
        "| case | kd_ids | entries/token | outside top-k | answer positions | KD columns | whole row | Parquet |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, by_type in results.items():
        for r in by_type:
            lines.append(
                f"| {case} | {r['id_type']} | {r['entries']:.2f} | {r['outside'] / r['answer_tokens']:.1%} "
                f"| {r['kd_answer_positions']:.1f} | {r['kd_columns']:.1f} | {r['all_columns']:.1f} "
                f"| {r['parquet']:.1f} |"
            )
    lines += [
        "",
        f"Target: at most {TARGET_BYTES} B per answer token before compression. The build stores",
        "`kd_ids` as uint16 when the student's vocabulary has at most 65536 tokens (SmolLM2: 49152;",
        "build.json `kd_ids_dtype`), int32 otherwise. At n = 20 a position takes 89 B (uint16) or",
        "129 B (int32).",
        "",
        "    .venv/bin/python benchmarks/kd_storage.py",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N answers")
    args = parser.parse_args()
    import sys

    sys.path.insert(0, str(REPO))  # tests.records_fixtures builds the records
    rows = build_rows(args.limit)
    with tempfile.TemporaryDirectory() as scratch:
        results = {
            case: [measure(case_rows, id_type, Path(scratch)) for id_type in ("uint16", "int32")]
            for case, case_rows in rows.items()
        }
    text = report(results, rows)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"kd_storage-{dt.date.today().isoformat()}.md"
    target.write_text(text)
    print(text)
    print(f"written to {target}")


if __name__ == "__main__":
    main()
