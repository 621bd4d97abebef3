"""Real tiny students and real kept records, for the build → train → eval tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from synthdistill.config import load_config
from synthdistill.policy import gate, write_decision
from tests.filtered_fixtures import write_kept
from tests.records_fixtures import make_record

ANSWERS = [
    ("Name a colour.", "Blue is a calm colour."),
    ("Name a fruit.", "An apple is a sweet fruit."),
    ("Name an animal.", "A cat is a small animal."),
    ("Name a planet.", "Mars is a red planet."),
    ("Name a tree.", "An oak is a tall tree."),
    ("Name a metal.", "Iron is a strong metal."),
    ("Name a season.", "Summer is a warm season."),
    ("Name a drink.", "Tea is a hot drink."),
    ("Name a bird.", "A robin is a small bird."),
    ("Name a flower.", "A rose is a red flower."),
]


def write_tiny_llama(
    folder: Path, tokenizer_dir: Path, layers: int = 4, hidden: int = 64, tie: bool = True, seed: int = 0
) -> Path:
    """A randomly initialised Llama (default: 4 layers, hidden 64, tied head) with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def load_weights(path: Path) -> dict:
    """The tensors of a safetensors file, by name."""
    from safetensors.torch import load_file

    return load_file(str(path))


def teacher_logprobs(tokenizer, text: str, k: int = 4) -> dict:
    """Logprob fields as the in-process teacher stores them: the answer's ids (+ eos) and a top-k."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    top_ids = [[token] + [(token + j * 7) % len(tokenizer) for j in range(1, k)] for token in ids]
    top_logprobs = [[-0.2, -2.5, -3.0, -3.5][:k] for _ in ids]
    return {
        "tokens": [tokenizer.decode([t]) for t in ids],
        "token_ids": ids,
        "token_logprobs": [-0.2] * len(ids),
        "top_tokens": [[tokenizer.decode([t]) for t in row] for row in top_ids],
        "top_ids": top_ids,
        "top_logprobs": top_logprobs,
    }


def write_kept_project(root: Path, student_dir: Path, tokenizer, *, method: str = "kd", **student) -> Path:
    """A project whose run folder holds a filter stage's output (kept.parquet); returns distill.yaml."""
    records = [
        make_record(q, a, model="HuggingFaceTB/SmolLM2-135M-Instruct", logprobs=teacher_logprobs(tokenizer, a))
        for q, a in ANSWERS
    ]
    config = {
        "name": "tiny",
        "teacher": {"backend": "transformers", "model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        "harvest": {"packs": ["prompts/demo"], "top_logprobs": 4},
        "datasets": {"eval_fraction": 0.2, "seed": 0},
        "student": {
            "model": str(student_dir),
            "method": method,
            "epochs": 1,
            "max_steps": 12,
            "learning_rate": 1e-2,
            "batch_size": 4,
            "max_length": 64,
            **student,
        },
    }
    pack = root / "prompts" / "demo"
    pack.mkdir(parents=True)
    (pack / "pack.yaml").write_text(
        "name: demo\nversion: 1.0.0\nlicence: CC0-1.0\nsource: tests\ntemplate: '{{ q }}'\nrows: rows.jsonl\n"
    )
    (pack / "rows.jsonl").write_text("".join(json.dumps({"q": q}) + "\n" for q, _ in ANSWERS))
    path = root / "distill.yaml"
    path.write_text(yaml.safe_dump(config))
    kept = root / "outputs" / "tiny" / "filtered"
    kept.mkdir(parents=True)
    write_kept(root / "outputs" / "tiny", records)
    (kept / "report.json").write_text(json.dumps({"input": len(records), "kept": len(records), "steps": []}))
    # what the harvest would have recorded: the gate's real decision on this teacher
    loaded = load_config(path)
    write_decision(loaded.layout, gate(loaded))
    return path


# Gemma's turn markers, as a teacher with a chat template of its own renders a conversation
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def write_gemma_teacher(folder: Path) -> Path:
    """A tiny random Llama (3 layers, width 32) with Gemma 3's tokenizer and a chat template: another tokenizer."""
    from transformers import AutoTokenizer

    from synthdistill.model_store import resolve_tokenizer

    write_tiny_llama(folder, resolve_tokenizer("google/gemma-3-270m"), layers=3, hidden=32, seed=2)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = GEMMA_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder
