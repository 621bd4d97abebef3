"""The build in batches, shards and worker processes: the same rows, in the same order, as one pass."""

from __future__ import annotations

from synthdistill import build, build_shards
from synthdistill.config import load_config
from synthdistill.filtered_io import RecordsWriter
from synthdistill.held_out import HeldOut
from synthdistill.run_layout import RunLayout
from tests.records_fixtures import make_record
from tests.training_fixtures import teacher_logprobs, write_kept_project

ANSWERS = [f"Colour number {i} is a calm one." for i in range(14)]


def _project(tmp_path, smollm2_dir, tokenizer):
    """Kept records in four row groups (as four filter batches write them)."""
    path = write_kept_project(tmp_path, smollm2_dir, tokenizer, method="kd", max_length=256)
    records = [
        make_record(f"Name colour {i}.", text, model="smollm2", logprobs=teacher_logprobs(tokenizer, text))
        for i, text in enumerate(ANSWERS)
    ]
    with RecordsWriter(RunLayout(tmp_path / "outputs" / "tiny").kept) as writer:
        for start in range(0, len(records), 4):
            writer.write(records[start : start + 4])
    return load_config(path), records


def _files(config) -> dict[str, bytes]:
    data = config.layout.datasets_dir
    return {p.relative_to(data).as_posix(): p.read_bytes() for p in sorted(data.rglob("data/*.parquet"))}


def test_workers_write_the_same_shards_with_rows_in_record_order(tmp_path, smollm2_dir, tokenizer, monkeypatch):
    import datasets
    import pyarrow.parquet as pq

    monkeypatch.setattr(build_shards, "SHARD_ROWS", 4)
    monkeypatch.setattr(build_shards, "WRITE_ROWS", 3)
    config, records = _project(tmp_path, smollm2_dir, tokenizer)
    one = build.run(config, workers=1)
    files = _files(config)
    # the split is by prompt, as before: eval_fraction 0.2 of 14 prompts
    held_out = HeldOut.of_prompts([r.prompt_id for r in records], config.datasets.eval_fraction, config.datasets.seed)
    assert one.sft_rows == one.kd_rows == {"train": 11, "validation": 3} and held_out.count == 3
    assert sorted(files) == [
        *[f"kd/data/train-0000{i}-of-00003.parquet" for i in range(3)],
        "kd/data/validation-00000-of-00001.parquet",
        *[f"sft/data/train-0000{i}-of-00003.parquet" for i in range(3)],
        "sft/data/validation-00000-of-00001.parquet",
    ]
    layout = config.layout
    for kind in ("sft", "kd"):
        keys = [
            k for p in layout.split_shards(kind, "train") for k in pq.read_table(p).column("request_key").to_pylist()
        ]
        assert keys == [r.request_key for r in records if r.prompt_id not in held_out]  # in record order

    assert build.run(config, workers=2) == one
    assert _files(config) == files  # byte for byte

    cache = str(tmp_path / "hf-cache")
    kd_dir = layout.dataset_dir("kd")
    by_card = datasets.load_dataset(str(kd_dir), cache_dir=cache)
    by_dir = datasets.load_dataset("parquet", data_dir=str(kd_dir / "data"), cache_dir=cache)
    shards = {s: [str(p) for p in layout.split_shards("kd", s)] for s in ("train", "validation")}
    by_files = datasets.load_dataset("parquet", data_files=shards, cache_dir=cache)
    for loaded in (by_card, by_dir, by_files):
        assert {s: len(loaded[s]) for s in loaded} == one.kd_rows
    assert by_card["train"]["request_key"] == [r.request_key for r in records if r.prompt_id not in held_out]
