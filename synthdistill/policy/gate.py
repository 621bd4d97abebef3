"""The gate at the edges of every stage: decide before the first request, and keep the decision true.

    harvest:  gate(config) → decision.json        (a refusal sends nothing)
              AnsweringModelGate.check(model)     (the server answers as another model → decide on it)
    filter, build, train, eval, audit:
              recheck_use(config)                 (a use broader than the gated one is decided again)

decision.json records the use the gate decided for (the *gated use*). A later stage whose
config declares a broader use — commercial where it was not, a distributed student, a
competing one, another attestation — has the gate decide again before any work, and a
refusal stops it with exit 3. A narrower use is covered by the gated one.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from synthdistill.config import DistillConfig, UseConfig
from synthdistill.errors import AnsweringModelRefused, ConfigError, InputError, PolicyDenied
from synthdistill.policy.decision import evaluate, refusal_message
from synthdistill.policy.decision_record import AnsweringModel, Decision, DecisionObligation, EmbeddingModelDecision
from synthdistill.policy.format import LoadedPolicy, load_policies
from synthdistill.policy.matching import host_of, loose_matches, same_model
from synthdistill.run_layout import RunLayout
from synthdistill.safe_write import write_text
from synthdistill.yaml_source import load_yaml


def read_decision(layout: RunLayout) -> Decision | None:
    """The decision the gate recorded for a run (None before the first harvest); every reader of it comes here."""
    path = layout.decision
    if not path.exists():
        return None
    try:
        return Decision.model_validate_json(path.read_bytes())
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise InputError(
            f"not a gate decision ({first}); re-run `synthdistill harvest` to decide again", file=path
        ) from None


def write_decision(layout: RunLayout, decision: Decision) -> Path:
    """Write decision.json beside the ledger (temp file, then rename; never through a symlink)."""
    path = layout.decision
    write_text(path, decision.model_dump_json(indent=2) + "\n", inside=layout.run_dir)
    return path


def _config_line(config: DistillConfig, loc: tuple) -> int | None:
    try:
        return load_yaml(config.path, ConfigError).line_of(loc)
    except ConfigError:
        return None


def _student_name(config: DistillConfig) -> str | None:
    # The name `train` will give the student (student.name, else the run name); None = no student yet.
    return (config.student.name or config.name) if config.student else None


def decide_for(
    config: DistillConfig,
    use: UseConfig | None = None,
    model: str | None = None,
    policies: list[LoadedPolicy] | None = None,
    policy_choice: str | None = None,
    base_urls: list[str] | None = None,
) -> Decision:
    """The gate's decision for the configured teacher (or `model` at its hosts, or at `base_urls`) and `use`."""
    try:
        return evaluate(
            policies if policies is not None else load_policies(config.project_dir),
            model or config.teacher.model,
            config.teacher.base_urls if base_urls is None else base_urls,
            use or config.use,
            policy_choice or config.teacher.policy,
            student_name=_student_name(config),
            project_hint=str(config.project_dir / "policies"),
        )
    except ConfigError as exc:
        raise ConfigError(exc.message, file=config.path, line=_config_line(config, ("teacher", "policy"))) from None


def gate(config: DistillConfig) -> Decision:
    """Decide before the first request; raise PolicyDenied (exit 3) unless the teacher is allowed."""
    decision = decide_for(config)
    if not decision.allowed:
        raise PolicyDenied(refusal_message(decision))
    return decision


def gate_embeddings(config: DistillConfig, decision: Decision, model: str, base_urls: list[str], choice: str):
    """The run's decision with `harvest.embeddings`' model decided too: an embedding is a teacher output.

    The teacher's own model at the teacher's hosts is covered by its decision; another model or host
    is decided on its own, for the gated use, and a refusal raises PolicyDenied (exit 3) before any
    request. An allowed one is recorded in `embedding_model`, its obligations added to the run's.
    """
    hosts = sorted({h for h in (host_of(u) for u in base_urls) if h})
    if same_model(model, config.teacher.model) and hosts == sorted(decision.teacher_hosts):
        return decision
    found = decide_for(config, use=decision.gated_use, model=model, policy_choice=choice, base_urls=base_urls)
    ids = [i for i in [found.policy_id, *(g.policy_id for g in found.also_governed_by)] if i]
    verdict = EmbeddingModelDecision(
        model=model, hosts=hosts, outcome=found.outcome, policy_ids=ids, reason=found.reason
    )
    if not found.allowed:
        lead = f"harvest.embeddings: the embedding model '{model}' is decided on its own, and the gate refused it"
        raise PolicyDenied(refusal_message(found, lead, "Nothing was sent (no answer, no embedding)."))
    known = {(o.policy_id, o.id) for o in decision.obligations}
    extra = [o for o in found.obligations if (o.policy_id, o.id) not in known]
    outcome = "allow-with-obligations" if extra and decision.outcome == "allow" else decision.outcome
    update = {"embedding_model": verdict, "obligations": [*decision.obligations, *extra], "outcome": outcome}
    return decision.model_copy(update=update)


