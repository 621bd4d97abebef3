"""Provenance and dataset cards (Hub YAML metadata + a body a reviewer can read).

The metadata is what the Hub and `datasets` read: `pretty_name`, `language` (the packs'),
`license`, `dataset_info` (features, bytes and rows per split, generated from the Parquet files
the way `push_to_hub` writes it) and `configs` whose `data_files` name the splits `train` and
`validation`. A dataset is named `<run>-<kind>` (quickstart-kd): the name the student's model
card lists under `datasets:` and the ML-BOM gives it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from synthdistill.config import DistillConfig
from synthdistill.digests import file_sha256
from synthdistill.filter_stage import read_report
from synthdistill.packs import configured_pack_infos
from synthdistill.policy import Decision, obligations_markdown, override_lines
from synthdistill.pricing import describe_cost, teacher_quote
from synthdistill.records import HarvestRecord
from synthdistill.safe_write import write_text

# SPDX → Hugging Face `license:` identifiers for the licences packs commonly use.
HF_LICENCES = {
    "CC0-1.0": "cc0-1.0",
    "CC-BY-4.0": "cc-by-4.0",
    "CC-BY-SA-4.0": "cc-by-sa-4.0",
    "Apache-2.0": "apache-2.0",
    "MIT": "mit",
    "ODC-By-1.0": "odc-by",
    "LicenseRef-Gemma": "gemma",
}


@dataclass
class RecordFacts:
    """What provenance needs of the built records, added up batch by batch (no record is kept)."""

    records: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    models_answered: set[str] = field(default_factory=set)
    endpoints: set[str] = field(default_factory=set)

    def add(self, records: list[HarvestRecord]) -> None:
        self.records += len(records)
        self.tokens_in += sum(r.usage.prompt_tokens for r in records)
        self.tokens_out += sum(r.usage.completion_tokens for r in records)
        self.models_answered.update(r.model_answered for r in records)
        self.endpoints.update(r.endpoint for r in records if r.endpoint)


def provenance(config: DistillConfig, facts: RecordFacts, decision: Decision) -> dict[str, Any]:
    """What a dataset was made from: teacher, decision, the gated use, packs, funnel; saved as provenance.json."""
    packs = [
        {
            "name": pack.name,
            "version": pack.version,
            "licence": pack.licence,
            "source": pack.source,
            "sha256": pack.content_sha256(),
            "language": list(pack.spec.language),
        }
        for pack in configured_pack_infos(config)
    ]
    teacher = config.teacher
    price, source = teacher_quote(teacher.backend, teacher.model, teacher.base_urls, config.project_dir)
    tokens = (facts.tokens_in, facts.tokens_out)
    return {
        "teacher": {
            "backend": teacher.backend,
            "model": teacher.model,
            "models_answered": sorted(facts.models_answered),
            "endpoints": sorted(facts.endpoints),
            # what these answers cost at the price table's price; None (never 0) when no price is known
            "cost_usd": round(price.cost(*tokens), 6) if price is not None else None,
            "price_source": source,
        },
        "decision": decision.model_dump(mode="json"),
        "use": decision.use,  # the use the gate decided for, not whatever the config says now
        "packs": packs,
        "funnel": read_report(config),
        "config_sha256": file_sha256(config.path),
        "records": facts.records,
    }


def _hf_licence(packs: list[dict]) -> dict[str, str]:
    licences = sorted({p["licence"] for p in packs})
    if len(licences) == 1 and licences[0] in HF_LICENCES:
        return {"license": HF_LICENCES[licences[0]]}
    return {"license": "other", "license_name": " AND ".join(licences) or "unknown"}


def size_category(rows: int) -> str:
    """The Hub's size category of a row count (n<1K, 1K<n<10K, …, n>1T)."""
    bounds = [(10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M")]
    bounds += [(10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**12, "1B<n<1T")]
    return next((label for bound, label in bounds if rows < bound), "n>1T")


def dataset_name(run: str, kind: str) -> str:
    """A built dataset's name: `<run>-<kind>`, in its card, the student's card and the ML-BOM."""
    return f"{run}-{kind}"


def languages(packs: list[dict]) -> list[str]:
    """The languages the packs declare (pack.yaml `language`), sorted."""
    return sorted({code for p in packs for code in p.get("language") or []})


def dataset_info(files: dict[str, Any]) -> dict[str, Any]:
    """The card's `dataset_info` (features, splits, sizes) from the split files, as `push_to_hub` writes it."""
    import pyarrow.parquet as pq
    from datasets import DatasetInfo, Features, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.splits import SplitDict
    from huggingface_hub import DatasetCardData

    splits, features, download, total = SplitDict(), None, 0, 0
    for split, paths in files.items():
        size = rows = 0
        for path in paths:
            parquet = pq.ParquetFile(path)
            features = features or Features.from_arrow_schema(parquet.schema_arrow)
            rows += parquet.metadata.num_rows
            size += sum(parquet.metadata.row_group(i).total_byte_size for i in range(parquet.metadata.num_row_groups))
            download += path.stat().st_size
        splits.add(SplitInfo(name=split, num_bytes=size, num_examples=rows))
        total += size
    info = DatasetInfo(features=features, splits=splits, download_size=download, dataset_size=total)
    data = DatasetCardData()
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data.to_dict()["dataset_info"]


def write_card(
    kind: str, config: DistillConfig, decision: Decision, info: dict[str, Any], counts: dict[str, int]
) -> None:
    """README.md with Hub metadata, plus provenance.json, in a dataset folder."""
    layout = config.layout
    layout.dataset_dir(kind).mkdir(parents=True, exist_ok=True)
    write_text(layout.dataset_provenance(kind), json.dumps(info, indent=2, default=str) + "\n", inside=config.run_dir)
    teacher = info["teacher"]
    title = "SFT" if kind == "sft" else "Knowledge-distillation (top-k logprobs)"
    langs = languages(info["packs"])
    metadata = {
        "pretty_name": f"{config.name}: {title} dataset from {teacher['model']}",
        **({"language": langs} if langs else {}),
        **_hf_licence(info["packs"]),
        "annotations_creators": ["machine-generated"],
        "language_creators": ["machine-generated"],
        "source_datasets": [f"synthdistill-pack:{p['name']}@{p['version']}" for p in info["packs"]],
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "distillation", "synthdistill", f"{kind}-dataset"],
        "size_categories": [size_category(sum(counts.values()))],
        "dataset_info": dataset_info({s: layout.split_shards(kind, s) for s in counts}),
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": layout.split_pattern(s)} for s in counts],
            }
        ],
    }
    funnel = info.get("funnel") or {}
    body = [
        f"# {config.name}: {title} dataset",
        "",
        f"Machine-generated by the teacher `{teacher['model']}` ({teacher['backend']} backend; "
        f"answered as {', '.join(teacher['models_answered']) or 'n/a'}) with synthdistill. "
        f"What the teacher charged for these answers: {describe_cost(teacher['cost_usd'], teacher['price_source'])}.",
        "",
        f"Dataset name: `{dataset_name(config.name, kind)}` (the student's model card lists it under `datasets:`). "
        f'Load it with `datasets.load_dataset("parquet", data_dir="data")` from this folder: splits '
        "`train` and `validation` (held out by prompt).",
        "",
        *([] if langs else ["Languages: not declared by the packs (pack.yaml `language`).", ""]),
        *[line + "\n" for line in override_lines(decision)],
        "| split | rows |",
        "|---|---|",
        *[f"| {split} | {n} |" for split, n in counts.items()],
        "",
        "## Prompts",
        "",
        *[f"- pack `{p['name']}` {p['version']}, licence {p['licence']}, source: {p['source']}" for p in info["packs"]],
        "",
        "## Filtering",
        "",
        f"{funnel.get('input', '?')} harvested → {funnel.get('kept', '?')} kept.",
        *[f"- `{step['name']}`: dropped {step['dropped']} {step['reasons'] or ''}" for step in funnel.get("steps", [])],
        "",
        *([f"## Reasoning traces\n\n{info['reasoning']}\n"] if info.get("reasoning") else []),
        obligations_markdown(decision),
    ]
    if kind == "kd":
        kd = info.get("kd", {})
        body += [
            "## KD targets",
            "",
            f"Top-{kd.get('top_k')} teacher logprobs per answer token ({kd.get('logprob_mode')}), "
            f"tokenizer match: {kd.get('tokenizer_match')}, coverage {kd.get('coverage')}.",
            *(
                [f"Reasoning traces: coverage by part {kd['coverage_by_part']} (trace and answer tokens with targets)."]
                if kd.get("coverage_by_part")
                else []
            ),
            *(_embedding_lines(kd["teacher_embeddings"]) if kd.get("teacher_embeddings") else []),
            "",
        ]
    text = "---\n" + yaml.safe_dump(metadata, sort_keys=False) + "---\n\n" + "\n".join(body).rstrip() + "\n"
    write_text(layout.dataset_card(kind), text, inside=config.run_dir)


