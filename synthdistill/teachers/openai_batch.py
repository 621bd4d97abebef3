"""The teacher behind the OpenAI Batch API: JSONL upload, poll, collect by `custom_id`, resume after a crash.

    pending requests → JSONL (one chat body per line, `custom_id` = request key)
    → POST /files (purpose=batch) → POST /batches → the batch id goes to the ledger
    → GET /batches/{id} with backoff until completed / failed / expired / cancelled
    → GET /files/{output_file_id}/content and /files/{error_file_id}/content
    → each answer a HarvestRecord (built as the harvester builds every record), each error a failure.

The batch id is committed to the ledger before the first poll, so a run killed while
the batch is open resumes it on the next run: its requests are collected, never sent
again. Only requests in no open batch go into a new one. A failure (an error line,
an unreadable answer, or a line a finished batch never answered) is retried by the
next run, like every harvest failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx

from synthdistill.errors import ConfigError, TeacherAuthError, TeacherError
from synthdistill.pricing import prompt_tokens_upper_bound
from synthdistill.records import Completion, TeacherRequest
from synthdistill.retrying import RequestFailed
from synthdistill.teachers.openai_dialects import build_chat_body, parse_answer
from synthdistill.teachers.openai_http import endpoint_host, error_message

log = logging.getLogger(__name__)

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
    return {"custom_id": request.request_key, "method": "POST", "url": CHAT_URL,
            "body": build_chat_body(model, request, "openai")}


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
    """The Batch API calls (files, batches), with the key only in the Authorization header."""

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

    def __repr__(self) -> str:
        return f"OpenAIBatchClient(model={self.model!r}, endpoint={endpoint_host(self.base_url)}, key={'set' if self._api_key else 'none'})"

    def endpoint_for(self, request: TeacherRequest) -> str:
        return endpoint_host(self.base_url)

    async def complete(self, request: TeacherRequest) -> Completion:
        raise TeacherError("the openai-batch backend answers whole batches (run_batch), not single requests")

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
                    raise TeacherError(f"Batch API at {host} unreachable: {type(exc).__name__}: {self._scrub(str(exc))}") from None
            else:
                if 200 <= response.status_code < 300:
                    return response
                message = self._scrub(error_message(response))
                if response.status_code in (401, 403):
                    hint = (f"check the API key in the environment variable {self.config.api_key_env}"
                            if self.config.api_key_env else "set teacher.api_key_env to the NAME of the variable holding it")
                    raise TeacherAuthError(f"Batch API at {host} refused the request (HTTP {response.status_code}): {message}; {hint}")
                if response.status_code not in TRANSIENT_STATUSES or last:
                    raise TeacherError(f"Batch API at {host}: {method} {path} failed (HTTP {response.status_code}): {message}")
            await asyncio.sleep(min(POLL_INTERVAL_S, 2.0 ** attempt * 0.1))
        raise AssertionError("unreachable")

    async def submit(self, lines: list[dict]) -> tuple[str, dict]:
        """Upload the JSONL and create the batch; (input file id, batch object)."""
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")
        upload = await self._call("POST", "/files", data={"purpose": "batch"},
                                  files={"file": ("batch.jsonl", data, "application/jsonl")})
        file_id = upload.json()["id"]
        created = await self._call("POST", "/batches", json={
            "input_file_id": file_id, "endpoint": CHAT_URL, "completion_window": "24h"})
        return file_id, created.json()

    async def get(self, batch_id: str) -> dict:
        return (await self._call("GET", f"/batches/{batch_id}")).json()

    async def content(self, file_id: str | None) -> list[dict]:
        """The lines of an output or error file (none when the batch has no such file)."""
        if not file_id:
            return []
        return jsonl_lines((await self._call("GET", f"/files/{file_id}/content")).text)

    async def aclose(self) -> None:
        await self._client.aclose()


async def poll_until_done(client: OpenAIBatchClient, batch_id: str, on_status=None) -> dict:
    """Poll with a growing interval until the batch reaches a terminal status; the last batch object."""
    interval = POLL_INTERVAL_S
    while True:
        batch = await client.get(batch_id)
        if on_status is not None:
            on_status(batch.get("status", "unknown"))
        if batch.get("status") in TERMINAL:
            return batch
        await asyncio.sleep(interval)
        interval = min(MAX_POLL_INTERVAL_S, interval * 1.5)


def _reserve(run, item) -> float | None:
    bound = prompt_tokens_upper_bound(item.prompt.messages)
    return run.budget.reserve(bound, item.request.sampling.max_tokens)


def reserve_open(run, by_key: dict, reserved: dict[str, float]) -> None:
    """Reserve the worst case of requests already in open batches: they are paid for whatever the budget says."""
    for batch in run.store.open_batches():
        for key in batch["request_keys"]:
            if key in by_key and key not in reserved:
                reserved[key] = _reserve(run, by_key[key]) or 0.0


async def submit_pending(run, client: OpenAIBatchClient, pending: list, reserved: dict[str, float]) -> dict | None:
    """Put the pending requests in no open batch, as many as the budget allows, into one new batch.

    Returns the new batch's ledger row, or None when nothing was submitted; the requests
    the budget left out count as `run.not_sent`.
    """
    in_open = {key for batch in run.store.open_batches() for key in batch["request_keys"]}
    candidates = [item for item in pending if item.request.request_key not in in_open]
    fresh = []
    for item in candidates:
        amount = _reserve(run, item)
        if amount is None:
            break
        reserved[item.request.request_key] = amount
        fresh.append(item)
    run.not_sent = len(candidates) - len(fresh)
    if not fresh:
        return None
    keys = [item.request.request_key for item in fresh]
    file_id, batch = await client.submit([batch_line(client.model, item.request) for item in fresh])
    # committed before the first poll: a crash from here on resumes this batch instead of resubmitting
    run.store.put_batch(batch["id"], file_id, keys, batch.get("status", "validating"))
    run.tally.requests_sent += len(fresh)
    run.retried_failures += sum(key in run.failed_before for key in keys)
    log.info("submitted batch %s with %d requests", batch["id"], len(fresh))
    return {"batch_id": batch["id"], "input_file_id": file_id, "request_keys": keys}


def _fail(run, item, reserved: dict[str, float], kind: str, message: str) -> None:
    run.budget.release(reserved.pop(item.request.request_key, 0.0))
    run.commit_failure(item, RequestFailed(kind, message, 1))


def _store_line(run, client: OpenAIBatchClient, item, line: dict, latency_ms: float, reserved: dict[str, float]) -> None:
    from synthdistill.harvest import build_record

    error = line_error(line)
    if error is not None:
        _fail(run, item, reserved, *error)
        return
    request = item.request
    try:
        completion = parse_answer(line["response"].get("body"), want_logprobs=request.sampling.top_logprobs > 0,
                                  fallback_model=client.model, source=f"batch answer {request.request_key[:12]}",
                                  top_k=request.sampling.top_logprobs)
    except Exception as exc:  # noqa: BLE001 - a bad line fails its own request, not the batch
        _fail(run, item, reserved, getattr(exc, "kind", "malformed"), str(exc))
        return
    run.admit(completion.model, reserved.get(request.request_key, 0.0))
    record = build_record(run.config, item, client, completion, 1, latency_ms, run.decision)
    run.commit_answer(record, reserved.pop(request.request_key, 0.0))


async def collect(run, client: OpenAIBatchClient, batch_row: dict, by_key: dict, reserved: dict[str, float]) -> None:
    """Wait for one batch, store its answers and errors, and mark it collected in the ledger."""
    batch_id = batch_row["batch_id"]
    started = time.perf_counter()
    batch = await poll_until_done(client, batch_id, lambda status: run.store.set_batch_status(batch_id, status))
    latency_ms = (time.perf_counter() - started) * 1000 / max(1, len(batch_row["request_keys"]))
    lines = [*await client.content(batch.get("output_file_id")), *await client.content(batch.get("error_file_id"))]
    seen = set()
    for line in lines:
        item = by_key.get(line.get("custom_id"))
        if item is None:  # answered earlier or no longer planned (a smaller limit): nothing to store
            continue
        seen.add(item.request.request_key)
        _store_line(run, client, item, line, latency_ms, reserved)
    status = batch.get("status")
    for key in batch_row["request_keys"]:
        if key in by_key and key not in seen:
            # a batch that failed validation, expired or was cancelled leaves lines unanswered
            _fail(run, by_key[key], reserved, f"batch-{status}", f"batch {batch_id} ended '{status}' without answering")
    run.store.set_batch_status(batch_id, status, collected=True)


async def run_batch(run, pending: list, api_key: str | None) -> None:
    """The harvester's openai-batch branch: resume open batches, submit the rest, collect everything."""
    client = OpenAIBatchClient(run.config.teacher, api_key=api_key)
    by_key = {item.request.request_key: item for item in pending}
    reserved: dict[str, float] = {}
    try:
        reserve_open(run, by_key, reserved)
        await submit_pending(run, client, pending, reserved)
        for batch_row in run.store.open_batches():
            await collect(run, client, batch_row, by_key, reserved)
    finally:
        await client.aclose()
