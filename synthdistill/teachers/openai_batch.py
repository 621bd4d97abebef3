"""The OpenAI Batch API as a `BatchTeacher`: JSONL upload, poll, collect by `custom_id`.

    submit: requests → JSONL (one chat body per line, `custom_id` = request key)
            → POST /files (purpose=batch) → POST /batches → (input file id, batch object)
    poll:   GET /batches/{id} with a growing interval until completed / failed / expired / cancelled
    collect: GET /files/{output_file_id}/content and /files/{error_file_id}/content
            → each line's parsed answer (a Completion) or its failure (an error line, an unreadable answer)

This module knows nothing of the ledger, the budget or the tallies: the harvester
(harvest_batches.py) reserves the budget, records the batch id in the ledger before
the first poll (so a killed run resumes the batch instead of resubmitting it), turns
each answer into a HarvestRecord and fails the requests a finished batch never answered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
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


def batch_line(model: str, request: TeacherRequest) -> dict[str, Any]:
    """One JSONL line of a batch input file: the chat body the openai backend would send."""
    return {
        "custom_id": request.request_key,
        "method": "POST",
        "url": CHAT_URL,
        "body": build_chat_body(model, request, "openai"),
    }


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

    async def submit(self, requests: list[TeacherRequest]) -> tuple[str, dict]:
        """Upload the requests as JSONL and create the batch; (input file id, batch object)."""
        lines = [batch_line(self.model, request) for request in requests]
        for request in requests:
            self.knob_warnings.note(request.sampling, "openai", "chat")
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")
        upload = await self._call(
            "POST", "/files", data={"purpose": "batch"}, files={"file": ("batch.jsonl", data, "application/jsonl")}
        )
        file_id = upload.json()["id"]
        created = await self._call(
            "POST", "/batches", json={"input_file_id": file_id, "endpoint": CHAT_URL, "completion_window": "24h"}
        )
        return file_id, created.json()

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
