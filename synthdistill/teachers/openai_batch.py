"""The OpenAI Batch API as a `BatchTeacher`: JSONL upload, poll, collect by `custom_id`.

    batch_files: requests → JSONL files (one chat body per line, `custom_id` = request key), each
            within teacher.batch_max_requests lines and teacher.batch_max_bytes bytes
    submit: one file, tagged with the harvester's intent id → POST /files (purpose=batch, named
            synthdistill-<intent>.jsonl) → POST /batches (metadata {synthdistill_intent: <intent>})
    resume: a killed run's intent → GET /batches (listed, matched by metadata), else GET /files
            (matched by name) → POST /batches from that file, else None (nothing reached the provider)
    poll:   GET /batches/{id} with a growing interval until completed / failed / expired / cancelled
    collect: GET /files/{output_file_id}/content and /files/{error_file_id}/content
            → each line's parsed answer (a Completion) or its failure (an error line, an unreadable answer)

This module knows nothing of the ledger, the budget or the tallies: the harvester
(harvest_batches.py) reserves the budget, records an intent before each submission and
the batch id after it (so a killed run resumes the batch instead of resubmitting it), turns
each answer into a HarvestRecord and fails the requests a finished batch never answered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx

from synthdistill.errors import ConfigError, TeacherAuthError, TeacherError
from synthdistill.records import BatchFailure, Completion, TeacherRequest
from synthdistill.teachers.openai_dialects import KnobWarnings, build_chat_body, parse_answer
from synthdistill.teachers.openai_http import endpoint_host, error_message

# seconds between polls: the first wait, then ×1.5 per poll up to the cap (tests shrink them)
POLL_INTERVAL_S = 10.0
MAX_POLL_INTERVAL_S = 300.0
TERMINAL = ("completed", "failed", "expired", "cancelled")
CHAT_URL = "/v1/chat/completions"
# transient faults of the Batch API's own calls (upload, create, poll, download), retried in place
TRANSIENT_STATUSES = (408, 409, 429, 500, 502, 503, 504)
CALL_RETRIES = 5
INTENT_KEY = "synthdistill_intent"  # the batch metadata key holding the harvester's intent id
LIST_PAGE = 100  # batches per GET /batches page (the API's largest)


def batch_line(model: str, request: TeacherRequest) -> dict[str, Any]:
    """One JSONL line of a batch input file: the chat body the openai backend would send."""
    return {
        "custom_id": request.request_key,
        "method": "POST",
        "url": CHAT_URL,
        "body": build_chat_body(model, request, "openai"),
    }


def intent_file_name(intent_id: str) -> str:
    """The uploaded input file's name: how a resumed run finds a file whose batch was never created."""
    return f"synthdistill-{intent_id}.jsonl"


def jsonl_lines(text: str) -> list[dict]:
    """The JSON objects of a JSONL file (blank and unreadable lines skipped)."""
    lines = []
    for raw in text.splitlines():
        try:
            value = json.loads(raw) if raw.strip() else None
        except ValueError:
            continue
        if isinstance(value, dict):
            lines.append(value)
    return lines


def line_error(line: dict) -> tuple[str, str] | None:
    """(kind, message) of a line that did not answer, or None for a 200 answer."""
    error = line.get("error")
    response = line.get("response") if isinstance(line.get("response"), dict) else {}
    status = response.get("status_code")
    if isinstance(error, dict):
        return str(error.get("code") or "batch-error"), str(error.get("message") or error)[:500]
    if status != 200:
        body = response.get("body")
        detail = body.get("error") if isinstance(body, dict) else None
        message = detail.get("message") if isinstance(detail, dict) else str(body)[:200]
        return str(status or "batch-error"), f"HTTP {status} in batch: {message}"
    return None


