"""The Python API: one project (a distill.yaml, with overrides) and its stages as methods.

    from synthdistill import Project

    project = Project("distill.yaml", overrides={"student.kd.alpha": 0.3})
    project.plan()          # what the harvest will be, sending nothing (`synthdistill plan --json`)
    project.harvest()       # the same summaries as `synthdistill harvest --json`
    project.filter(); project.build(); project.train(); project.evaluate(); project.audit()
    project.run(until="build")   # every stage up to build, then the run's page
    project.view()               # the run's page, view.html (`synthdistill view`)
    project.harvest(shard="1/3"); project.merge("other/run_a", "other/run_b")   # several machines

The CLI is a thin layer over this class: it parses arguments, hands a `Reporter` that
renders progress and results, and prints the errors the methods raise (errors.py).
Each call takes the run folder's lock for its duration, as each command does, and
re-reads distill.yaml (an edit between two calls in a notebook is seen). The harvest,
which runs an asyncio loop, runs in a worker thread when the calling thread already
runs one (a Jupyter notebook), so `project.harvest()` works there as in a script.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from synthdistill import audit, build, evaluate, filter_stage, harvest, merge, plan, train
from synthdistill import view as run_page
from synthdistill.async_bridge import outside_running_loop
from synthdistill.config import DistillConfig, load_config
from synthdistill.digests import file_sha256, json_sha256
from synthdistill.errors import ConfigError, DamagedFileError, NothingAnswered
from synthdistill.records import utc_now
from synthdistill.run_lock import is_secondary_rank, run_folder_lock
from synthdistill.safe_write import write_text
from synthdistill.shards import Shard, as_shard

STAGES = ("harvest", "filter", "build", "train", "eval", "audit")

T = TypeVar("T")


class Reporter:
    """What a Project says while it works. This one is silent; the CLI's renders to the terminal."""

    def harvest_observer(self, config: DistillConfig) -> AbstractContextManager[Any]:
        """A context giving the harvest's observer (harvest.HarvestObserver), or None."""
        return nullcontext(None)

    def train_progress(self, config: DistillConfig) -> AbstractContextManager[Any]:
        """A context giving the trainer's progress callback, or None."""
        return nullcontext(None)

    def stage_done(self, stage: str, summary: dict[str, Any], config: DistillConfig) -> None:
        """A stage finished (the harvest also reports here before raising NothingAnswered)."""

    def planned(self, summary: plan.PlanSummary, config: DistillConfig) -> None:
        """The harvest's plan, before its first request (not called when the gate refuses)."""


