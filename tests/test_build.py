"""The KD dataset build: exact ids for a same-tokenizer teacher, byte-offset alignment for an API teacher."""

from __future__ import annotations

import json

import pytest

from synthdistill import build
from synthdistill.config import load_config
from synthdistill.held_out import HeldOut
from tests.filtered_fixtures import write_kept
from tests.records_fixtures import make_record
from tests.test_alignment import GEMMA_ANSWER, GEMMA_TEXT
from tests.training_fixtures import teacher_logprobs, write_kept_project

EXACT_TEXT = "Blue is a calm colour."
EXPECTED_GEMMA_STUDENT_IDS = [19556, 905, 28, 37366, 17, 198, 198, 41462, 30]
EXPECTED_GEMMA_KD_IDS = [[19556, 26843], [905, 10094, 4969], [28], [37366], [30, 28, 17], [], [], [], [30]]


def api_logprobs(answer) -> dict:
    """Logprob fields as an OpenAI-compatible API teacher stores them: text pieces, no ids."""
    return {
        "tokens": [a[0] for a in answer],
        "token_logprobs": [a[1] for a in answer],
        "top_tokens": [[c for c, _ in a[2]] for a in answer],
        "top_logprobs": [[lp for _, lp in a[2]] for a in answer],
    }


def _project(tmp_path, smollm2_dir, tokenizer, records):
    """A project with these kept records; the student is the real SmolLM2 folder."""
    path = write_kept_project(tmp_path, smollm2_dir, tokenizer, method="kd", max_length=256)
    write_kept(tmp_path / "outputs" / "tiny", records)
    return load_config(path)


def _rows(kd_dir):
    import pyarrow.parquet as pq

    rows = []
    for split in ("train", "validation"):
        rows += pq.read_table(kd_dir / "data" / f"{split}-00000-of-00001.parquet").to_pylist()
    return {row["request_key"]: row for row in rows}


def _prompt_ids(tokenizer, record):
    from synthdistill.chat_tokens import prompt_token_ids

    return prompt_token_ids(tokenizer, [m.model_dump() for m in record.messages])


def test_build_mixes_exact_and_aligned_records_and_reports_coverage(tmp_path, smollm2_dir, tokenizer):
    exact = make_record("Name a colour.", EXACT_TEXT, model="smollm2", logprobs=teacher_logprobs(tokenizer, EXACT_TEXT))
    aligned = make_record("Say hello.", GEMMA_TEXT, model="gemma-api", logprobs=api_logprobs(GEMMA_ANSWER))
    plain = make_record("Name a fruit.", "An apple.", model="gemma-api")
    config = _project(tmp_path, smollm2_dir, tokenizer, [exact, aligned, plain])

    summary = build.run(config)

    held_out = HeldOut.of_prompts([exact.prompt_id, aligned.prompt_id, plain.prompt_id], 0.2, 0)
    expected_eval = sum(1 for r in (exact, aligned) if r.prompt_id in held_out)
    assert summary.kd_rows == {"train": 2 - expected_eval, "validation": expected_eval}
    assert summary.kd_dropped == {"no-logprobs": 1}
    exact_tokens = len(exact.token_ids)  # the answer's ids and the teacher's end token, all with targets
    assert summary.kd_coverage == round((exact_tokens + 6) / (exact_tokens + 9), 4)

    kd_dir = tmp_path / "outputs" / "tiny" / "datasets" / "kd"
    rows = _rows(kd_dir)
    prompt = _prompt_ids(tokenizer, aligned)
    row = rows[aligned.request_key]
    assert row["input_ids"] == prompt + EXPECTED_GEMMA_STUDENT_IDS + [tokenizer.eos_token_id]
    assert row["labels"] == [-100] * len(prompt) + EXPECTED_GEMMA_STUDENT_IDS + [tokenizer.eos_token_id]
    assert row["kd_ids"] == [[]] * len(prompt) + EXPECTED_GEMMA_KD_IDS + [[]]
    assert row["kd_mask"] == [0] * len(prompt) + [1, 1, 1, 1, 1, 0, 0, 0, 1, 0]
    assert row["kd_logprobs"][len(prompt) + 4] == pytest.approx([-0.4, -1.2, -1.5], abs=1e-3)  # fp16

    row = rows[exact.request_key]
    prompt = _prompt_ids(tokenizer, exact)
    assert row["input_ids"] == prompt + exact.token_ids
    assert row["kd_ids"][len(prompt) :] == exact.top_ids
    assert row["kd_mask"] == [0] * len(prompt) + [1] * len(exact.token_ids)

    build_info = json.loads((kd_dir / "build.json").read_text())
    assert build_info["tokenizer_match"] == {"exact-ids": 1, "aligned-text": 1}
    assert build_info["masked_positions"] == {
        "no-teacher-token-with-same-boundaries": 2,
        "candidates-not-student-tokens": 1,
    }
    assert build_info["kd_ids_dtype"] == "uint16" and build_info["coverage"] == summary.kd_coverage
    assert build_info["dropped"] == {"no-logprobs": 1}
    # per record: the exact-ids one has targets on every answer token, the aligned one on some
    assert build_info["alignment"] == {"exact": 1, "partial": 1, "none": 0}