def _embedding_lines(note: dict[str, Any]) -> list[str]:
    """The card's words on the `teacher_embedding` column (harvest.embeddings)."""
    embedded = "the answer" if note["input"] == "answer" else "the prompt, then the answer"
    return [
        "",
        f"`{note['column']}`: the teacher's embedding of {embedded} from `{note['model']}` "
        f"({note['dimensions']} float32 numbers; {note['rows_with']} rows have one, {note['rows_without']} are null), "
        "the teacher side of relational KD with `student.kd.relations.source: embeddings`.",
    ]


def write_on_policy_card(config: DistillConfig, summary: dict[str, Any], decision: Decision | None) -> None:
    """The dataset card of an on-policy run's scored samples (student/on-policy-samples.jsonl), beside them."""
    layout = config.layout
    info = summary.get("on_policy") or {}
    packs = [
        {
            "name": p.name,
            "version": p.version,
            "licence": p.licence,
            "source": p.source,
            "language": list(p.spec.language),
        }
        for p in configured_pack_infos(config)
    ]
    lines = layout.on_policy_samples.read_text().splitlines() if layout.on_policy_samples.exists() else []
    langs = languages(packs)
    endpoints = ", ".join(info.get("scoring_endpoints") or []) or f"in-process (`{config.teacher.backend}` backend)"
    metadata = {
        "pretty_name": f"{config.name}: the student's on-policy samples, scored by {config.teacher.model}",
        **({"language": langs} if langs else {}),
        **_hf_licence(packs),
        "annotations_creators": ["machine-generated"],
        "language_creators": ["machine-generated"],
        "source_datasets": [f"synthdistill-pack:{p['name']}@{p['version']}" for p in packs],
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "distillation", "synthdistill", "on-policy-dataset"],
        "size_categories": [size_category(len(lines))],
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": layout.on_policy_samples.name}]}
        ],
    }
    body = [
        f"# {config.name}: on-policy samples",
        "",
        f"The student's own answers to training prompts, sampled during on-policy distillation and scored "
        f"token by token by the teacher `{config.teacher.model}` ({config.teacher.backend} backend); the student "
        f"was trained to match the teacher's top-{info.get('scoring_top_k')} "
        f"distribution on them (generalised JSD, beta {info.get('beta')}). One line per sample in "
        f"`{layout.on_policy_samples.name}`: the round, the student checkpoint that sampled it, the prompt, the text, "
        "the teacher tokens scored, the student tokens that got teacher targets, how they were mapped, the "
        "scoring endpoint and whether it was trained on. The teacher's logprobs are in the scores ledger "
        f"(`{layout.scores.relative_to(layout.run_dir).as_posix()}`), not in this file.",
        "",
        "| | |",
        "|---|---|",
        f"| rounds | {info.get('rounds')} × {info.get('steps_per_round')} steps (lambda {info.get('lambda')}: "
        f"{(info.get('batches') or {}).get('on-policy', 0)} on-policy and {(info.get('batches') or {}).get('offline', 0)} "
        "offline KD batches) |",
        f"| sampling | {info.get('samples_per_prompt')} per prompt, {info.get('prompts_per_round')} prompts per round, "
        f"temperature {info.get('temperature')}, at most {info.get('max_new_tokens')} tokens |",
        f"| samples | {info.get('samples_scored')} scored, {info.get('samples_trained')} with teacher targets; "
        f"{len(lines)} lines in this file |",
        f"| teacher tokens scored | {info.get('teacher_tokens_scored')} answer, {info.get('prompt_tokens_scored')} prompt; "
        f"scoring requests sent: {info.get('scoring_requests_sent')} |",
        f"| student tokens with teacher targets | {summary.get('teacher_target_share')} |",
        f"| scoring endpoint(s) | {endpoints} |",
        f"| gate decision | {info.get('decision')} (policy `{info.get('policy_id')}`) |",
        f"| student checkpoints | {', '.join(f'`{c}`' for c in info.get('checkpoints') or [])} |",
        "",
        "## Prompts",
        "",
        *[f"- pack `{p['name']}` {p['version']}, licence {p['licence']}, source: {p['source']}" for p in packs],
        "",
        *([obligations_markdown(decision)] if decision is not None else []),
    ]
    text = "---\n" + yaml.safe_dump(metadata, sort_keys=False) + "---\n\n" + "\n".join(body).rstrip() + "\n"
    write_text(layout.on_policy_card, text, inside=config.run_dir)