class Project:
    """A distill.yaml and its stages. Methods return the `--json` summaries and raise errors.py's errors."""

    def __init__(
        self,
        config: str | Path = "distill.yaml",
        *,
        overrides: Mapping[str, Any] | Iterable[str] | None = None,
        set: Iterable[str] | None = None,  # noqa: A002 - the CLI's --set, by its name
        allow_outside: bool = False,
        reporter: Reporter | None = None,
    ) -> None:
        self.path = Path(config)
        self._given: list[Any] = []
        for given in (overrides, set):
            if given:
                self._given.append(given if isinstance(given, Mapping) else _as_list(given))
        self.allow_outside = allow_outside
        self.reporter = reporter or Reporter()
        self._lock_depth = 0
        self.config = self._load()  # a bad config or override fails here, before any stage

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r}, overrides={[o.text for o in self.config.overrides]!r})"

    # -- config --------------------------------------------------------------
    def _load(self) -> DistillConfig:
        if len(self._given) > 1:  # a mapping and `set=` strings: all as strings, the strings last
            overrides: Any = [text for given in self._given for text in _as_text(given)]
        else:
            overrides = self._given[0] if self._given else None
        return load_config(self.path, allow_outside=self.allow_outside, overrides=overrides)

    def reload(self) -> DistillConfig:
        """Read distill.yaml again (each stage call does this itself)."""
        self.config = self._load()
        return self.config

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    @contextlib.contextmanager
    def _stage(self, command: str) -> Iterator[DistillConfig]:
        """The run folder's lock for one call (ranks other than 0 of a launch share rank 0's), taken once."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield self.config
            finally:
                self._lock_depth -= 1
            return
        config = self.reload()
        lock = nullcontext() if is_secondary_rank() else run_folder_lock(config.run_dir, command)
        with lock:
            self._lock_depth = 1
            try:
                yield config
            finally:
                self._lock_depth = 0

    def _snapshot(self, stage: str, config: DistillConfig) -> None:
        """Record the effective config of a stage run with overrides (and forget an older one without)."""
        if is_secondary_rank():
            return
        path = config.layout.config_snapshot(stage)
        if not config.overrides:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        settings = config.model_dump(mode="json")
        snapshot = {
            "stage": stage,
            "written_at": utc_now(),
            "config": {"path": str(config.path), "sha256": file_sha256(config.path)},
            "overrides": [o.to_dict() for o in config.overrides],
            "effective_sha256": json_sha256(settings),
            "settings": settings,
        }
        write_text(path, json.dumps(snapshot, indent=2, ensure_ascii=False) + "\n", inside=config.run_dir)

    # -- stages --------------------------------------------------------------
    def plan(self, *, limit: int | None = None, shard: Shard | str | None = None) -> dict[str, Any]:
        """What `harvest` will be, sending nothing and writing nothing (plan.py); a gate refusal is in
        `gate` (`allowed` False, `refusal` the message), not raised: the CLI exits 3 on it."""
        return plan.run(self.reload(), limit=limit, shard=as_shard(shard)).model_dump()

    def harvest(
        self, *, limit: int | None = None, fresh: bool = False, shard: Shard | str | None = None
    ) -> dict[str, Any]:
        """Ask the teacher (the policy gate first); NothingAnswered when every request failed.

        The plan comes first: the reporter hears it and it is kept in harvest/plan.json.
        `shard` ('i/N') asks only that shard's share of the requests (shards.py); `merge` joins the shards.
        """
        shard = as_shard(shard)
        with self._stage("harvest") as config:
            self._snapshot("harvest", config)
            try:  # the plan's pass over the requests is the harvest's too (the lock keeps the ledger as it read it)
                planned, requests = plan.run_with_requests(config, limit=limit, fresh=fresh, shard=shard)
            except DamagedFileError:  # a damaged ledger is harvest's to report (after it records the decision)
                planned = requests = None
            if planned is not None and planned.gate.allowed:  # a refusal, too, is harvest's (exit 3)
                self.reporter.planned(planned, config)
            with self.reporter.harvest_observer(config) as observer:
                summary = outside_running_loop(
                    lambda: harvest.run(
                        config,
                        limit=limit,
                        fresh=fresh,
                        observer=observer,
                        plan=planned,
                        shard=shard,
                        requests=requests,
                    )
                )
            data = summary.model_dump()
            self.reporter.stage_done("harvest", data, config)
            if summary.failed and not summary.answered:
                kinds = ", ".join(f"{kind} ×{n}" for kind, n in sorted(summary.errors_by_kind.items()))
                raise NothingAnswered(
                    f"harvest: every request failed ({summary.failed}; errors: {kinds}); nothing was answered. "
                    "Check the teacher, then run `synthdistill harvest` again: the next run retries them",
                    summary=data,
                )
            return data

    def filter(self, *, workers: int = 1) -> dict[str, Any]:
        """Filter the harvested answers (the funnel report); `workers` processes, same output as one."""
        with self._stage("filter") as config:
            self._snapshot("filter", config)
            return self._done("filter", filter_stage.run(config, workers=workers), config)

    def build(self, *, workers: int = 1) -> dict[str, Any]:
        """Build the SFT and KD datasets; `workers` processes, same output as one."""
        with self._stage("build") as config:
            self._snapshot("build", config)
            return self._done("build", build.run(config, workers=workers).model_dump(), config)

    def train(self, *, method: str | None = None, resume: bool = False) -> dict[str, Any]:
        """Fine-tune the student (method: sft, kd or on-policy; default student.method)."""
        if method is not None and method not in ("sft", "kd", "on-policy"):
            raise ConfigError(f"method must be sft, kd or on-policy (got '{method}')")
        with self._stage("train") as config:
            self._snapshot("train", config)
            with self.reporter.train_progress(config) as progress:
                summary = train.run(config, method=method, resume=resume, progress=progress)
            data = summary.model_dump() if hasattr(summary, "model_dump") else dict(summary.__dict__)
            return self._done("train", data, config)

    def evaluate(self) -> dict[str, Any]:
        """Compare the untrained and the trained student on the held-out split (eval.json)."""
        with self._stage("eval") as config:
            self._snapshot("eval", config)
            return self._done("eval", evaluate.run(config), config)

    def audit(self) -> dict[str, Any]:
        """Write the audit folder: manifest, reports, BOM (the overrides in force are recorded in it)."""
        with self._stage("audit") as config:
            return self._done("audit", audit.run(config.run_dir, config=config), config)

    def run(self, *, until: str | None = None, fresh: bool = False) -> dict[str, dict[str, Any]]:
        """Every stage up to `until` (default: audit) under one lock; their summaries by stage name."""
        if until is not None and until not in STAGES:
            raise ConfigError(f"until must be one of {', '.join(STAGES)} (got '{until}')")
        last = STAGES.index(until) if until else len(STAGES) - 1
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "harvest": lambda: self.harvest(fresh=fresh),
            "filter": self.filter,
            "build": self.build,
            "train": self.train,
            "eval": self.evaluate,
            "audit": self.audit,
        }
        summary: dict[str, dict[str, Any]] = {}
        with self._stage("run"):
            for stage in STAGES[: last + 1]:
                summary[stage] = steps[stage]()
            if not is_secondary_rank():  # the last step: one page of what the run folder holds
                summary["view"] = {"page": str(self.view())}
        return summary

    def merge(self, *run_dirs: str | Path) -> dict[str, Any]:
        """Merge shards' run folders (`harvest --shard i/N` on other machines) into this project's run folder
        (`synthdistill merge RUN_DIR… -o <run folder>`); the merge summary."""
        return merge.merge(list(run_dirs), output=self.run_dir).model_dump()

    def view(self, output: str | Path | None = None, max_records: int = run_page.MAX_RECORDS) -> Path:
        """Write the run's page (view.html, or `output`) and return its path; reads the run folder only."""
        return run_page.run(self.run_dir, output=output, max_records=max_records)

    def _done(self, stage: str, data: dict[str, Any], config: DistillConfig) -> dict[str, Any]:
        self.reporter.stage_done(stage, data, config)
        return data


def _as_list(given: str | Iterable[str]) -> list[str]:
    """`set=` strings: one `key=value` string, or several."""
    return [given] if isinstance(given, str) else [str(text) for text in given]


def _as_text(given: Any) -> list[str]:
    """Overrides given both as a mapping and as `--set` strings, all as strings (JSON is YAML)."""
    if isinstance(given, Mapping):
        return [f"{key}={json.dumps(value)}" for key, value in given.items()]
    return list(given)
