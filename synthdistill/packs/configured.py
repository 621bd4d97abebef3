"""The packs a config names, loaded once per process and shared by every stage that reads them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synthdistill.packs.loading import Pack, load_pack, resolve_pack_path
from synthdistill.records import Prompt

if TYPE_CHECKING:
    from synthdistill.config import DistillConfig


def configured_packs(config: DistillConfig) -> list[Pack]:
    """Every pack of `harvest.packs`, whole, in config order (cards, audit, verifiers, eval)."""
    return [configured_pack(config, reference) for reference in config.harvest.packs]


def configured_prompts(config: DistillConfig, limit: int | None = None) -> list[Prompt]:
    """Every prompt of the configured packs, in pack order, cut to `limit` (or harvest.limit).

    With a limit, no row past it is read or rendered (a 50 MB rows file with `--limit 5`
    costs five rows), and no later pack is loaded.
    """
    limit = limit if limit is not None else config.harvest.limit
    prompts: list[Prompt] = []
    for reference in config.harvest.packs:
        if limit is not None and len(prompts) >= limit:
            break
        prompts.extend(configured_pack(config, reference, None if limit is None else limit - len(prompts)).prompts)
    return prompts


def configured_pack(config: DistillConfig, reference: str, limit: int | None = None) -> Pack:
    """One pack of the config, as the harvest reads it (PackError when it is broken)."""
    # the harvest's max_prompt_chars everywhere: one cache entry serves every stage of a run
    path = resolve_pack_path(reference, config.project_dir)
    return load_pack(path, limit=limit, max_prompt_chars=config.harvest.max_prompt_chars)
