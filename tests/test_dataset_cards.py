"""The dataset cards, read back with huggingface_hub's DatasetCard and checked against the Parquet files."""

from __future__ import annotations

import pytest

from synthdistill import build
from synthdistill.config import load_config
from synthdistill.dataset_cards import size_category
from tests.training_fixtures import write_kept_project


@pytest.fixture()
def built(tmp_path, tiny_student, tokenizer):
    path = write_kept_project(tmp_path, tiny_student, tokenizer, method="kd")
    pack = tmp_path / "prompts" / "demo" / "pack.yaml"
    pack.write_text(pack.read_text() + "language: [fr, en]\n")
    config = load_config(path)
    return config, build.run(config)


@pytest.mark.parametrize("kind", ["sft", "kd"])
def test_the_card_describes_the_files_as_the_hub_and_datasets_read_them(built, tmp_path, kind):
    import datasets
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard

    config, summary = built
    folder = config.layout.dataset_dir(kind)
    counts = summary.sft_rows if kind == "sft" else summary.kd_rows
    assert counts == {"train": 8, "validation": 2}

    card = DatasetCard.load(folder / "README.md")  # a local file: nothing is fetched

    data = card.data
    title = "SFT" if kind == "sft" else "Knowledge-distillation (top-k logprobs)"
    assert data.pretty_name == f"tiny: {title} dataset from HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data.language == ["en", "fr"]
    assert data.license == "cc0-1.0" and data.size_categories == ["n<1K"]
    assert data.annotations_creators == ["machine-generated"]
    assert data.configs == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "data/train-*.parquet"},
                {"split": "validation", "path": "data/validation-*.parquet"},
            ],
        }
    ]
    info = DatasetInfosDict.from_dataset_card_data(data)["default"]
    loaded = datasets.load_dataset(
        "parquet", data_dir=str(folder / "data"), cache_dir=str(tmp_path / "cache"), verification_mode="no_checks"
    )
    assert info.features == loaded["train"].features  # every column, with its Parquet type
    assert {name: split.num_examples for name, split in info.splits.items()} == counts
    assert info.download_size == sum(p.stat().st_size for p in config.layout.split_files(kind))
    assert info.dataset_size == sum(split.num_bytes for split in info.splits.values())
    # the card's split sizes are what `datasets` itself measures: its strictest check passes
    by_card = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache2"), verification_mode="all_checks")
    assert {split: len(rows) for split, rows in by_card.items()} == counts
    assert f"Dataset name: `tiny-{kind}`" in card.text


def test_size_categories_follow_the_hubs_bounds():
    assert [size_category(n) for n in (0, 999, 1000, 12_345, 100_000, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "100K<n<1M",
        "1M<n<10M",
    ]


def test_a_card_without_declared_languages_says_so(tmp_path, tiny_student, tokenizer):
    from huggingface_hub import DatasetCard

    config = load_config(write_kept_project(tmp_path, tiny_student, tokenizer, method="sft"))
    build.run(config)
    card = DatasetCard.load(config.layout.dataset_card("sft"))
    assert card.data.language is None
    assert "Languages: not declared by the packs (pack.yaml `language`)." in card.text
