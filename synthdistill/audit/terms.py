"""The terms that govern a run: the teacher's policy, and a Data Provenance triple per dataset.

The triple follows the Data Provenance Initiative (arXiv 2310.16787): `use`
(commercial / unspecified / non-commercial / academic-only), `attribution` (0/1) and
`share_alike` (0/1). A dataset's triple is the most restrictive of its prompt packs'
licences and the teacher's terms, and each value says which source set it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthdistill.errors import PolicyFileError
from synthdistill.policy import load_policy_file
from synthdistill.shipped import shipped_dir

if TYPE_CHECKING:
    from synthdistill.policy import Decision

USE_ORDER = ("commercial", "unspecified", "non-commercial", "academic-only")

# (use, attribution, share-alike) of the licences prompt packs commonly carry.
LICENCE_TRIPLES: dict[str, tuple[str, int, int]] = {
    "CC0-1.0": ("commercial", 0, 0),
    "PDDL-1.0": ("commercial", 0, 0),
    "Unlicense": ("commercial", 0, 0),
    "CC-BY-3.0": ("commercial", 1, 0),
    "CC-BY-4.0": ("commercial", 1, 0),
    "CC-BY-SA-3.0": ("commercial", 1, 1),
    "CC-BY-SA-4.0": ("commercial", 1, 1),
    "CC-BY-NC-4.0": ("non-commercial", 1, 0),
    "CC-BY-NC-SA-4.0": ("non-commercial", 1, 1),
    "CC-BY-ND-4.0": ("commercial", 1, 0),
    "CC-BY-NC-ND-4.0": ("non-commercial", 1, 0),
    "ODC-By-1.0": ("commercial", 1, 0),
    "ODbL-1.0": ("commercial", 1, 1),
    "CDLA-Permissive-1.0": ("commercial", 1, 0),
    "CDLA-Permissive-2.0": ("commercial", 1, 0),
    "CDLA-Sharing-1.0": ("commercial", 1, 1),
    "Apache-2.0": ("commercial", 1, 0),
    "MIT": ("commercial", 1, 0),
    "BSD-2-Clause": ("commercial", 1, 0),
    "BSD-3-Clause": ("commercial", 1, 0),
    "ISC": ("commercial", 1, 0),
    "MPL-2.0": ("commercial", 1, 1),
    "GPL-2.0-only": ("commercial", 1, 1),
    "GPL-3.0-only": ("commercial", 1, 1),
    "LGPL-3.0-only": ("commercial", 1, 1),
    "AGPL-3.0-only": ("commercial", 1, 1),
    "GFDL-1.3-only": ("commercial", 1, 1),
}


def policy_path(decision: Decision | None, project_dir: Path | None) -> Path | None:
    """The decision's policy file (recorded as `policies/<file>` under the project or the tool)."""
    if decision is None or not decision.policy_file:
        return None
    path = Path(decision.policy_file)
    if path.is_absolute():
        return path
    if decision.origin == "shipped":
        return shipped_dir("policies").parent / path
    return (project_dir / path) if project_dir is not None else None


def load_policy_terms(decision: Decision | None, project_dir: Path | None) -> dict[str, Any] | None:
    """The policy file the decision names, as it reads now (None when it is gone or invalid).

    Adds what the decision may not carry (commercial_use, kind, notes, conditions) and the file's hash now.
    """
    path = policy_path(decision, project_dir)
    if path is None or not path.is_file():
        return None

    try:
        loaded = load_policy_file(path)
    except PolicyFileError:
        return None
    return {**loaded.policy.model_dump(mode="json"), "path": str(loaded.path), "sha256_now": loaded.sha256}


def teacher_triple(decision: Decision | None, policy: dict[str, Any] | None) -> dict[str, Any]:
    """What the teacher's terms add to every dataset made from its outputs."""
    policy = policy or {}
    use, attribution, share_alike, because = "commercial", 0, 0, []
    if decision is None:
        return {"use": "unspecified", "attribution": 0, "share_alike": 0, "because": ["no policy decision recorded"]}
    title = decision.policy_title or decision.policy_id or "the teacher's policy"
    if policy.get("commercial_use") == "forbidden" or decision.outcome == "deny":
        use = "non-commercial"
        because.append(f"use: {title} forbids commercial use of the outputs")
    if (decision.outputs_for_training or policy.get("outputs_for_training")) == "derivative":
        share_alike = 1
        because.append(f"share-alike: under {title} a model trained on the outputs is a derivative; the terms pass on")
    for obligation in decision.obligations:
        text = f"{obligation.id} {obligation.text}".lower()
        if any(word in text for word in ("attribution", "built with", "display", "notice", "credit")):
            attribution = 1
            because.append(f"attribution: obligation '{obligation.id}' of {title}")
            break
    return {"use": use, "attribution": attribution, "share_alike": share_alike, "because": because}


def licence_triple(spdx: str | None, source: str) -> dict[str, Any]:
    """The triple of one prompt pack's licence."""
    if spdx in LICENCE_TRIPLES:
        use, attribution, share_alike = LICENCE_TRIPLES[spdx]
        because = []
        if use != "commercial":
            because.append(f"use: {source} is {spdx}")
        if attribution:
            because.append(f"attribution: {source} is {spdx}")
        if share_alike:
            because.append(f"share-alike: {source} is {spdx}")
        return {"use": use, "attribution": attribution, "share_alike": share_alike, "because": because}
    return {
        "use": "unspecified",
        "attribution": 0,
        "share_alike": 0,
        "because": [f"use: {source} has licence {spdx or 'none'}, whose terms the tool does not know"],
    }


def combine(triples: list[dict[str, Any]]) -> dict[str, Any]:
    """The most restrictive of several triples, with every reason kept."""
    if not triples:
        return {"use": "unspecified", "attribution": 0, "share_alike": 0, "because": ["no sources recorded"]}
    use = max((t["use"] for t in triples), key=USE_ORDER.index)
    because = [reason for t in triples for reason in t["because"]]
    if use == "commercial":
        because.insert(0, "use: every source permits commercial use")
    return {
        "use": use,
        "attribution": max(t["attribution"] for t in triples),
        "share_alike": max(t["share_alike"] for t in triples),
        "because": because,
    }


def dataset_triple(pack_licences: list[tuple[str, str | None]], decision: Decision | None, policy) -> dict[str, Any]:
    """A dataset's triple from its packs' (name, licence) and the teacher's terms."""
    parts = [licence_triple(spdx, f"pack '{name}'") for name, spdx in pack_licences]
    return combine(parts + [teacher_triple(decision, policy)])