class OpenAIBatchClient:
    """A BatchTeacher over the Batch API calls (files, batches), with the key only in the Authorization header."""

    backend = "openai-batch"

    def __init__(self, config, api_key: str | None = None):
        if not config.base_urls:
            raise ConfigError("teacher.base_url is empty: the openai-batch backend needs one URL")
        self.config = config
        self.model: str = config.model
        self.base_url = config.base_urls[0].rstrip("/")
        self._api_key = api_key or None
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(config.timeout_s), trust_env=False)
        self.knob_warnings = KnobWarnings()  # thinking knobs the Batch API has no field for

    def __repr__(self) -> str:
        return f"OpenAIBatchClient(model={self.model!r}, endpoint={endpoint_host(self.base_url)}, key={'set' if self._api_key else 'none'})"

    def endpoint_for(self, request: TeacherRequest) -> str:
        return endpoint_host(self.base_url)

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key else text

    async def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One API call; transient faults are retried with backoff, the rest raise TeacherError."""
        host = endpoint_host(self.base_url)
        for attempt in range(CALL_RETRIES + 1):
            last = attempt == CALL_RETRIES
            try:
                response = await self._client.request(method, f"{self.base_url}{path}", **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise TeacherError(
                        f"Batch API at {host} unreachable: {type(exc).__name__}: {self._scrub(str(exc))}"
                    ) from None
            else:
                if 200 <= response.status_code < 300:
                    return response
                message = self._scrub(error_message(response))
                if response.status_code in (401, 403):
                    hint = (
                        f"check the API key in the environment variable {self.config.api_key_env}"
                        if self.config.api_key_env
                        else "set teacher.api_key_env to the NAME of the variable holding it"
                    )
                    raise TeacherAuthError(
                        f"Batch API at {host} refused the request (HTTP {response.status_code}): {message}; {hint}"
                    )
                if response.status_code not in TRANSIENT_STATUSES or last:
                    raise TeacherError(
                        f"Batch API at {host}: {method} {path} failed (HTTP {response.status_code}): {message}"
                    )
            await asyncio.sleep(min(POLL_INTERVAL_S, 2.0**attempt * 0.1))
        raise AssertionError("unreachable")

    def batch_files(self, requests: list[TeacherRequest]) -> Iterator[tuple[list[TeacherRequest], bytes | None]]:
        """The requests as JSONL input files, in order, each within the configured line and byte limits.

        One file at a time (a file is up to 200 MB); a request whose line alone passes the byte limit
        comes alone with None (the provider would refuse the whole file).
        """
        max_lines, max_bytes = self.config.batch_max_requests, self.config.batch_max_bytes
        chunk: list[TeacherRequest] = []
        lines: list[bytes] = []
        size = 0
        for request in requests:
            self.knob_warnings.note(request.sampling, "openai", "chat")
            line = (json.dumps(batch_line(self.model, request), ensure_ascii=False) + "\n").encode("utf-8")
            if len(line) > max_bytes:
                yield [request], None
                continue
            if chunk and (len(chunk) == max_lines or size + len(line) > max_bytes):
                yield chunk, b"".join(lines)
                chunk, lines, size = [], [], 0
            chunk.append(request)
            lines.append(line)
            size += len(line)
        if chunk:
            yield chunk, b"".join(lines)

    async def submit(
        self, data: bytes, intent_id: str, on_uploaded: Callable[[str], None] | None = None
    ) -> tuple[str, dict]:
        """Upload one input file and create its batch, both tagged with `intent_id`; (input file id, batch object)."""
        upload = await self._call(
            "POST",
            "/files",
            data={"purpose": "batch"},
            files={"file": (intent_file_name(intent_id), data, "application/jsonl")},
        )
        file_id = upload.json()["id"]
        if on_uploaded is not None:
            on_uploaded(file_id)
        return file_id, await self._create(file_id, intent_id)

    async def _create(self, file_id: str, intent_id: str) -> dict:
        body = {
            "input_file_id": file_id,
            "endpoint": CHAT_URL,
            "completion_window": "24h",
            "metadata": {INTENT_KEY: intent_id},
        }
        return (await self._call("POST", "/batches", json=body)).json()

    async def resume(self, intent_id: str, input_file_id: str | None) -> tuple[str, dict] | None:
        """The batch a killed run created for `intent_id` (listed, matched by metadata); else one created now from
        its uploaded file (`input_file_id`, or listed and matched by name); None when nothing reached the provider."""
        batch = await self._find_batch(intent_id)
        if batch is not None:
            return batch.get("input_file_id") or input_file_id or "", batch
        file_id = input_file_id or await self._find_file(intent_id)
        if file_id is None:
            return None
        return file_id, await self._create(file_id, intent_id)

    async def _find_batch(self, intent_id: str) -> dict | None:
        after = None
        while True:
            params = {"limit": LIST_PAGE, **({"after": after} if after else {})}
            page = (await self._call("GET", "/batches", params=params)).json()
            batches = page.get("data") or []
            for batch in batches:
                if (batch.get("metadata") or {}).get(INTENT_KEY) == intent_id:
                    return batch
            if not page.get("has_more") or not batches:
                return None
            after = page.get("last_id") or batches[-1].get("id")

    async def _find_file(self, intent_id: str) -> str | None:
        name, after = intent_file_name(intent_id), None
        while True:
            params = {"purpose": "batch", **({"after": after} if after else {})}
            page = (await self._call("GET", "/files", params=params)).json()
            files = page.get("data") or []
            for item in files:
                if item.get("filename") == name and item.get("purpose", "batch") == "batch":
                    return item.get("id")
            if not page.get("has_more") or not files:
                return None
            after = page.get("last_id") or files[-1].get("id")

    async def poll(self, batch_id: str, on_status: Callable[[str], None] | None = None) -> dict:
        """Poll with a growing interval until the batch reaches a terminal status; the last batch object."""
        interval = POLL_INTERVAL_S
        while True:
            batch = (await self._call("GET", f"/batches/{batch_id}")).json()
            if on_status is not None:
                on_status(batch.get("status", "unknown"))
            if batch.get("status") in TERMINAL:
                return batch
            await asyncio.sleep(interval)
            interval = min(MAX_POLL_INTERVAL_S, interval * 1.5)

    async def collect(
        self, batch: dict, requests: Mapping[str, TeacherRequest]
    ) -> dict[str, Completion | BatchFailure]:
        """The answer or failure of each line (output file, then error file) whose `custom_id` is in `requests`.

        Lines of other requests (answered earlier, or no longer planned) are skipped; a request
        the batch never answered (it failed validation, expired, was cancelled) has no entry.
        """
        lines = [*await self._content(batch.get("output_file_id")), *await self._content(batch.get("error_file_id"))]
        results: dict[str, Completion | BatchFailure] = {}
        for line in lines:
            request = requests.get(line.get("custom_id"))
            if request is not None:
                results[request.request_key] = self._result(request, line)
        return results

    def _result(self, request: TeacherRequest, line: dict) -> Completion | BatchFailure:
        error = line_error(line)
        if error is not None:
            return BatchFailure(*error)
        try:
            return parse_answer(
                line["response"].get("body"),
                want_logprobs=request.sampling.top_logprobs > 0,
                fallback_model=self.model,
                source=f"batch answer {request.request_key[:12]}",
                top_k=request.sampling.top_logprobs,
            )
        except Exception as exc:  # noqa: BLE001 - a bad line fails its own request, not the batch
            return BatchFailure(getattr(exc, "kind", "malformed"), str(exc))

    async def _content(self, file_id: str | None) -> list[dict]:
        """The lines of an output or error file (none when the batch has no such file)."""
        if not file_id:
            return []
        return jsonl_lines((await self._call("GET", f"/files/{file_id}/content")).text)

    async def aclose(self) -> None:
        await self._client.aclose()
