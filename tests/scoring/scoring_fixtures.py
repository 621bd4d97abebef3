"""Samples to score and projects aimed at the loopback server, for the scoring tests."""

from __future__ import annotations

import yaml

from synthdistill.config import load_config
from synthdistill.records import Message
from synthdistill.scoring import SampleToScore
from tests.harvest_fixtures import question, write_project


def sample_text(i: int, s: int) -> str:
    return f" The student says {i} plus {i} is {2 * i + s}."


def samples(n: int, per_prompt: int = 1, checkpoint: str = "round-0001", ended: bool = False) -> list[SampleToScore]:
    return [
        SampleToScore(
            checkpoint=checkpoint,
            prompt_id=f"p{i}",
            sample_index=s,
            messages=[Message(role="user", content=question(i))],
            text=sample_text(i, s),
            ended=ended,
        )
        for i in range(n)
        for s in range(per_prompt)
    ]


def scoring_project(root, base_url, *, teacher: dict | None = None, harvest: dict | None = None, **kwargs):
    """A project aimed at the loopback server (vLLM dialect unless `teacher` says otherwise); its DistillConfig."""
    path = write_project(root, base_url, 2, teacher={"api_style": "vllm", **(teacher or {})}, harvest=harvest, **kwargs)
    return load_config(path)


def refuse_training_use(root) -> None:
    """Make the project's policy forbid training on the teacher's outputs."""
    policy = root / "policies" / "fake.yaml"
    spec = yaml.safe_load(policy.read_text())
    spec["outputs_for_training"] = "forbidden"
    policy.write_text(yaml.safe_dump(spec, sort_keys=False))