def broader_use(gated: UseConfig, current: UseConfig) -> list[str]:
    """How `current` asks for more than the gated use (empty when the gated use covers it)."""
    wider = [
        f"use.{key}: {getattr(gated, key)} → {getattr(current, key)}"
        for key in ("commercial", "distribute_student", "competes_with_teacher_provider")
        if getattr(current, key) and not getattr(gated, key)
    ]
    if (current.attestation or "").strip() != (gated.attestation or "").strip():
        wider.append("use.attestation changed")
    return wider


def recheck_use(config: DistillConfig, stage: str, required: bool = True) -> Decision | None:
    """The run's decision, decided again first when the config's use is broader than the gated one.

    Raises PolicyDenied (exit 3) when the gate refuses the broader use, or when `required`
    and no decision was recorded (the teacher was never gated for this run).
    """
    recorded = read_decision(config.layout)
    if recorded is None:
        if not required:
            return None
        raise PolicyDenied(
            f"{stage}: no gate decision for this run ({config.layout.decision} is missing); "
            f"run `synthdistill harvest -c {config.path.name}` so the gate decides first"
        )
    wider = broader_use(recorded.gated_use, config.use)
    if not wider:
        return recorded
    decision = decide_for(config, model=recorded.teacher_model, policy_choice=recorded.policy_choice)
    decision = decision.model_copy(update={"answering_models": recorded.answering_models})
    if not decision.allowed:
        lead = f"{stage}: the run was gated for a narrower use ({'; '.join(wider)}); deciding again, the gate refused"
        raise PolicyDenied(refusal_message(decision, lead, f"The {stage} stage did nothing."))
    write_decision(config.layout, decision)
    return decision


class AnsweringModelGate:
    """Decides on the model a server answers as, when it is not the one asked for (once per model).

    `check` returns None for the model asked for, else the decision on the answering
    model (added to the run's decision), and raises AnsweringModelRefused when the gate
    refuses it: the harvest then stops before storing anything more.
    """

    def __init__(self, config: DistillConfig, decision: Decision):
        self.config, self.decision = config, decision
        self._policies: list[LoadedPolicy] | None = None
        self._seen: dict[str, AnsweringModel] = {}

    def check(self, answered: str | None) -> AnsweringModel | None:
        if not answered or same_model(answered, self.config.teacher.model):
            return None
        if answered in self._seen:
            return self._seen[answered]
        if self._policies is None:
            self._policies = load_policies(self.config.project_dir)
        decision = decide_for(
            self.config,
            use=self.decision.gated_use,
            model=answered,
            policies=self._policies,
            policy_choice=self._choice_for(answered),
        )
        ids = [i for i in [decision.policy_id, *(g.policy_id for g in decision.also_governed_by)] if i]
        verdict = AnsweringModel(model=answered, outcome=decision.outcome, policy_ids=ids, reason=decision.reason)
        self._seen[answered] = verdict
        if not decision.allowed:
            self.decision = self.decision.model_copy(
                update={"answering_models": [*self.decision.answering_models, verdict]}
            )
            lead = f"the server answered as '{answered}', not '{self.config.teacher.model}', and the gate refused it"
            nothing = (
                "The harvest stopped; answers from that model are marked in the ledger and left out of the datasets."
            )
            raise AnsweringModelRefused(refusal_message(decision, lead, nothing), model=answered)
        self._absorb(verdict, decision.obligations)
        return verdict

    def _choice_for(self, answered: str) -> str:
        """teacher.policy carries over to the answering model where the chosen policy names it too; else match."""
        choice = self.decision.policy_choice
        names = {m.loaded.id for m in loose_matches(self._policies or [], answered, self.decision.teacher_hosts)}
        return choice if choice in names else "auto"

    def _absorb(self, verdict: AnsweringModel, obligations: list[DecisionObligation]) -> None:
        """The run's decision carries the answering model and its obligations, for the cards and the audit."""
        known = {(o.policy_id, o.id) for o in self.decision.obligations}
        extra = [o for o in obligations if (o.policy_id, o.id) not in known]
        self.decision = self.decision.model_copy(
            update={
                "answering_models": [*self.decision.answering_models, verdict],
                "obligations": [*self.decision.obligations, *extra],
                "outcome": "allow-with-obligations"
                if extra and self.decision.outcome == "allow"
                else self.decision.outcome,
            }
        )
