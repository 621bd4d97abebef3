"""Teacher backends behind one protocol: ask for a completion, get text and top-k logprobs.

Teachers know nothing of the store, the filters or training. They raise
`RetryableTeacherError` for transient faults (the harvester retries) and
`TeacherAuthError` / `TeacherError` for faults retrying cannot fix.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from synthdistill.records import Completion, TeacherRequest


@runtime_checkable
class Teacher(Protocol):
    backend: str
    model: str

    def endpoint_for(self, request: TeacherRequest) -> str | None:
        """Host the request goes to (recorded in provenance); None in-process."""

    async def complete(self, request: TeacherRequest) -> Completion:
        """Answer one request (one sample of one prompt)."""

    async def aclose(self) -> None:
        """Release connections / models."""


def make_teacher(config, api_key: str | None = None, base_dir=None) -> Teacher:
    """Build the teacher backend named by a TeacherConfig (`base_dir` resolves relative model paths)."""
    if config.backend == "transformers":
        from synthdistill.teachers.transformers_local import TransformersTeacher

        return TransformersTeacher(config, base_dir=base_dir)
    if config.backend == "openai":
        from synthdistill.teachers.openai_http import OpenAIHTTPTeacher

        return OpenAIHTTPTeacher(config, api_key=api_key)
    if config.backend == "openai-batch":
        # the harvester drives this backend batch by batch (teachers.openai_batch.run_batch)
        from synthdistill.teachers.openai_batch import OpenAIBatchClient

        return OpenAIBatchClient(config, api_key=api_key)
    from synthdistill.errors import ConfigError

    raise ConfigError(f"teacher backend '{config.backend}' is not available yet in this version")
