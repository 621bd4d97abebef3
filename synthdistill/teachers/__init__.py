"""Teacher backends behind two protocols: ask for completions, get text and top-k logprobs.

A `Teacher` answers one request per call (`complete`); a `BatchTeacher` answers many
at once, asynchronously (`submit`, `poll`, `collect`: the OpenAI Batch API). The
harvester drives either kind and keeps the ledger, the budget and the tallies.

Teachers know nothing of the store, the filters or training. They raise
`RetryableTeacherError` for transient faults (the harvester retries) and
`TeacherAuthError` / `TeacherError` for faults retrying cannot fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, runtime_checkable

from synthdistill.errors import ConfigError
from synthdistill.records import BatchFailure, Completion, TeacherRequest
from synthdistill.teachers.transformers_local import TransformersTeacher


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


@runtime_checkable
class BatchTeacher(Protocol):
    """A teacher that answers requests in batches: submit them, poll until the batch ends, collect the answers."""

    backend: str
    model: str

    def endpoint_for(self, request: TeacherRequest) -> str | None:
        """Host the request goes to (recorded in provenance)."""

    def batch_files(self, requests: list[TeacherRequest]) -> Iterator[tuple[list[TeacherRequest], bytes | None]]:
        """The requests cut into input files within the provider's limits, one (requests, file) at a time;
        a request too large for any file comes alone with None."""

    async def submit(
        self, data: bytes, intent_id: str, on_uploaded: Callable[[str], None] | None = None
    ) -> tuple[str, dict]:
        """Upload one input file and create its batch, both tagged with `intent_id`; (input file id, batch object)."""

    async def resume(self, intent_id: str, input_file_id: str | None) -> tuple[str, dict] | None:
        """The batch of an intent a killed run may have submitted (found by its tag), created from its uploaded
        file when only the upload happened; None when neither reached the provider."""

    async def poll(self, batch_id: str, on_status: Callable[[str], None] | None = None) -> dict:
        """Wait until the batch ends (`on_status` hears every status seen); the last batch object."""

    async def collect(
        self, batch: dict, requests: Mapping[str, TeacherRequest]
    ) -> dict[str, Completion | BatchFailure]:
        """The ended batch's answer or failure for each of `requests` (by request key) that it answered.

        A request the batch never answered has no entry; lines of requests not in `requests` are skipped.
        """

    async def aclose(self) -> None:
        """Release connections."""


def make_teacher(config, api_key: str | None = None, project_dir=None) -> Teacher | BatchTeacher:
    """Build the teacher backend named by a TeacherConfig (`project_dir` resolves relative model paths)."""
    if config.backend == "transformers":
        return TransformersTeacher(config, project_dir=project_dir)
    if config.backend == "openai":
        from synthdistill.teachers.openai_http import OpenAIHTTPTeacher

        return OpenAIHTTPTeacher(config, api_key=api_key)
    if config.backend == "openai-batch":
        from synthdistill.teachers.openai_batch import OpenAIBatchClient

        return OpenAIBatchClient(config, api_key=api_key)
    raise ConfigError(f"teacher backend '{config.backend}' is not available yet in this version")
