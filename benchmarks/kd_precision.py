"""What the KD dataset's logprob precision costs: bytes per answer token (Parquet) and the KD-loss error it adds.

The rows of benchmarks/kd_storage.py (SmolLM2-135M-Instruct's real top-20 logprobs on the
docstrings of synthdistill's modules, the token drawn at T = 1 appended when outside the top 20)
are stored with each precision and read back; the sparse KD loss (`train.kd_loss.kd_loss`, KL
only: alpha = 0, T = 1, tail bucket) and its gradient with respect to the student's logits are
compared with float32. The student is a stand-in: SmolLM2's own logits, scaled by 0.8, plus
Gaussian noise (sigma 1), so the KL is that of a student part way to the teacher.

Stored as:
- float32, and float16 with pyarrow's defaults (dictionary, snappy): the build until 2026-12-02;
- float16 as the build writes it now (`build_shards.parquet_options`: zstd, the top-k ids and
  logprobs byte-stream-split without a dictionary);
- the same with `datasets.kd_logprob_step` 1/32, 1/16 and 1/8: the logprobs rounded to that grid,
  each position's sampled token's own kept as it was (`flat_targets.logprobs_on_grid`).

    .venv/bin/python benchmarks/kd_precision.py [--limit 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.kd_storage import TOP_K, build_rows, machine  # noqa: E402

# (name, value type, kd_logprob_step, writer options: "defaults" = pyarrow's, "build" = parquet_options)
VARIANTS = [
    ("float32, pyarrow defaults", "float32", None, "defaults"),
    ("float16, pyarrow defaults (before)", "float16", None, "defaults"),
    ("float16 (the build now)", "float16", None, "build"),
    ("float16, step 1/32", "float16", 1 / 32, "build"),
    ("float16, step 1/16", "float16", 1 / 16, "build"),
    ("float16, step 1/8", "float16", 1 / 8, "build"),
]


def on_grid(rows: list[dict], step: float | None) -> list[dict]:
    """The rows' logprobs as `kd_row(..., logprob_step=step)` stores them."""
    from synthdistill.arrow_lists import FlatRows
    from synthdistill.flat_targets import logprobs_on_grid

    if step is None:
        return rows
    out = []
    for row in rows:
        lengths = [n for n, label in zip(row["kd_ids"].lengths, row["labels"]) if label != -100]
        answer = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
        values = logprobs_on_grid(row["kd_ids"].values, row["kd_logprobs"].values, lengths, answer, step)
        out.append({**row, "kd_logprobs": FlatRows(values, row["kd_logprobs"].lengths)})
    return out


def stored(rows: list[dict], variant: tuple, folder: Path) -> tuple[list[dict], float]:
    """The rows as read back after storing them as `variant` says, and the Parquet bytes per answer token."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synthdistill.arrow_lists import table_from_rows
    from synthdistill.build_shards import parquet_options
    from synthdistill.dataset_schemas import kd_schema

    name, value_type, step, options = variant
    schema = kd_schema("uint16")
    if value_type != "float16":
        schema = schema.set(
            schema.get_field_index("kd_logprobs"),
            pa.field("kd_logprobs", pa.list_(pa.list_(getattr(pa, value_type)()))),
        )
    path = folder / "kd.parquet"
    pq.write_table(
        table_from_rows(on_grid(rows, step), schema), path, **(parquet_options(schema) if options == "build" else {})
    )
    back = pq.read_table(path).to_pylist()
    answer = sum(1 for row in back for label in row["labels"] if label != -100)
    return back, path.stat().st_size / answer


def losses(rows: list[dict], student: list) -> list[tuple[float, object]]:
    """(KD loss, gradient w.r.t. the student's logits) of every row."""

    from synthdistill.train.data import PaddingCollator
    from synthdistill.train.kd_loss import kd_loss

    out = []
    for row, logits in zip(rows, student):
        batch = PaddingCollator(0)([{k: row[k] for k in ("input_ids", "labels", "kd_ids", "kd_logprobs", "kd_mask")}])
        logits = logits.clone().requires_grad_(True)
        loss, _ = kd_loss(logits, batch["labels"], batch["kd_ids"], batch["kd_logprobs"], batch["kd_mask"], alpha=0.0)
        loss.backward()
        out.append((loss.item(), logits.grad.detach()))
    return out


def student_logits(rows: list[dict]) -> list:
    import torch
    from transformers import AutoModelForCausalLM

    from synthdistill.model_store import resolve_model

    model = AutoModelForCausalLM.from_pretrained(resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")).eval()
    generator = torch.Generator().manual_seed(1)
    out = []
    with torch.no_grad():
        for row in rows:
            logits = model(torch.tensor([row["input_ids"]])).logits.float()
            out.append(logits * 0.8 + torch.randn(logits.shape, generator=generator))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=40, help="use only the first N answers")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    import torch

    rows = build_rows(args.limit)["sampled at T = 1"]
    student = student_logits(rows)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for variant in VARIANTS:
            back, size = stored(rows, variant, Path(scratch))
            results[variant[0]] = (size, losses(back, student))
    reference = results[VARIANTS[0][0]][1]
    total = sum(loss for loss, _ in reference)
    lines = [
        f"# KD dataset logprob precision, k = {TOP_K} ({dt.date.today().isoformat()})",
        "",
        f"Machine: {machine()}; Python {platform.python_version()}, torch {torch.__version__}.",
        "",
        f"Data: {len(rows)} answers, SmolLM2-135M-Instruct's real top-{TOP_K} logprobs (benchmarks/kd_storage.py, ",
        "sampled at T = 1). KD loss: KL only (alpha 0, T 1, tail bucket), summed over the rows; the",
        "student is SmolLM2's logits x 0.8 + N(0, 1) noise. Errors relative to float32.",
        "",
        "| kd_logprobs stored as | Parquet B/answer token | KD loss | loss error | worst row's loss error | gradient error |",
        "|---|---|---|---|---|---|",
    ]
    for precision, (size, got) in results.items():
        loss = sum(value for value, _ in got)
        worst = max(abs(a - b) / abs(b) for (a, _), (b, _) in zip(got, reference))
        num = math.sqrt(sum(float(((g - r) ** 2).sum()) for (_, g), (_, r) in zip(got, reference)))
        den = math.sqrt(sum(float((r**2).sum()) for _, r in reference))
        lines.append(
            f"| {precision} | {size:.1f} | {loss:.5f} | {abs(loss - total) / total:.3%} | {worst:.3%} | {num / den:.3%} |"
        )
    lines += ["", f"    .venv/bin/python benchmarks/kd_precision.py --limit {args.limit}"]
    text = "\n".join(lines) + "\n"
    target = args.out / f"kd_precision-{dt.date.today().isoformat()}.md"
    target.write_text(text)
    print(text)
    print(f"written to {target}")


if __name__ == "__main__":
    main()
