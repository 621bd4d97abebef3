"""distill.yaml as pydantic models (design §4): the single source of truth for the config.

`load_config` reads the file, validates it and raises `ConfigError` naming the file,
the line, the key path and the nearest valid key. Paths in the config are relative to
the config file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from synthdistill.config_base import Strict as _Strict
from synthdistill.errors import ConfigError, UnsafeWriteError
from synthdistill.filters import FilterSpec, parse_filter_spec
from synthdistill.filters.entry_schema import FilterEntrySchema
from synthdistill.input_limits import DEFAULT_MAX_PROMPT_CHARS
from synthdistill.overrides import Override, apply_overrides, override_for, parse_overrides
from synthdistill.records import (
    DEFAULT_SAMPLING,
    MaxTokens,
    ReasoningKnobs,
    Sampling,
    Temperature,
    TopLogprobs,
    TopP,
)
from synthdistill.run_layout import RunLayout
from synthdistill.student_config import StudentConfig
from synthdistill.yaml_source import (
    YamlDocument,
    describe_validation_error,
    load_yaml,
    primary_error,
    validate_document,
)


class TeacherConfig(_Strict):
    backend: Literal["openai", "openai-batch", "transformers"] = Field(
        "openai",
        description="openai: any OpenAI-compatible server (vLLM, llama.cpp, Together, …); openai-batch: the OpenAI "
        "Batch API (half price, answers within 24 h); transformers: a local model run in-process",
    )
    model: str = Field(description="Model id sent to the API, or a path / embedded model for transformers")
    base_url: str | list[str] | None = Field(
        None, description="OpenAI-compatible base URL, or a list to spread requests over"
    )
    api_key_env: str | None = Field(None, description="NAME of the environment variable holding the API key")
    api_style: Literal["auto", "openai", "vllm", "llamacpp", "together", "ollama"] = Field(
        "auto",
        description="openai backend: the server's dialect for logprobs (vllm also returns token ids); "
        "auto = together for Together's hosts, vllm when /models says owned_by vllm, else openai",
    )
    endpoint: Literal["chat", "completions"] = Field(
        "chat", description="openai backend: /chat/completions, or legacy /completions for servers that only have it"
    )
    policy: str = Field(
        "auto",
        description="auto = match policies by model id / host; or the id of one of the policies that match the teacher "
        "(never one less restrictive than the policy it sets aside: that takes a project policy with `overrides:` "
        "and a `permission`)",
    )
    max_concurrency: int = Field(64, ge=1, description="Requests in flight at once (spread over every base_url)")
    requests_per_minute: float | None = Field(
        None, gt=0, description="Client-side cap on requests per minute; null = none (429s are still backed off)"
    )
    tokens_per_minute: float | None = Field(
        None, gt=0, description="Client-side cap on prompt + answer tokens per minute; null = none"
    )
    timeout_s: float = Field(120, gt=0, description="Seconds to wait for one answer before the request is retried")
    max_retries: int = Field(
        8, ge=0, description="Retries of a request after a 429, 5xx, timeout or malformed answer (with backoff)"
    )
    batch_size: int = Field(8, ge=1, description="transformers backend: prompts generated together")
    batch_max_requests: int = Field(
        50_000,
        ge=1,
        description="openai-batch backend: most requests (JSONL lines) in one batch input file; more are split "
        "into several batches (the OpenAI Batch API takes up to 50,000)",
    )
    batch_max_bytes: int = Field(
        200_000_000,
        ge=1,
        description="openai-batch backend: largest batch input file in bytes; more are split into several batches "
        "(the OpenAI Batch API takes up to 200 MB)",
    )
    device: str = Field("auto", description="transformers backend: auto | cpu | cuda | cuda:N")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="transformers backend: the weights' precision; auto = bfloat16 on a GPU, float32 on a CPU. "
        "bfloat16 on a CPU with AMX / AVX-512 BF16 answers ~1.8x faster, but a row's answer then depends on the "
        "batch it shared (float32's does not)",
    )
    chat_template_kwargs: dict[str, Any] | None = Field(
        None,
        description="Arguments for the teacher's chat template, e.g. {enable_thinking: false} for a hybrid thinking "
        "model: sent as `chat_template_kwargs` (vllm, llamacpp styles), passed to apply_chat_template in-process; "
        "part of the request key",
    )
    tokenizer: str | None = Field(
        None,
        description="The teacher's tokenizer, for `synthdistill plan` to count prompt tokens exactly (chat template "
        "included): a folder (relative to distill.yaml) or an embedded model id; default: the teacher's own when it "
        "runs in-process, is a local folder or an embedded model; otherwise prompt tokens are estimated",
    )

    @property
    def base_urls(self) -> list[str]:
        if self.base_url is None:
            return []
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)

    @model_validator(mode="after")
    def _needs_url(self) -> TeacherConfig:
        if self.backend in ("openai", "openai-batch") and not self.base_urls:
            raise ValueError(f"backend '{self.backend}' needs teacher.base_url (e.g. http://127.0.0.1:8000/v1)")
        return self


class UseConfig(_Strict):
    """What the user intends to do with the outputs, checked against the teacher's policy."""

    commercial: bool = Field(True, description="The datasets or the student serve a commercial purpose")
    distribute_student: bool = Field(
        True,
        description="The student is given to others (a hosted student is 'made available', which some licences "
        "bind whether or not it is distributed)",
    )
    competes_with_teacher_provider: bool = Field(
        False, description="The student competes with the teacher provider's products or services"
    )
    attestation: str | None = Field(
        None,
        description="A statement (a sentence of at least 4 words) that your use complies with the clause the gate "
        "shows; required by some policies, recorded in decision.json, the cards and the audit",
    )


