"""What the KD dataset's logprob precision costs: bytes per answer token (Parquet) and the KD-loss error it adds.

The rows of benchmarks/kd_storage.py (SmolLM2-135M-Instruct's real top-20 logprobs on the
docstrings of synthdistill's modules, the token drawn at T = 1 appended when outside the top 20)
are stored with each precision and read back; the sparse KD loss (`train.kd_loss.kd_loss`, KL
only: alpha = 0, T = 1, tail bucket) and its gradient with respect to the student's logits are
compared with float32. The student is a stand-in: SmolLM2's own logits, scaled by 0.8, plus
Gaussian noise (sigma 1), so the KL is that of a student part way to the teacher.

Precisions:
- float32, float16 (today's `kd_logprobs`);
- int8-grid: uint8 codes of (row max - logprob) on a fixed grid of 1/16 nat (to 15.9 nats
  below the row's best), the row max in float16, the appended sampled token's logprob in
  float16 beside them (exact to float16, as the sampled token's own logprob).

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

STEP = 1 / 16


def quantise(rows: list[dict]) -> list[dict]:
    """int8-grid columns of each row: codes, row max, the appended sampled logprob (None when not appended)."""
    out = []
    for row in rows:
        codes, maxima, sampled = [], [], []
        for lps in row["kd_logprobs"]:
            top = lps[:TOP_K]
            best = max(top) if top else 0.0
            codes.append([min(255, round((best - x) / STEP)) for x in top])
            maxima.append(best)
            sampled.append(lps[TOP_K] if len(lps) > TOP_K else None)
        out.append({**row, "kd_logprobs": codes, "kd_logprob_max": maxima, "kd_sampled_logprob": sampled})
    return out


def dequantise(rows: list[dict]) -> list[dict]:
    import numpy as np

    out = []
    for row in rows:
        back = []
        for codes, best, sampled in zip(row["kd_logprobs"], row["kd_logprob_max"], row["kd_sampled_logprob"]):
            values = [float(np.float16(best)) - c * STEP for c in codes]
            back.append(values + ([float(np.float16(sampled))] if sampled is not None else []))
        out.append({**row, "kd_logprobs": back})
    return out


def stored(rows: list[dict], precision: str, folder: Path) -> tuple[list[dict], float]:
    """The rows as read back after storing them at `precision`, and the Parquet bytes per answer token."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synthdistill.build import _kd_schema

    schema = _kd_schema("uint16")
    if precision == "int8-grid":
        rows = quantise(rows)
        schema = schema.set(
            schema.get_field_index("kd_logprobs"), pa.field("kd_logprobs", pa.list_(pa.list_(pa.uint8())))
        )
        schema = schema.append(pa.field("kd_logprob_max", pa.list_(pa.float16())))
        schema = schema.append(pa.field("kd_sampled_logprob", pa.list_(pa.float16())))
    else:
        value = pa.float16() if precision == "float16" else pa.float32()
        schema = schema.set(schema.get_field_index("kd_logprobs"), pa.field("kd_logprobs", pa.list_(pa.list_(value))))
    path = folder / f"{precision}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    back = pq.read_table(path).to_pylist()
    answer = sum(1 for row in back for label in row["labels"] if label != -100)
    if precision == "int8-grid":
        back = dequantise(back)
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
    parser.add_argument("--limit", type=int, default=20, help="use only the first N answers")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    import torch

    rows = build_rows(args.limit)["sampled at T = 1"]
    student = student_logits(rows)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for precision in ("float32", "float16", "int8-grid"):
            back, size = stored(rows, precision, Path(scratch))
            results[precision] = (size, losses(back, student))
    reference = results["float32"][1]
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
        "| kd_logprobs | Parquet B/answer token | KD loss | loss error | worst row's loss error | gradient error |",
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
