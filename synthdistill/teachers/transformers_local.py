"""The in-process teacher: a transformers model on this machine (the embedded default).

Concurrent `complete` calls are gathered into batches (same sampling parameters) and
generated together on the model's own thread (`in_model_thread`). Sampling draws each row's
randomness from its own generator, seeded by `harvest.seed` and the request key, so an answer does not
depend on which requests happened to share its batch. Logprobs are taken from the raw logits
(before temperature / top-p), as vLLM's default `logprobs-mode` does, and the
end-of-turn token is kept as the answer's last position: it is a real prediction
the student should learn.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from synthdistill.chat_tokens import prompt_token_ids
from synthdistill.errors import StageError, SynthdistillError
from synthdistill.model_store import resolve_model
from synthdistill.records import Completion, TeacherRequest, TokenLogprobs, Usage
from synthdistill.teachers.decode_loop import RowSampler, decode
from synthdistill.teachers.knobs import KnobWarnings, knob_values
from synthdistill.teachers.onednn_linear import use_onednn_linears
from synthdistill.thinking import split_inline

GATHER_WINDOW_S = 0.02


@dataclass
class _Pending:
    request: TeacherRequest
    future: asyncio.Future


class TransformersTeacher:
    backend = "transformers"

    def __init__(self, config, project_dir: Path | None = None):
        self.config = config
        self.model = config.model
        self.project_dir = project_dir
        self.batch_size = config.batch_size
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self._loaded = None
        self._load_lock = threading.Lock()
        self._model_thread: ThreadPoolExecutor | None = None
        self._pieces: dict[int, str] = {}
        self.fingerprint: str | None = None  # set when the model loads
        self.knob_warnings = KnobWarnings()  # reasoning effort / budget: an in-process model has no such setting

    def endpoint_for(self, request: TeacherRequest) -> str | None:
        return None

    # -- model -----------------------------------------------------------------
    def _load(self):
        with self._load_lock:
            if self._loaded is None:
                import torch
                import transformers
                from transformers import AutoModelForCausalLM, AutoTokenizer
                from transformers.utils import logging as transformers_logging

                # Our own progress bar reports the harvest; the loader's bars would tear it.
                transformers_logging.disable_progress_bar()

                folder = resolve_model(self.model, self.project_dir)
                device = self.config.device
                if device == "auto":
                    device = "cuda" if torch.cuda.is_available() else "cpu"
                tokenizer = AutoTokenizer.from_pretrained(folder)
                tokenizer.padding_side = "left"
                if tokenizer.pad_token_id is None:
                    tokenizer.pad_token = tokenizer.eos_token
                dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(self.config.dtype)
                if dtype is None:  # auto: a CPU keeps float32, where a row's answer does not depend on its batch
                    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
                torch.set_num_threads(max(1, torch.get_num_threads()))
                kernels = " onednn" if use_onednn_linears(model) else ""
                # what an API's system_fingerprint says: the software and numerics that answered
                self.fingerprint = (
                    f"transformers-{transformers.__version__} torch-{torch.__version__} "
                    f"{str(dtype).removeprefix('torch.')} {torch.device(device).type}{kernels}"
                )
                self._loaded = (model, tokenizer, device)
        return self._loaded

    def generate_batch(self, requests: list[TeacherRequest]) -> list[Completion]:
        """Generate answers for requests that share sampling parameters (blocking)."""
        model, tokenizer, _ = self._load()
        sampling = requests[0].sampling
        template_kwargs = sampling.chat_template_kwargs or {}
        self.knob_warnings.ignored(
            [k for k in knob_values(sampling) if k != "chat_template_kwargs"], "an in-process model"
        )
        prompts = [
            prompt_token_ids(tokenizer, [m.model_dump() for m in r.messages], **template_kwargs) for r in requests
        ]
        eos_ids = _eos_ids(model, tokenizer)
        rows = decode(
            model,
            prompts,
            max_new_tokens=sampling.max_tokens,
            eos_ids=eos_ids,
            pad_id=tokenizer.pad_token_id,
            top_k=sampling.top_logprobs,
            sampler=RowSampler(sampling, [r.request_key for r in requests]),
        )
        completions = []
        for row, answer in enumerate(rows):
            answer_ids, finish = answer.token_ids, answer.finish_reason
            reasoning, text = split_answer(tokenizer, answer_ids, eos_ids, finish)
            token_logprobs = None
            if sampling.top_logprobs > 0:
                token_logprobs = TokenLogprobs(
                    tokens=[self._piece(tokenizer, t) for t in answer_ids],
                    token_ids=answer_ids,
                    token_logprobs=answer.chosen_logprobs,
                    top_tokens=[[self._piece(tokenizer, t) for t in ids_at] for ids_at in answer.top_ids],
                    top_ids=answer.top_ids,
                    top_logprobs=answer.top_logprobs,
                )
            completions.append(
                Completion(
                    text=text,
                    reasoning=reasoning,
                    finish_reason=finish,
                    model=self.model,
                    system_fingerprint=self.fingerprint,
                    usage=Usage(prompt_tokens=len(prompts[row]), completion_tokens=len(answer_ids)),
                    logprobs=token_logprobs,
                )
            )
        return completions

    def _piece(self, tokenizer, token_id: int) -> str:
        """One token's text, decoded once per id: decoding every top-k alternative anew dominated small batches."""
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = self._pieces[token_id] = tokenizer.decode([token_id])
        return piece

    async def in_model_thread(self, function, *args):
        """`function(*args)` on the one thread that does all of this teacher's torch work (load, decode, score).

        PyTorch's OpenMP (libgomp) keeps a team of threads for each thread that has run a parallel
        operation; while another thread's team lives, small operations ran ~4× slower here
        (benchmarks/openmp_threads.py) and the quickstart's decoding ~25 % slower. So the model is
        loaded and run on one thread, not on whichever thread asyncio's pool offers.
        """
        if self._model_thread is None:
            self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthdistill-model")
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, function, *args)

    # -- batching --------------------------------------------------------------
    async def complete(self, request: TeacherRequest) -> Completion:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._serve())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(request, future))
        return await future

    async def _serve(self) -> None:
        assert self._queue is not None
        try:
            await self.in_model_thread(self._load)
        except Exception as exc:  # the model cannot load: every request, queued or to come, fails with why
            await self._fail_every_request(load_failure(self.model, exc))
            return
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = asyncio.get_running_loop().time() + GATHER_WINDOW_S
            while len(batch) < self.batch_size:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    candidate = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                batch.append(candidate)
            # Only requests with identical sampling parameters share a generate() call.
            groups: dict[str, list[_Pending]] = {}
            for pending in batch:
                groups.setdefault(pending.request.sampling.model_dump_json(), []).append(pending)
            for group in groups.values():
                try:
                    results = await self.in_model_thread(self.generate_batch, [p.request for p in group])
                except Exception as exc:  # a failed batch fails its requests, not the worker
                    for pending in group:
                        if not pending.future.done():
                            pending.future.set_exception(exc)
                    continue
                for pending, result in zip(group, results):
                    if not pending.future.done():
                        pending.future.set_result(result)

    async def _fail_every_request(self, error: SynthdistillError) -> None:
        assert self._queue is not None
        while True:
            pending = await self._queue.get()
            if not pending.future.done():
                pending.future.set_exception(error)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        # A closed teacher can be used again (in another event loop): the next request starts a new worker.
        self._queue, self._worker, self._loaded = None, None, None
        if self._model_thread is not None:  # its thread ends after the work it has (its OpenMP team with it)
            self._model_thread.shutdown(wait=False)
            self._model_thread = None
        self._pieces = {}


def load_failure(model: str, exc: Exception) -> SynthdistillError:
    """What a request gets when the teacher cannot load: our own errors as they are, others wrapped.

    Either stops the harvest (neither is a per-request TeacherError, which would be retried or recorded).
    """
    if isinstance(exc, SynthdistillError):
        return exc
    reason = " ".join(str(exc).split())  # one line: some loaders' messages span several
    error = StageError(f"the teacher model '{model}' could not be loaded: {type(exc).__name__}: {reason}")
    error.__cause__ = exc
    return error


def split_answer(tokenizer, answer_ids: list[int], eos_ids: list[int], finish: str) -> tuple[str | None, str]:
    """(trace, answer) of generated ids: a thinking model's inline <think>…</think> split as a server's parser would."""
    text = tokenizer.decode([t for t in answer_ids if t not in eos_ids], skip_special_tokens=False)
    return split_inline(text, finish)


def _eos_ids(model, tokenizer) -> list[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured] if configured is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