class EmbeddingsConfig(_Strict):
    """One embedding vector per answer from an OpenAI-compatible POST /embeddings (harvest_embeddings.py)."""

    model: str | None = Field(
        None,
        description="Embedding model id sent to /embeddings; default: teacher.model. A model (or host) other than "
        "the teacher's is decided by the policy gate on its own before any request (refused: exit 3)",
    )
    base_url: str | list[str] | None = Field(
        None, description="OpenAI-compatible base URL(s) of the embedding endpoint; default: teacher.base_url"
    )
    api_key_env: str | None = Field(
        None, description="NAME of the environment variable holding the endpoint's API key; default: teacher's"
    )
    policy: str = Field(
        "auto",
        description="auto = match policies by the embedding model id / host; or the id of a policy that matches it",
    )
    dimensions: int | None = Field(
        None,
        ge=1,
        description="Length of each vector, sent as `dimensions` (models that can shorten theirs); "
        "null = the model's own length",
    )
    input: Literal["answer", "prompt+answer"] = Field(
        "answer",
        description="What is embedded: the answer's text, or every prompt message then the answer (blank-line "
        "separated)",
    )
    batch_size: int = Field(16, ge=1, le=2048, description="Answers embedded per request (inputs of one request)")

    def urls(self, teacher: TeacherConfig) -> list[str]:
        """The endpoint's base URLs (the teacher's when none are given)."""
        if self.base_url is None:
            return teacher.base_urls
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)


