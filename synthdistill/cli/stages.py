"""The stage commands: init, run, harvest, filter, build, train, eval."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from synthdistill import audit, build, evaluate, filter_stage, harvest, plan, train
from synthdistill.cli import plan_text, render
from synthdistill.cli.progress import HarvestProgress, TrainProgress
from synthdistill.config import load_config
from synthdistill.errors import DamagedFileError, InputError, NothingAnswered, PolicyDenied
from synthdistill.filters.funnel import funnel_lines
from synthdistill.policy import read_decision
from synthdistill.run_lock import is_secondary_rank, run_folder_lock
from synthdistill.scaffold import init_project

STAGES = ("harvest", "filter", "build", "train", "eval", "audit")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to distill.yaml.")]
FreshOption = Annotated[bool, typer.Option("--fresh", help="Start the harvest over (delete the ledger).")]
LimitOption = Annotated[int | None, typer.Option("--limit", min=1, help="Harvest at most N prompts.")]


def _config(path: Path):
    return load_config(path, allow_outside=render.OPTIONS.allow_outside)


def _locked(config, command: str):
    """The run folder's lock for the life of `command` (ranks other than 0 of a launch share rank 0's)."""
    return contextlib.nullcontext() if is_secondary_rank() else run_folder_lock(config.run_dir, command)


def do_plan(config, limit: int | None = None) -> dict:
    summary = plan.run(config, limit=limit)
    data = summary.model_dump()
    for line in plan_text.lines(summary):
        render.result(escape(line))
    if not summary.gate.allowed:
        raise PolicyDenied(summary.gate.refusal or summary.gate.reason, summary=data)
    return data


def do_harvest(config, limit: int | None = None, fresh: bool = False) -> dict:
    try:
        planned = plan.run(config, limit=limit, fresh=fresh)
    except DamagedFileError:  # a damaged ledger is harvest's own to report (after it records the gate's decision)
        planned = None
    if planned is not None and planned.gate.allowed:  # a refusal, too, is harvest's to report (exit 3)
        render.result(escape(plan_text.one_line(planned)))
    with HarvestProgress(every_s=config.harvest.progress_every_s) as progress:
        summary = harvest.run(config, limit=limit, fresh=fresh, observer=progress, plan=planned)
    data = summary.model_dump()
    render.result(
        f"harvest: {summary.answered} answered, {summary.failed} failed, {summary.already_done} already done "
        f"({summary.prompts} prompts, {summary.requests_sent} requests sent, {summary.tokens_out} tokens out, "
        f"{summary.seconds:.1f}s); teacher policy {summary.policy_id}: {summary.decision}"
    )
    if summary.failed and not summary.answered:
        kinds = ", ".join(f"{kind} ×{n}" for kind, n in sorted(summary.errors_by_kind.items()))
        raise NothingAnswered(
            f"harvest: every request failed ({summary.failed}; errors: {kinds}); nothing was answered. "
            "Check the teacher, then run `synthdistill harvest` again: the next run retries them",
            summary=data,
        )
    if summary.failed:
        render.result(f"  {summary.failed} requests failed after retries; the next `synthdistill harvest` retries them")
    if summary.stopped == "budget":
        render.result(
            f"  stopped by harvest.budget_usd={summary.budget_usd}: ${summary.total_cost_usd:.4f} spent, "
            f"{summary.not_sent} requests not sent; raise the budget and run again to continue"
        )

    decision = read_decision(config.layout)
    for answered in decision.answering_models if decision else []:
        render.result(f"  the server answered as '{answered.model}': {answered.outcome} ({answered.reason})")
    for warning in decision.warnings if decision else []:  # e.g. a student name `train` will refuse
        render.result(f"  warning: {warning}")
    return data


def do_filter(config) -> dict:
    report = filter_stage.run(config)
    for line in funnel_lines(report):
        render.result(escape(line))  # reasons may hold [brackets], which rich would read as markup
    return report


def do_build(config) -> dict:
    summary = build.run(config)
    render.result(f"build: SFT dataset {summary.sft_rows} → {summary.sft_dir}")
    if summary.kd_rows is not None:
        render.result(f"build: KD dataset {summary.kd_rows}, coverage {summary.kd_coverage:.1%} → {summary.kd_dir}")
    else:
        render.result(f"build: no KD dataset: {summary.kd_skipped_reason}")
    return summary.model_dump()


def do_train(config, method: str | None = None, resume: bool = False) -> dict:
    with TrainProgress() as progress:
        summary = train.run(config, method=method, resume=resume, progress=progress)
    data = summary.model_dump() if hasattr(summary, "model_dump") else dict(summary.__dict__)
    render.result(
        f"train: {data.get('method')} student, {data.get('steps')} steps, loss {data.get('train_loss_first'):.4f} → "
        f"{data.get('train_loss_last'):.4f} → {data.get('output_dir')}"
    )
    return data


def do_eval(config) -> dict:
    result = evaluate.run(config)
    untrained, trained = result["untrained"], result["trained"]
    render.result(
        f"eval: NLL/token {untrained['nll_per_token']:.3f} → {trained['nll_per_token']:.3f}, "
        f"top-1 agreement {untrained['top1_agreement']:.3f} → {trained['top1_agreement']:.3f} "
        f"({result['examples']} held-out examples) → {config.layout.eval_result}"
    )
    return result


def do_audit(config) -> dict:
    summary = audit.run(config.run_dir, config=config)
    render.result(
        f"audit: {summary['artifacts']} artifacts hashed; teacher {summary['teacher']}, policy {summary['policy_id']}: "
        f"{summary['decision']} → {summary['report_html']}"
    )
    render.result(
        f"audit: manifest sha256 {summary['manifest_sha256']}; keep it elsewhere and check the run later with "
        f"`synthdistill audit verify {config.run_dir} --expect {summary['manifest_sha256']}`"
    )
    if summary["secret_found_in"]:
        render.error(f"the API key's value was found in: {', '.join(summary['secret_found_in'])}")
    return summary


def _run_stages(cfg, until: str | None, fresh: bool) -> dict:
    """Every stage up to `until`, in order; their summaries by stage."""
    summary: dict = {}
    last = STAGES.index(until) if until else len(STAGES) - 1
    for stage in STAGES[: last + 1]:
        if stage == "harvest":
            summary[stage] = do_harvest(cfg, fresh=fresh)
        elif stage == "filter":
            summary[stage] = do_filter(cfg)
        elif stage == "build":
            summary[stage] = do_build(cfg)
        elif stage == "train":
            summary[stage] = do_train(cfg)
        elif stage == "eval":
            summary[stage] = do_eval(cfg)
        elif stage == "audit":
            summary[stage] = do_audit(cfg)
    return summary


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
        render.result(f"wrote a project to {target}; next: synthdistill run -c {target / 'distill.yaml'}")
        render.emit_json({"project": str(target), "config": str(target / "distill.yaml")})

    @app.command()
    def run(
        config: ConfigOption = Path("distill.yaml"),
        until: Annotated[
            str | None, typer.Option("--until", help=f"Stop after this stage: {', '.join(STAGES)}.")
        ] = None,
        fresh: FreshOption = False,
    ) -> None:
        """Run every stage in order: harvest, filter, build, train, eval, audit."""
        if until is not None and until not in STAGES:
            raise InputError(f"--until must be one of {', '.join(STAGES)} (got '{until}')")
        cfg = _config(config)
        with _locked(cfg, "run"):
            summary = _run_stages(cfg, until, fresh)
        layout = cfg.layout
        render.result(f"\ndone: run folder {layout.run_dir}")
        for label, path in (
            ("datasets", layout.datasets_dir),
            ("student", layout.student_dir),
            ("eval", layout.eval_result),
            ("audit", layout.audit_dir),
        ):
            if path.exists():
                render.result(f"  {label:9} {path}")
        render.emit_json(summary)

    @app.command("plan")
    def plan_command(config: ConfigOption = Path("distill.yaml"), limit: LimitOption = None) -> None:
        """Say what `harvest` will be, sending nothing: the gate's verdict, requests, tokens, cost, disk, time."""
        render.emit_json(do_plan(_config(config), limit=limit))

    @app.command("harvest")
    def harvest_command(
        config: ConfigOption = Path("distill.yaml"), limit: LimitOption = None, fresh: FreshOption = False
    ) -> None:
        """Ask the teacher for answers and top-k logprobs (resumes; the policy gate runs first)."""
        cfg = _config(config)
        with _locked(cfg, "harvest"):
            render.emit_json(do_harvest(cfg, limit=limit, fresh=fresh))

    @app.command("filter")
    def filter_command(config: ConfigOption = Path("distill.yaml")) -> None:
        """Filter the harvested answers; dropped rows keep their reasons."""
        cfg = _config(config)
        with _locked(cfg, "filter"):
            render.emit_json(do_filter(cfg))

    @app.command("build")
    def build_command(config: ConfigOption = Path("distill.yaml")) -> None:
        """Build the SFT and KD datasets."""
        cfg = _config(config)
        with _locked(cfg, "build"):
            render.emit_json(do_build(cfg))

    @app.command("train")
    def train_command(
        config: ConfigOption = Path("distill.yaml"),
        method: Annotated[str | None, typer.Option("--method", help="sft or kd (default: student.method).")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint.")] = False,
    ) -> None:
        """Fine-tune the student with TRL (SFT or offline logit KD)."""
        if method is not None and method not in ("sft", "kd"):
            raise InputError(f"--method must be sft or kd (got '{method}')")
        cfg = _config(config)
        with _locked(cfg, "train"):
            render.emit_json(do_train(cfg, method=method, resume=resume))

    @app.command("eval")
    def eval_command(config: ConfigOption = Path("distill.yaml")) -> None:
        """Compare the untrained and the trained student on the held-out split."""
        cfg = _config(config)
        with _locked(cfg, "eval"):
            render.emit_json(do_eval(cfg))
