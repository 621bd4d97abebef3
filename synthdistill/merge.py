"""`synthdistill merge`: join the ledgers of shards harvested on several machines into one run folder.

    each run folder's ledger opened through HarvestStore (so it is migrated first)
    → refuse ledgers that asked different things (teacher, policy decision, harvest digest)
    → copy every answer the target lacks (the same request key once; a different answer for a
      key the target holds is a conflict: the first kept, the conflict reported), then the
      failures of requests the target does not know, the refused models, schema failures and
      the teacher embeddings (harvest.embeddings) the target lacks
    → the merge (inputs, shards, counts, conflicts) recorded in the target ledger for the audit.

The target is `-o OUT` or the first run folder. Merging the same folders again adds nothing.
Every folder's lock is held while merging, so a shard still harvesting is refused, not half read.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from pydantic import BaseModel, Field

from synthdistill.errors import InputError
from synthdistill.policy import read_decision, write_decision
from synthdistill.run_layout import RunLayout
from synthdistill.run_lock import run_folder_lock
from synthdistill.store import HarvestStore

MAX_CONFLICTS_KEPT = 100  # conflicts listed in the summary and the ledger (all are counted)


class MergeInput(BaseModel):
    run_dir: str
    shard: str | None = Field(description="i/N of the last harvest of this ledger (None: not sharded)")
    config_digest: str | None
    answered: int
    failed: int
    added: int = Field(0, description="answers the target did not hold")
    duplicates: int = Field(0, description="answers the target already held, the same")
    conflicts: int = Field(0, description="answers the target held differently (the target's kept)")
    failures_added: int = 0
    embeddings_added: int = Field(0, description="teacher embeddings (harvest.embeddings) the target did not hold")
    open_batches: int = Field(0, description="Batch API batches not collected yet (harvest that shard again)")


class MergeConflict(BaseModel):
    request_key: str
    kept_from: str
    dropped_from: str


class MergeSummary(BaseModel):
    target: str
    ledger: str
    inputs: list[MergeInput]
    shards: list[str]
    missing_shards: list[str] = Field(description="shards i/N that no input holds")
    answered: int = Field(description="answers in the target ledger after the merge")
    failed: int
    added: int
    duplicates: int
    conflicts: int
    conflict_list: list[MergeConflict] = Field(description=f"the first {MAX_CONFLICTS_KEPT} conflicts")
    warnings: list[str] = Field(default_factory=list)


def _identity(run_dir: Path, store: HarvestStore) -> dict[str, str | None]:
    """What must be equal for two ledgers to merge: the teacher, the policy decision and the harvest digest."""
    decision = read_decision(RunLayout(run_dir))
    if decision is None:
        layout = RunLayout(run_dir)
        raise InputError(
            f"has no harvest decision ({layout.relative(layout.decision)}): run `synthdistill harvest` there first",
            file=run_dir,
        )
    last = store.last_run_summary() or {}
    return {
        "teacher": decision.teacher_model,
        "policy": f"{decision.policy_id}: {decision.outcome}",
        "harvest digest (teacher, sampling, packs)": last.get("config_digest"),
    }


def _check_compatible(identities: dict[Path, dict[str, str | None]]) -> None:
    (first, base), *rest = identities.items()
    for run_dir, identity in rest:
        for what, value in identity.items():
            if value is None or base[what] is None:
                continue  # an older ledger without a digest: the teacher and the decision still decide
            if value != base[what]:
                raise InputError(
                    f"cannot merge {first} and {run_dir}: their {what} differ ('{base[what]}' vs '{value}'); "
                    "shards must harvest the same teacher, policy decision and config (only base_url may differ)"
                )


def _missing_shards(shards: list[str]) -> list[str]:
    counts = {int(s.split("/")[1]) for s in shards}
    if len(counts) != 1:
        return []
    (count,) = counts
    return [f"{i}/{count}" for i in range(1, count + 1) if f"{i}/{count}" not in shards]


def _copy(
    source: HarvestStore, target: HarvestStore, item: MergeInput, name: str, conflicts: list, holder: Callable
) -> None:
    """Copy one input's answers, failures, refused models and schema failures into the target (see merge)."""
    with target.transaction():
        for record in source.records():
            if target.put_done(record):
                item.added += 1
                continue
            held = target.record(record.request_key)
            if held is not None and (held.text, held.reasoning, held.tool_calls) == (
                record.text,
                record.reasoning,
                record.tool_calls,
            ):
                item.duplicates += 1
            else:
                item.conflicts += 1
                conflicts.append(
                    MergeConflict(
                        request_key=record.request_key, kept_from=holder(record.request_key), dropped_from=name
                    )
                )
        for failure in source.failures():
            item.failures_added += target.put_failed_if_absent(
                failure["request_key"], failure["prompt_id"], failure["pack"], failure["sample_index"], failure
            )
        for model, reason in source.refused_models().items():
            target.refuse_model(model, reason)
        for row in source.schema_failures():
            target.put_schema_failure(row["request_key"], row["attempt"], row["seed"], row["reason"], row["answer"])
    # each spec's vectors in one transaction of their own; a vector the target holds is kept as it is
    for spec, rows in source.embeddings_by_spec().items():
        item.embeddings_added += target.put_embeddings(spec, rows)