class HarvestConfig(_Strict):
    packs: list[str] = Field(min_length=1, description="Prompt pack folders, relative to distill.yaml")
    samples_per_prompt: int = Field(1, ge=1, description="Answers asked per prompt (each a separate request)")
    temperature: Temperature = Field(
        DEFAULT_SAMPLING.temperature, description="Sampling temperature sent to the teacher (a pack may override it)"
    )
    top_p: TopP = Field(DEFAULT_SAMPLING.top_p, description="Nucleus sampling mass sent to the teacher")
    max_tokens: MaxTokens = Field(
        DEFAULT_SAMPLING.max_tokens, description="Longest answer, in teacher tokens (a cut-off answer is 'truncated')"
    )
    top_logprobs: TopLogprobs = Field(
        DEFAULT_SAMPLING.top_logprobs,
        description="Alternatives captured per answer token for KD; 0 = no logprob capture (SFT only)",
    )
    seed: int | None = Field(
        DEFAULT_SAMPLING.seed, description="Sampling seed sent to the teacher (per sample: seed + sample index)"
    )
    limit: int | None = Field(None, ge=1, description="Harvest at most this many prompts")
    budget_usd: float | None = Field(
        None,
        ge=0,
        description="Stop sending before the spend (priced from pricing.yaml) would pass this many US dollars; "
        "null = no cap",
    )
    give_up_after_s: float | None = Field(
        300,
        gt=0,
        description="End the harvest (exit 1, answers kept) when the teacher has given no answer for this many "
        "seconds; null = wait for ever",
    )
    max_pause_s: float | None = Field(
        900,
        gt=0,
        description="End the harvest (exit 1, answers kept) once failure pauses of every sender add up to this "
        "many seconds; null = no cap",
    )
    progress_every_s: float = Field(
        10,
        gt=0,
        description="Without a terminal: one progress line on stderr every this many seconds "
        "(a JSON event per line under --json)",
    )
    reasoning: ReasoningKnobs | None = Field(
        None,
        description="A thinking teacher's effort or trace budget ({effort: low} or {budget_tokens: 2048}), sent in "
        "the form the API style takes, ignored with a warning where it has none; part of the request key",
    )
    structured_retries: int = Field(
        2,
        ge=0,
        le=20,
        description="A structured answer (a pack's response_format) that is not valid JSON for its schema is asked "
        "again this many times, each with the next unused seed; then it is kept as invalid and the `schema` filter "
        "drops it",
    )
    embeddings: EmbeddingsConfig | None = Field(
        None,
        description="Also harvest one embedding vector per answer (same scheduler, ledger, budget and gate), "
        "carried into the KD dataset as `teacher_embedding` for student.kd.relations.source: embeddings; "
        "null = none",
    )
    max_prompt_chars: int = Field(
        DEFAULT_MAX_PROMPT_CHARS,
        ge=1,
        description="A rendered prompt longer than this (characters, all messages) is refused with exit 2",
    )

    def sampling(
        self, overrides: dict[str, Any] | None = None, chat_template_kwargs: dict[str, Any] | None = None
    ) -> Sampling:
        """Harvest defaults with a pack's overrides applied (and the teacher's chat-template arguments)."""
        values = {k: getattr(self, k) for k in ("temperature", "top_p", "max_tokens", "top_logprobs", "seed")}
        values.update(overrides or {})
        return Sampling(**values, reasoning=self.reasoning, chat_template_kwargs=chat_template_kwargs or None)


def _parse_filter(item: Any) -> Any:
    return item if isinstance(item, FilterSpec) else parse_filter_spec(item)


class DatasetsConfig(_Strict):
    eval_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of prompts held out for evaluation (split by prompt, never by answer)"
    )
    seed: int = Field(0, description="Seed of the held-out split (the same seed gives the same split)")
    reasoning: Literal["keep", "drop", "inline"] = Field(
        "keep",
        description="A thinking teacher's traces in the datasets: keep = a `reasoning_content` key on the assistant "
        "message where the student's chat template renders one, else inline; inline = a <think>…</think> block "
        "before the answer; drop = answers alone",
    )
    kd_logprob_step: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Round the KD dataset's top-k logprobs to multiples of this many nats, each position's sampled "
        "token's own kept as it is; null = float16 as harvested. 0.03125 stored SmolLM2's real top-20 in 56.1 B per "
        "answer token instead of 62.4 and added 0.014 % to the KD loss (benchmarks/results/kd_precision-2026-12-02.md)",
    )


class DistillConfig(_Strict):
    """The whole of distill.yaml."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Run folder name: <output_dir>/<name>/")
    output_dir: str = Field(
        "outputs",
        description="Where run folders go, relative to distill.yaml; outside the project only with allow_outside_project",
    )
    allow_outside_project: bool = Field(
        False,
        description="Let output_dir lie outside the project folder (distill.yaml's folder); "
        "otherwise such a config is refused (exit 2) unless the command gets --allow-outside",
    )
    teacher: TeacherConfig = Field(description="The teacher model and how to reach it")
    use: UseConfig = Field(
        default_factory=UseConfig, description="What you will do with the outputs; the policy gate decides on it"
    )
    harvest: HarvestConfig = Field(description="Which prompts to ask and how to sample the answers")
    # How users write a step (`- finished`, `- dedup: {exact: true}`), typed per filter; parse_filter_spec validates.
    filters: list[Annotated[FilterSpec, BeforeValidator(_parse_filter), FilterEntrySchema]] = Field(
        default_factory=lambda: [FilterSpec(name="finished"), FilterSpec(name="dedup")],
        description="Ordered filter steps: a name, or {name: {params}}; each sees what the ones before kept",
    )
    datasets: DatasetsConfig = Field(default_factory=DatasetsConfig, description="How the datasets are split")
    student: StudentConfig | None = Field(
        None, description="The student to train; null = stop after the datasets (harvest, filter, build only)"
    )

    _path: Path | None = PrivateAttr(None)
    _overrides: list[Override] = PrivateAttr(default_factory=list)
    _source: YamlDocument | None = PrivateAttr(None)

    @field_validator("filters", mode="before")
    @classmethod
    def _filters(cls, value: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError("filters must be a list of filter names or {name: {params}}")
        return value

    # -- paths -------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._path if self._path is not None else Path("distill.yaml").resolve()

    @property
    def overrides(self) -> list[Override]:
        """The `--set` overrides applied over the file (empty when the file ran as written)."""
        return list(self._overrides)

    @property
    def project_dir(self) -> Path:
        """The config file's folder: relative paths in the config are read from it."""
        return self.path.parent

    def resolve(self, relative: str | Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.project_dir / p)

    @property
    def run_dir(self) -> Path:
        return self.resolve(self.output_dir) / self.name

    @property
    def layout(self) -> RunLayout:
        """Every path of the run folder (run_layout.py)."""
        return RunLayout(self.run_dir)

    def line_of(self, *loc: str | int) -> int | None:
        """The line in distill.yaml of a key path (or its deepest known parent); None without a file."""
        return self._source.line_of(loc) if self._source is not None else None

    def key_error(self, message: str, *loc: str | int) -> ConfigError:
        """A ConfigError about the key at `loc`, found after loading: at its line, or naming the override that set it."""
        culprit = override_for(loc, self._overrides, self._source.data if self._source is not None else None)
        if culprit is not None:
            return ConfigError(f"{culprit.origin} {culprit.text}: {message}")
        return ConfigError(message, file=self.path, line=self.line_of(*loc))

    def require_student(self, stage: str) -> StudentConfig:
        if self.student is None:
            raise ConfigError(f"the '{stage}' stage needs a 'student' section", file=self.path)
        return self.student


