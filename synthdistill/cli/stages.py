"""The stage commands: init, run, harvest, filter, build, train, eval.

Each command builds a `Project` (project.py) and calls one of its methods; this module only
parses arguments and renders: `CliReporter` prints progress and the result lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from synthdistill.cli import plan_text, render
from synthdistill.cli.progress import HarvestProgress, TrainProgress
from synthdistill.config import DistillConfig
from synthdistill.errors import InputError, PolicyDenied
from synthdistill.filters.funnel import funnel_lines
from synthdistill.plan import PlanSummary
from synthdistill.policy import read_decision
from synthdistill.project import STAGES, Project, Reporter
from synthdistill.scaffold import init_project
from synthdistill.shards import Shard

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to distill.yaml.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override a key of distill.yaml for this run; repeatable; the value is read as YAML "
        "(--set student.kd.alpha=0.3, --set use.commercial=false). Recorded in the run folder and the audit.",
    ),
]
FreshOption = Annotated[bool, typer.Option("--fresh", help="Start the harvest over (delete the ledger).")]
LimitOption = Annotated[int | None, typer.Option("--limit", min=1, help="Harvest at most N prompts.")]
WorkersOption = Annotated[
    int, typer.Option("--workers", min=1, help="Processes that work on batches of records (same output as one).")
]
ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="i/N",
        help="Take only shard i of N (1 ≤ i ≤ N) of the requests, a stable share by request key: run one shard per "
        "machine, then `synthdistill merge` their run folders.",
    ),
]


def project(path: Path, overrides: list[str] | None = None) -> Project:
    """The Project a command works on, rendering through the terminal."""
    return Project(path, set=overrides, allow_outside=render.OPTIONS.allow_outside, reporter=CliReporter())


class CliReporter(Reporter):
    """Progress on stderr, result lines on stdout (render.py decides what --quiet/--json show)."""

    def harvest_observer(self, config: DistillConfig):
        return HarvestProgress(every_s=config.harvest.progress_every_s)

    def train_progress(self, config: DistillConfig):
        return TrainProgress()

    def stage_done(self, stage: str, summary: dict[str, Any], config: DistillConfig) -> None:
        RESULT_LINES[stage](summary, config)

    def planned(self, summary: PlanSummary, config: DistillConfig) -> None:
        render.result(escape(plan_text.one_line(summary)))  # stdout, not under --json


def _harvest_lines(s: dict[str, Any], config: DistillConfig) -> None:
    render.result(
        (f"harvest shard {s['shard']}: " if s.get("shard") else "harvest: ")
        + f"{s['answered']} answered, {s['failed']} failed, {s['already_done']} already done "
        f"({s['prompts']} prompts, {s['requests_sent']} requests sent, {s['tokens_out']} tokens out, "
        f"{s['seconds']:.1f}s); teacher policy {s['policy_id']}: {s['decision']}"
    )
    if s["failed"] and not s["answered"]:
        return  # the Project raises NothingAnswered, which the CLI edge prints
    for warning in s.get("warnings", []):
        render.result(f"  warning: {warning}")
    if s["failed"]:
        render.result(f"  {s['failed']} requests failed after retries; the next `synthdistill harvest` retries them")
    if e := s.get("embeddings"):
        render.result(
            f"  embeddings ({e['model']}, {e['dimensions'] or '?'} dims): {e['embedded']} stored, "
            f"{e['already_done']} already, {e['failed']} failed ({e['requests_sent']} requests)"
            + (f"; stopped by the budget, {e['not_sent']} not asked" if e["stopped"] else "")
        )
    if s.get("tool_calls"):
        render.result(f"  {s['tool_calls']} answers called a tool")
    if s.get("schema_retries") or s.get("schema_invalid"):
        render.result(
            f"  structured answers: {s['schema_retries']} asked again (not valid for their schema), "
            f"{s['schema_invalid']} still invalid after harvest.structured_retries (the `schema` filter drops them)"
        )
    if s["stopped"] == "budget":
        render.result(
            f"  stopped by harvest.budget_usd={s['budget_usd']}: ${s['total_cost_usd']:.4f} spent, "
            f"{s['not_sent']} requests not sent; raise the budget and run again to continue"
        )
    decision = read_decision(config.layout)
    for answered in decision.answering_models if decision else []:
        render.result(f"  the server answered as '{answered.model}': {answered.outcome} ({answered.reason})")
    for warning in decision.warnings if decision else []:  # e.g. a student name `train` will refuse
        render.result(f"  warning: {warning}")


def _filter_lines(report: dict[str, Any], config: DistillConfig) -> None:
    for line in funnel_lines(report):
        render.result(escape(line))  # reasons may hold [brackets], which rich would read as markup


def _build_lines(s: dict[str, Any], config: DistillConfig) -> None:
    render.result(f"build: SFT dataset {s['sft_rows']} → {s['sft_dir']}")
    if s["kd_rows"] is not None:
        render.result(f"build: KD dataset {s['kd_rows']}, coverage {s['kd_coverage']:.1%} → {s['kd_dir']}")
    else:
        render.result(f"build: no KD dataset: {s['kd_skipped_reason']}")


def _train_lines(s: dict[str, Any], config: DistillConfig) -> None:
    render.result(
        f"train: {s.get('method')} student, {s.get('steps')} steps, loss {s.get('train_loss_first'):.4f} → "
        f"{s.get('train_loss_last'):.4f} → {s.get('output_dir')}"
    )


def _eval_lines(result: dict[str, Any], config: DistillConfig) -> None:
    untrained, trained = result["untrained"], result["trained"]
    render.result(
        f"eval: NLL/token {untrained['nll_per_token']:.3f} → {trained['nll_per_token']:.3f}, "
        f"top-1 agreement {untrained['top1_agreement']:.3f} → {trained['top1_agreement']:.3f} "
        f"({result['examples']} held-out examples) → {config.layout.eval_result}"
    )


def _audit_lines(s: dict[str, Any], config: DistillConfig) -> None:
    render.result(
        f"audit: {s['artifacts']} artifacts hashed; teacher {s['teacher']}, policy {s['policy_id']}: "
        f"{s['decision']} → {s['report_html']}"
    )
    render.result(
        f"audit: manifest sha256 {s['manifest_sha256']}; keep it elsewhere and check the run later with "
        f"`synthdistill audit verify {config.run_dir} --expect {s['manifest_sha256']}`"
    )
    if s["secret_found_in"]:
        render.error(f"the API key's value was found in: {', '.join(s['secret_found_in'])}")


RESULT_LINES = {
    "harvest": _harvest_lines,
    "filter": _filter_lines,
    "build": _build_lines,
    "train": _train_lines,
    "eval": _eval_lines,
    "audit": _audit_lines,
}


def register_stage_commands(app: typer.Typer) -> None:
    @app.command()
    def init(
        directory: Annotated[Path, typer.Argument(help="Folder for the new project.")],
        force: Annotated[
            bool, typer.Option("--force", help="Write into a folder that already has a distill.yaml.")
        ] = False,
    ) -> None:
        """Scaffold a project: distill.yaml, prompts/, policies/, schemas/ (a working copy of the quickstart)."""
        target = directory.resolve()
        if (target / "distill.yaml").exists() and not force:
            raise InputError("already holds a distill.yaml (use --force to overwrite)", file=target / "distill.yaml")
        init_project(target)
        config = target / "distill.yaml"
        render.result(
            f"wrote a project to {target}; next: synthdistill plan -c {config} (what it will cost, sending nothing), "
            f"then synthdistill run -c {config}"
        )
        render.emit_json({"project": str(target), "config": str(target / "distill.yaml")})

    @app.command()
    def run(
        config: ConfigOption = Path("distill.yaml"),
        until: Annotated[
            str | None, typer.Option("--until", help=f"Stop after this stage: {', '.join(STAGES)}.")
        ] = None,
        fresh: FreshOption = False,
        overrides: SetOption = None,
    ) -> None:
        """Run every stage in order: harvest, filter, build, train, eval, audit."""
        if until is not None and until not in STAGES:
            raise InputError(f"--until must be one of {', '.join(STAGES)} (got '{until}')")
        stages = project(config, overrides)
        summary = stages.run(until=until, fresh=fresh)
        layout = stages.config.layout
        render.result(f"\ndone: run folder {layout.run_dir}")
        for label, path in (
            ("datasets", layout.datasets_dir),
            ("student", layout.student_dir),
            ("eval", layout.eval_result),
            ("audit", layout.audit_dir),
            ("view", layout.view_page),
        ):
            if path.exists():
                render.result(f"  {label:9} {path}")
        render.emit_json(summary)

    @app.command("plan")
    def plan_command(
        config: ConfigOption = Path("distill.yaml"),
        limit: LimitOption = None,
        shard: ShardOption = None,
        overrides: SetOption = None,
    ) -> None:
        """Say what `harvest` will be, sending nothing: the gate's verdict, requests, tokens, cost, disk, time."""
        data = project(config, overrides).plan(limit=limit, shard=Shard.parse(shard) if shard else None)
        summary = PlanSummary.model_validate(data)
        for line in plan_text.lines(summary):
            render.result(escape(line))
        if not summary.gate.allowed:
            raise PolicyDenied(summary.gate.refusal or summary.gate.reason, summary=data)
        render.emit_json(data)

    @app.command("harvest")
    def harvest_command(
        config: ConfigOption = Path("distill.yaml"),
        limit: LimitOption = None,
        fresh: FreshOption = False,
        shard: ShardOption = None,
        overrides: SetOption = None,
    ) -> None:
        """Ask the teacher for answers and top-k logprobs (resumes; the policy gate runs first)."""
        parsed = Shard.parse(shard) if shard else None
        render.emit_json(project(config, overrides).harvest(limit=limit, fresh=fresh, shard=parsed))

    @app.command("filter")
    def filter_command(
        config: ConfigOption = Path("distill.yaml"), overrides: SetOption = None, workers: WorkersOption = 1
    ) -> None:
        """Filter the harvested answers; dropped rows keep their reasons."""
        render.emit_json(project(config, overrides).filter(workers=workers))

    @app.command("build")
    def build_command(
        config: ConfigOption = Path("distill.yaml"), overrides: SetOption = None, workers: WorkersOption = 1
    ) -> None:
        """Build the SFT and KD datasets."""
        render.emit_json(project(config, overrides).build(workers=workers))

    @app.command("train")
    def train_command(
        config: ConfigOption = Path("distill.yaml"),
        method: Annotated[
            str | None, typer.Option("--method", help="sft, kd or on-policy (default: student.method).")
        ] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint.")] = False,
        overrides: SetOption = None,
    ) -> None:
        """Fine-tune the student with TRL (SFT or offline logit KD), or on its own samples scored by the teacher (on-policy)."""
        if method is not None and method not in ("sft", "kd", "on-policy"):
            raise InputError(f"--method must be sft, kd or on-policy (got '{method}')")
        render.emit_json(project(config, overrides).train(method=method, resume=resume))

    @app.command("eval")
    def eval_command(config: ConfigOption = Path("distill.yaml"), overrides: SetOption = None) -> None:
        """Compare the untrained and the trained student on the held-out split."""
        render.emit_json(project(config, overrides).evaluate())
