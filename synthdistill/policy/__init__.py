"""The licence/terms gate (design §6): match a teacher to its policies, decide, enforce.

    format       policy files: pydantic models, loading, the JSON Schema
    matching     normalised names and hosts → the policies that govern a teacher (pure)
    decision_record  the Decision record: what was decided, why, what passes on
    decision     governing policies + declared use → Decision (pure)
    obligations  the one checker of duties, for train, cards and audit
    gate         the I/O edges: gate before the harvest, the answering model, the gated use

The gate raises `PolicyDenied` (exit 3) for `deny`, `needs-attestation` and a teacher
no policy matches, with the reason and how to proceed; it returns the `Decision` otherwise.
"""

from synthdistill.policy.decision import (
    Verdict,
    decide,
    evaluate,
    is_statement,
    refusal_message,
)
from synthdistill.policy.decision_record import ALLOWED, SEVERITY, Decision, DecisionObligation
from synthdistill.policy.format import (
    LoadedPolicy,
    Policy,
    find_policy,
    load_policies,
    load_policy_file,
    load_policy_folder,
)
from synthdistill.policy.gate import (
    AnsweringModelGate,
    gate,
    gate_embeddings,
    read_decision,
    recheck_use,
    write_decision,
)
from synthdistill.policy.matching import host_of, model_names, normalise_segment, same_model
from synthdistill.policy.obligations import (
    enforce_obligations,
    name_problem,
    obligation_problems,
    obligations_markdown,
    override_lines,
)

__all__ = [
    "ALLOWED",
    "SEVERITY",
    "AnsweringModelGate",
    "Decision",
    "DecisionObligation",
    "LoadedPolicy",
    "Policy",
    "Verdict",
    "decide",
    "enforce_obligations",
    "evaluate",
    "find_policy",
    "gate",
    "gate_embeddings",
    "host_of",
    "is_statement",
    "load_policies",
    "load_policy_file",
    "load_policy_folder",
    "model_names",
    "name_problem",
    "normalise_segment",
    "obligation_problems",
    "obligations_markdown",
    "override_lines",
    "read_decision",
    "recheck_use",
    "refusal_message",
    "same_model",
    "write_decision",
]
