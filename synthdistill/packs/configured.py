"""The packs a config names, loaded once per process and shared by every stage that reads them."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from synthdistill.errors import PackError
from synthdistill.packs.loading import cached_pack, load_pack, resolve_pack_path
from synthdistill.packs.reading import Pack, PackInfo, iter_prompts, read_pack_info
from synthdistill.packs.rows import combination_count
from synthdistill.records import Prompt

if TYPE_CHECKING:
    from synthdistill.config import DistillConfig


# A rows file larger than this is streamed: its prompts are rendered again in each pass, never held
# (each rendered prompt is several pydantic objects); a smaller pack is rendered once per process and kept.
STREAM_ABOVE_BYTES = 4 * 2**20
STREAM_ABOVE_PROMPTS = 10_000  # a `variables:` pack's combinations


def configured_packs(config: DistillConfig) -> list[Pack]:
    """Every pack of `harvest.packs`, whole, in config order (cards, audit, verifiers, eval)."""
    return [configured_pack(config, reference) for reference in config.harvest.packs]


def configured_pack_infos(config: DistillConfig) -> list[PackInfo]:
    """Every pack of `harvest.packs` without its rows, in config order (provenance, cards, verifiers)."""
    return [read_pack_info(resolve_pack_path(reference, config.project_dir)) for reference in config.harvest.packs]


class PromptIds:
    """A set of prompt ids (16 hex digits: `records.prompt_id_for`) held as one sorted uint64 array, 8 bytes each."""

    def __init__(self, numbers: array):
        """`numbers`: the ids as an `array("Q")` (`int(prompt_id, 16)` each)."""
        import numpy as np  # not at import: `packs` is on the CLI's fast paths

        self.sorted = np.unique(np.frombuffer(numbers, dtype=np.uint64) if len(numbers) else np.empty(0, np.uint64))

    def __len__(self) -> int:
        return len(self.sorted)

    def contains(self, prompt_ids: list[str]) -> list[bool]:
        """Whether each id is in the set (an id not of that form never is)."""
        import numpy as np

        numbers = [_number(p) for p in prompt_ids]
        wanted = np.array([0 if n is None else n for n in numbers], dtype=np.uint64)
        at = np.minimum(np.searchsorted(self.sorted, wanted), max(len(self.sorted) - 1, 0))
        found = (self.sorted[at] == wanted) if len(self.sorted) else np.zeros(len(wanted), dtype=bool)
        return [bool(hit) and n is not None for hit, n in zip(found, numbers)]


def _number(prompt_id: str) -> int | None:
    """The id as a number, or None when it is not 16 lower-case hex digits (no prompt of ours has such an id)."""
    try:
        number = int(prompt_id, 16)
    except ValueError:
        return None
    return number if len(prompt_id) == 16 and number >= 0 and f"{number:016x}" == prompt_id else None


def configured_prompt_ids(config: DistillConfig) -> PromptIds:
    """The ids of the prompts `configured_prompts` gives, rendered one at a time and not kept (8 bytes a prompt)."""
    limit = config.harvest.limit
    numbers = array("Q")
    for reference in config.harvest.packs:
        path = resolve_pack_path(reference, config.project_dir)
        # a pack this process already rendered (the harvest, in one process with the filter) is not rendered again
        cached = cached_pack(path, max_prompt_chars=config.harvest.max_prompt_chars)
        prompts = cached.prompts if cached is not None else iter_prompts(path, config.harvest.max_prompt_chars)
        for prompt in prompts:
            if limit is not None and len(numbers) >= limit:
                return PromptIds(numbers)
            numbers.append(int(prompt.prompt_id, 16))
    return PromptIds(numbers)


def configured_prompt_stream(config: DistillConfig, limit: int | None = None) -> Iterator[Prompt]:
    """`configured_prompts` one at a time, held by no one (8 bytes a prompt, to find repeats).

    A pack's problem is raised as `load_pack` words it; a prompt that repeats an earlier one of its
    pack is found only at the end of that pack, so act on the prompts once the stream has ended
    (the harvest plans in a first pass: harvest_plan.py).
    """
    import numpy as np

    limit = limit if limit is not None else config.harvest.limit
    made = 0
    for reference in config.harvest.packs:
        if limit is not None and made >= limit:
            return
        left = None if limit is None else limit - made
        path = resolve_pack_path(reference, config.project_dir)
        if _kept_whole(path):  # rendered once, then every pass and stage of this process reads the cache
            prompts = configured_pack(config, reference, left).prompts
        else:
            cached = cached_pack(path, max_prompt_chars=config.harvest.max_prompt_chars)
            prompts = cached.prompts if cached is not None else iter_prompts(path, config.harvest.max_prompt_chars)
        ids = array("Q")
        try:
            for prompt in prompts:
                if left is not None and len(ids) >= left:
                    break
                ids.append(int(prompt.prompt_id, 16))
                yield prompt
        except PackError:
            configured_pack(config, reference, left)  # every problem of the pack, as the harvest always said them
            raise
        made += len(ids)
        if len(np.unique(np.frombuffer(ids, dtype=np.uint64))) < len(ids):
            configured_pack(config, reference, left)  # raises: names the repeated row
            raise PackError("a prompt repeats an earlier one of its pack", file=path)


def _kept_whole(path: Path) -> bool:
    """Whether a pack is small enough to hold rendered."""
    spec = read_pack_info(path).spec
    if spec.rows is None:
        return combination_count(spec.variables) <= STREAM_ABOVE_PROMPTS
    rows = path / spec.rows
    return not rows.is_file() or rows.stat().st_size <= STREAM_ABOVE_BYTES  # a missing file: load_pack says so


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