def load_config(
    path: str | Path = "distill.yaml", *, allow_outside: bool = False, overrides: Any = None
) -> DistillConfig:
    """Read and validate distill.yaml; errors name the file, line and key path.

    `overrides`: `--set` strings (`student.kd.alpha=0.3`) or a {key.path: value} mapping,
    set over the file before validation (overrides.py); an error they cause names them.

    An `output_dir` that leads outside the project folder (an absolute path, `../x`, `~/x`
    or a symlink out) is refused unless `allow_outside` or `allow_outside_project` says so:
    a run folder is written to, and a config from elsewhere should not choose where.
    """
    path = Path(path).resolve()
    if not path.exists():
        raise ConfigError("config file not found (pass -c FILE, or run `synthdistill init DIR`)", file=path)
    doc = load_yaml(path, ConfigError)
    given = parse_overrides(DistillConfig, overrides)
    if not given:
        config = validate_document(doc, DistillConfig, ConfigError)
    elif not isinstance(doc.data, dict):
        raise ConfigError("expected a mapping of keys at the top level", file=path, line=1)
    else:
        config = _validate_with_overrides(doc, given)
    config._path = path
    config._overrides = given
    config._source = doc
    if not (allow_outside or config.allow_outside_project):
        _check_inside(config, doc.line_of(("output_dir",)))
    return config


def _validate_with_overrides(doc, given: list[Override]) -> DistillConfig:
    try:
        return DistillConfig.model_validate(apply_overrides(doc.data, given))
    except ValidationError as exc:
        message, line = describe_validation_error(exc, DistillConfig, doc)
        culprit = override_for(tuple(primary_error(exc)["loc"]), given, doc.data)
        if culprit is None:
            raise ConfigError(message, file=doc.path, line=line) from None
        raise ConfigError(f"{culprit.origin} {culprit.text}: {message}") from None


def _check_inside(config: DistillConfig, line: int | None) -> None:
    project = config.project_dir.resolve()
    target = config.resolve(config.output_dir).resolve()  # resolve(): a symlink out counts as out
    if target != project and project not in target.parents:
        raise UnsafeWriteError(
            f"output_dir '{config.output_dir}' leads outside the project folder {project} (to {target}); "
            "pass --allow-outside or set allow_outside_project: true to write there",
            file=config.path,
            line=line if "output_dir" in config.model_fields_set else None,
        )


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of distill.yaml for editors, generated from the models."""
    return DistillConfig.model_json_schema()


def write_config_schema(path: str | Path | None = None) -> Path:
    """Regenerate synthdistill/schemas/distill.schema.json (run after changing the models)."""
    path = Path(path) if path else Path(__file__).resolve().parent / "schemas" / "distill.schema.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config_json_schema(), indent=2) + "\n")
    return path


if __name__ == "__main__":
    print(write_config_schema())