def merge(run_dirs: list[str | Path], output: str | Path | None = None) -> MergeSummary:
    """Merge the ledgers of `run_dirs` into `output` (default: the first); see the module docstring."""
    inputs = list(dict.fromkeys(Path(d).resolve() for d in run_dirs))
    if not inputs:
        raise InputError("merge needs at least one run folder")
    target_dir = Path(output).resolve() if output is not None else inputs[0]
    for run_dir in inputs:
        if not RunLayout(run_dir).ledger.exists():
            layout = RunLayout(run_dir)
            raise InputError(f"has no harvest ledger ({layout.relative(layout.ledger)})", file=run_dir)
    target_layout = RunLayout(target_dir)
    with ExitStack() as stack:
        for run_dir in dict.fromkeys([target_dir, *inputs]):
            stack.enter_context(run_folder_lock(run_dir, "merge"))
        stores = {d: stack.enter_context(HarvestStore(RunLayout(d).ledger)) for d in inputs}
        identities = {d: _identity(d, store) for d, store in stores.items()}
        target_exists = target_dir not in stores and target_layout.ledger.exists()
        target = stores.get(target_dir) or stack.enter_context(HarvestStore(target_layout.ledger))
        if target_exists:
            identities = {target_dir: _identity(target_dir, target), **identities}
        _check_compatible(identities)
        conflicts: list[MergeConflict] = []
        items = []
        # a target that held answers before is listed first: the shards it brings count too
        for run_dir, store in ({target_dir: target, **stores} if target_exists else stores).items():
            counts, last = store.counts(), store.last_run_summary() or {}
            item = MergeInput(
                run_dir=str(run_dir),
                shard=last.get("shard"),
                config_digest=last.get("config_digest"),
                answered=counts["done"],
                failed=counts["failed"],
                open_batches=store.open_batch_count(),
            )
            if store is not target:
                earlier = [target_dir, *(Path(i.run_dir) for i in items)]
                _copy(store, target, item, str(run_dir), conflicts, lambda key: _holder(key, earlier, stores))
            items.append(item)
        if read_decision(target_layout) is None:
            write_decision(target_layout, read_decision(RunLayout(inputs[0])))
        summary = _summary(target_dir, target, items, conflicts, target.merged_shards())
        target.put_merge(summary.model_dump(exclude={"target", "ledger"}))
    return summary


def _holder(key: str, earlier: list[Path], stores: dict[Path, HarvestStore]) -> str:
    """The first folder (the target, then the inputs merged before) holding the answer the target kept."""
    for run_dir in earlier:
        if run_dir in stores and stores[run_dir].record(key) is not None:
            return str(run_dir)
    return str(earlier[0])


def _summary(
    target_dir: Path, target: HarvestStore, items: list[MergeInput], conflicts: list, merged_before: set[str]
) -> MergeSummary:
    shards = sorted({item.shard for item in items if item.shard} | merged_before)
    counts = target.counts()
    warnings = [
        f"{item.run_dir} has {item.open_batches} Batch API batches not collected yet: run its harvest again, "
        "then merge again"
        for item in items
        if item.open_batches
    ]
    missing = _missing_shards(shards)
    if missing:
        warnings.append(f"no input holds shard {', '.join(missing)}: the merged ledger lacks their requests")
    return MergeSummary(
        target=str(target_dir),
        ledger=str(RunLayout(target_dir).ledger),
        inputs=items,
        shards=shards,
        missing_shards=missing,
        answered=counts["done"],
        failed=counts["failed"],
        added=sum(i.added for i in items),
        duplicates=sum(i.duplicates for i in items),
        conflicts=sum(i.conflicts for i in items),
        conflict_list=conflicts[:MAX_CONFLICTS_KEPT],
        warnings=warnings,
    )