def test_kd_logprob_step_puts_the_kd_datasets_logprobs_on_a_grid(tmp_path, smollm2_dir, tokenizer):
    aligned = make_record("Say hello.", GEMMA_TEXT, model="gemma-api", logprobs=api_logprobs(GEMMA_ANSWER))
    config = _project(tmp_path, smollm2_dir, tokenizer, [aligned])
    config = config.model_copy(update={"datasets": config.datasets.model_copy(update={"kd_logprob_step": 0.7})})
    build.run(config)
    kd_dir = tmp_path / "outputs" / "tiny" / "datasets" / "kd"
    row = _rows(kd_dir)[aligned.request_key]
    prompt = len(_prompt_ids(tokenizer, aligned))
    # harvested -0.4 and -1.2 rounded to multiples of 0.7 nats; -1.5 is the sampled token's own (id 17): kept
    assert row["kd_ids"][prompt + 4] == [30, 28, 17] and row["labels"][prompt + 4] == 17
    assert row["kd_logprobs"][prompt + 4] == pytest.approx([-0.7, -1.4, -1.5], abs=1e-3)  # float16
    assert json.loads((kd_dir / "build.json").read_text())["kd_logprob_step"] == 0.7


def test_kd_dataset_loads_with_the_datasets_library(tmp_path, smollm2_dir, tokenizer):
    import datasets
    import pyarrow.parquet as pq

    aligned = [
        make_record(f"Say hello {i}.", GEMMA_TEXT, model="gemma-api", logprobs=api_logprobs(GEMMA_ANSWER))
        for i in range(5)
    ]
    config = _project(tmp_path, smollm2_dir, tokenizer, aligned)
    summary = build.run(config)
    kd_dir = tmp_path / "outputs" / "tiny" / "datasets" / "kd"
    cache = str(tmp_path / "hf-cache")

    by_card = datasets.load_dataset(str(kd_dir), cache_dir=cache)
    files = {s: str(kd_dir / "data" / f"{s}-00000-of-00001.parquet") for s in ("train", "validation")}
    by_files = datasets.load_dataset("parquet", data_files=files, cache_dir=cache)
    by_dir = datasets.load_dataset("parquet", data_dir=str(kd_dir / "data"), cache_dir=cache)
    assert {s: len(by_card[s]) for s in by_card} == summary.kd_rows == {"train": 4, "validation": 1}
    assert {s: len(by_files[s]) for s in by_files} == summary.kd_rows
    assert {s: len(by_dir[s]) for s in by_dir} == summary.kd_rows  # the names datasets infers from the files
    features = by_card["train"].features
    assert features["kd_ids"] == datasets.List(datasets.List(datasets.Value("uint16")))
    assert features["kd_logprobs"] == datasets.List(datasets.List(datasets.Value("float16")))
    assert by_card["train"][0]["kd_ids"][-10:] == EXPECTED_GEMMA_KD_IDS + [[]]
    # stored compactly (zstd; the top-k ids and logprobs byte-stream-split, no dictionary), read as plain lists
    meta = pq.ParquetFile(files["train"]).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    for path in ("kd_ids.list.element.list.element", "kd_logprobs.list.element.list.element"):
        assert "BYTE_STREAM_SPLIT" in encodings[path].encodings and encodings[path].compression == "ZSTD"
        assert not any("DICTIONARY" in e for e in encodings[path].encodings)
    assert by_card["train"][0]["kd_logprobs"][-3] == pq.read_table(files["train"])["kd_logprobs"][0][-3].as_py()

    by_files.save_to_disk(str(tmp_path / "on-disk"))
    reloaded = datasets.load_from_disk(str(tmp_path / "on-disk"))
    assert list(reloaded) == ["train", "validation"]
    assert reloaded["validation"][0]["kd_mask"] == by_files["validation"][0]["kd_mask"]

    sft_dir = tmp_path / "outputs" / "tiny" / "datasets" / "sft"
    sft = datasets.load_dataset(str(sft_dir), cache_dir=cache)
    sft_by_dir = datasets.load_dataset("parquet", data_dir=str(sft_dir / "data"), cache_dir=cache)
    sft_files = {s: str(sft_dir / "data" / f"{s}-00000-of-00001.parquet") for s in ("train", "validation")}
    sft_by_files = datasets.load_dataset("parquet", data_files=sft_files, cache_dir=cache)
    assert {s: len(sft[s]) for s in sft} == summary.sft_rows == {"train": 4, "validation": 1}
    assert {s: len(sft_by_dir[s]) for s in sft_by_dir} == summary.sft_rows
    assert {s: len(sft_by_files[s]) for s in sft_by_files} == summary.sft_rows
    sft_by_dir.save_to_disk(str(tmp_path / "sft-on-disk"))
    assert list(datasets.load_from_disk(str(tmp_path / "sft-on-disk"))) == ["train", "validation"]


def test_no_kd_dataset_when_no_position_lines_up(tmp_path, smollm2_dir, tokenizer):
    # Gemma's one " 你" token is three SmolLM2 tokens: " " and two halves of 你.
    answer = [(" 你", -0.1, [(" 你", -0.1)])]
    record = make_record("Say you.", " 你", model="gemma-api", logprobs=api_logprobs(answer))
    config = _project(tmp_path, smollm2_dir, tokenizer, [record])
    stale = tmp_path / "outputs" / "tiny" / "datasets" / "kd" / "data"
    stale.mkdir(parents=True)

    summary = build.run(config)

    assert summary.kd_rows is None and summary.kd_dir is None and summary.kd_coverage == 0.0
    assert summary.kd_skipped_reason == (
        "no answer token got KD targets: the teacher's tokens never line up with the student's "
        "(masked positions: {'no-teacher-token-with-same-boundaries': 1, 'student-token-splits-a-character': 2})"
    )
    assert not stale.parent.exists()
    assert summary.sft_rows == {"train": 1, "validation": 0}
