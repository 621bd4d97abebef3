"""Which policies govern a teacher (pure): normalised names and hosts, globs, overrides.

Spelling must not change the answer, so a model id is normalised before matching, and
the policies' globs the same way, so that specificity compares like with like:

- trimmed and lower-cased; split on "/", and *every* path segment is a name to match
  (an org, a re-uploader's org or a local folder adds its own segment; the most
  restrictive policy any of them matches decides, so `smollm2/../llama-2-7b` cannot hide);
- in a segment `_` reads as `-`, an Ollama tag `name:tag` as `name-tag` (`latest` dropped),
  and a file extension (.gguf, .safetensors, .bin) and re-upload suffixes (-GGUF, -AWQ,
  -GPTQ, -MLX, -4bit, -Q4_K_M, …) are stripped.

A host is lower-cased without port, user-info or trailing dot, and a policy's host glob
covers the host's sub-domains.

Which kinds match where:
- a `weights-licence` policy matches by its model globs (wherever the weights are served);
- an `api-terms` policy matches when the teacher is reached at one of its hosts, and by its
  model globs only for an id no weights licence matches (an API-only name such as
  `claude-sonnet-4-5`): such a model is the provider's wherever it is reached, so Claude
  through a cloud or a router is bound by Anthropic's terms and the route's. Local
  weights are never governed by an API's terms.

A project policy that declares `overrides: [ids]` (with a written `permission`) sets
those policies aside wherever it matches; with an empty `applies_to` it matches where
the policies it overrides do.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from synthdistill.policy.format import LoadedPolicy, Policy

_EXTENSION = re.compile(r"\.(gguf|safetensors|bin|pt|pth)$")
# Suffixes re-uploaders add to a model's name: formats, precisions, quantisations (-q4-k-m, .q4-1, -iq4-xs).
_REUPLOAD_SUFFIX = re.compile(
    r"[.-](gguf|ggml|awq|gptq|mlx|exl2|onnx|openvino|fp8|fp16|bf16|f16|f32|int4|int8|[2-8]bit|bnb|"
    r"i?q[1-8](?:-[a-z0-9]{1,2}){0,2})$"
)


def normalise_segment(segment: str) -> str:
    """One path segment as matching sees it: lower-case, '_' as '-', Ollama tag joined, suffixes stripped."""
    name = segment.strip().lower().replace("_", "-")
    if ":" in name:
        base, tag = name.split(":", 1)
        name = base if tag in ("", "latest") else f"{base}-{tag.replace(':', '-')}"
    name = _EXTENSION.sub("", name)
    while True:
        stripped = _REUPLOAD_SUFFIX.sub("", name)
        if stripped == name or not stripped:
            return name
        name = stripped


def model_names(model: str) -> list[str]:
    """Every normalised path segment of a model id, last first (the model's own name)."""
    segments = [normalise_segment(s) for s in model.strip().split("/")]
    names: list[str] = []
    for name in reversed(segments):
        if name and name not in (".", "..") and name not in names:
            names.append(name)
    return names


def same_model(a: str, b: str) -> bool:
    """True when two ids name the same model once normalised (its own name, the last segment)."""
    names_a, names_b = model_names(a), model_names(b)
    return bool(names_a and names_b) and names_a[0] == names_b[0]


def normalise_glob(glob: str) -> str:
    """A policy's model glob, normalised like a name (its last path segment) so specificity is comparable."""
    return glob.strip().lower().rstrip("/").rsplit("/", 1)[-1].replace("_", "-").replace(":", "-")


def host_of(url: str) -> str | None:
    """The host of a base URL: lower-case, without port, user-info or trailing dot (None when there is none)."""
    text = url.strip()
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname
    except ValueError:
        return None
    host = (host or "").rstrip(".")
    return host or None


def _host_glob_matches(host: str, glob: str) -> bool:
    pattern = glob.strip().lower().rstrip(".")
    return fnmatch.fnmatchcase(host, pattern) or fnmatch.fnmatchcase(host, f"*.{pattern}")


def _literal_length(glob: str) -> int:
    return sum(1 for ch in glob if ch not in "*?[]")


def model_specificity(policy: Policy, names: list[str]) -> int | None:
    """Literal length of the most specific model glob matching one of `names` (not excluded), or None."""
    excluded = [normalise_glob(g) for g in policy.applies_to.not_models]
    scores = [
        _literal_length(pattern)
        for pattern in (normalise_glob(g) for g in policy.applies_to.models)
        for name in names
        if fnmatch.fnmatchcase(name, pattern) and not any(fnmatch.fnmatchcase(name, x) for x in excluded)
    ]
    return max(scores, default=None)


def host_specificity(policy: Policy, hosts: list[str]) -> int | None:
    """Literal length of the most specific host glob matching one of `hosts`, or None."""
    scores = [_literal_length(g) for g in policy.applies_to.hosts for h in hosts if _host_glob_matches(h, g)]
    return max(scores, default=None)


@dataclass(frozen=True)
class Match:
    """A policy that governs a teacher, how it matched, and how specific the match is."""

    loaded: LoadedPolicy
    matched_by: str  # model | host | model+host | overrides | policy-id
    specificity: int


def _own_match(loaded: LoadedPolicy, names: list[str], hosts: list[str], api_by_model: bool) -> Match | None:
    policy = loaded.policy
    model_score = model_specificity(policy, names)
    host_score = host_specificity(policy, hosts)
    if policy.kind == "api-terms" and not api_by_model:
        model_score = None  # an API's model names count only at its hosts, or for an API-only id
    if model_score is None and host_score is None:
        return None
    by = "+".join(k for k, s in (("model", model_score), ("host", host_score)) if s is not None)
    return Match(loaded, by, (model_score or 0) + (host_score or 0))


def loose_matches(policies: list[LoadedPolicy], model: str, hosts: list[str]) -> list[Match]:
    """Every policy whose own globs name the teacher, by model or host, whatever its kind."""
    names = model_names(model)
    found = (_own_match(p, names, hosts, api_by_model=True) for p in policies)
    return [m for m in found if m is not None]


@dataclass(frozen=True)
class Overridden:
    """A policy set aside by a project policy that holds a written permission."""

    policy: LoadedPolicy
    by: LoadedPolicy


def governing_matches(
    policies: list[LoadedPolicy], model: str, hosts: list[str]
) -> tuple[list[Match], list[Overridden]]:
    """Every policy that governs the teacher (overrides applied), and the ones set aside by an override."""
    names = model_names(model)
    weights = [m for p in policies if p.policy.kind == "weights-licence" if (m := _own_match(p, names, hosts, True))]
    api_only = not weights
    api = [m for p in policies if p.policy.kind == "api-terms" if (m := _own_match(p, names, hosts, api_only))]
    matches = weights + api
    matched_ids = {m.loaded.id: m for m in matches}
    for loaded in policies:
        empty = not (loaded.policy.applies_to.models or loaded.policy.applies_to.hosts)
        if loaded.policy.overrides and empty and loaded.id not in matched_ids:
            hits = [matched_ids[i] for i in loaded.policy.overrides if i in matched_ids]
            if hits:
                matches.append(Match(loaded, "overrides", max(h.specificity for h in hits)))
    overriders = [m.loaded for m in matches if m.loaded.policy.overrides]
    set_aside = [Overridden(m.loaded, by) for m in matches for by in overriders if m.loaded.id in by.policy.overrides]
    aside_ids = {o.policy.id for o in set_aside}
    return [m for m in matches if m.loaded.id not in aside_ids], set_aside
