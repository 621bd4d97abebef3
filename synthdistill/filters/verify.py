"""`verify`: drop answers that fail their pack's own verifier (answer, JSON schema, regex).

The verifiers come from the packs in `harvest.packs`: the stage loads the packs into the
filter context and `load_verifiers` puts their verifiers into the params, so the filter is pure.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from synthdistill.packs.verifiers import parse_verify_spec, verify_answer
from synthdistill.records import HarvestRecord


class VerifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    without_verifier: Literal["keep", "drop"] = Field("keep", description="Answers of packs that have no `verify:`")

    # pack name → its verifier (None: the pack has none); filled by load_verifiers
    _verifiers: dict[str, Any] | None = PrivateAttr(None)

    def with_verifiers(self, verifiers: dict[str, Any]) -> VerifyParams:
        """A copy that checks each pack's answers with `verifiers[pack]` (a spec model or dict)."""
        copy = self.model_copy()
        copy._verifiers = {pack: None if spec is None else parse_verify_spec(spec) for pack, spec in verifiers.items()}
        return copy


def load_verifiers(params: VerifyParams, context) -> VerifyParams:
    """The verifier of every pack the config harvests (the stage loaded them into the context)."""
    return params.with_verifiers({pack.name: pack.verify for pack in context.packs})


def verify(records: list[HarvestRecord], params: VerifyParams) -> list[str | None]:
    """'verifier-failed: <why>' for answers their pack's verifier rejects."""
    if params._verifiers is None:
        raise RuntimeError("the verify filter has no verifiers: prepare it with load_verifiers or with_verifiers")
    verdicts: list[str | None] = []
    for record in records:
        spec = params._verifiers.get(record.pack)
        if spec is None:
            missing = record.pack not in params._verifiers
            why = f"pack '{record.pack}' is not in harvest.packs" if missing else f"pack '{record.pack}' has no verify"
            verdicts.append(f"no-verifier: {why}" if params.without_verifier == "drop" else None)
            continue
        passed, reason = verify_answer(spec, record.variables, record.verifiable_text)
        verdicts.append(None if passed else f"verifier-failed: {reason}")
    return verdicts
