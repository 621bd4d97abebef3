"""What the audit report says, as plain data: sections of key/value lists, tables and text.

Written for a reader who never saw the config: who the teacher is, which terms govern
its outputs, what was decided and why, and which obligations pass on. `report_render`
turns the same sections into Markdown and into a self-contained HTML page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from synthdistill.audit.report_plan import plan_rows, shard_blocks
from synthdistill.policy import DecisionObligation, name_problem


@dataclass(frozen=True)
class Link:
    text: str
    url: str


Cell = str | Link


@dataclass
class Block:
    kind: str  # text | kv | table | funnel | details
    text: str = ""
    rows: list[list[Cell]] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list[Block]


def _yes_no(value: Any) -> str:
    return {True: "yes", False: "no"}.get(value, "not declared")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def headline(manifest: dict[str, Any]) -> list[list[Cell]]:
    """The four facts a reviewer looks for first."""
    teacher = (manifest.get("teachers") or [{}])[0]
    licence = teacher.get("licence") or {}
    return [
        ["Teacher", teacher.get("model") or "unknown"],
        *override_rows(teacher),
        ["Terms", f"{teacher.get('policy_title') or 'no policy recorded'} ({licence.get('spdx') or 'no licence id'})"],
        ["Decision", teacher.get("decision") or "not recorded (no harvest yet)"],
        *[
            [
                "Server answered as",
                f"{a['model']}: {a['outcome']} ({', '.join(a.get('policy_ids') or []) or 'no policy'})",
            ]
            for a in teacher.get("answering_models") or []
        ],
        ["Obligations", f"{len(teacher.get('obligations') or [])} (listed below)"],
    ]


def override_rows(teacher: dict[str, Any]) -> list[list[Cell]]:
    """Shipped terms a project policy set aside on a written permission: the first thing a reviewer must see."""
    return [
        [
            "Override",
            f"project policy {o['policy_id']} sets aside {', '.join(o['overridden'])} on a written permission from "
            f"{o['permission'].get('granted_by')} ({o['permission'].get('date')}, reference "
            f"{o['permission'].get('reference')})",
        ]
        for o in teacher.get("overrides") or []
    ]


def teacher_section(teacher: dict[str, Any]) -> list[Block]:
    licence, document, use = teacher.get("licence") or {}, teacher.get("document") or {}, teacher.get("use") or {}
    conditions = {k: v for k, v in (teacher.get("conditions") or {}).items() if v is not None and k != "stated"}
    doc_cell: Cell = Link(document["url"], document["url"]) if document.get("url") else "not recorded"
    rows: list[list[Cell]] = [
        ["Teacher model (requested)", teacher.get("model") or "unknown"],
        ["Answered as", ", ".join(teacher.get("models_answered") or []) or "no answers yet"],
        [
            "Backend",
            f"{teacher.get('backend') or '?'}"
            + (f", endpoints {', '.join(teacher['endpoints'])}" if teacher.get("endpoints") else ""),
        ],
        [
            "Governing terms",
            f"{teacher.get('policy_title') or 'none'} (policy {teacher.get('policy_id')}, "
            f"{teacher.get('policy_kind') or 'kind not recorded'}, "
            f"{teacher.get('policy_origin') or 'origin not recorded'})",
        ],
        ["Licence", f"{licence.get('name') or 'not recorded'} ({licence.get('spdx') or 'no SPDX id'})"],
        ["Document", doc_cell],
        ["Document version / retrieved", f"{document.get('version') or '?'} / {document.get('retrieved') or '?'}"],
        ["Outputs may train other models", teacher.get("outputs_for_training") or "not recorded"],
        ["Commercial use of outputs", teacher.get("commercial_use") or "not recorded"],
        ["Decision", teacher.get("decision") or "not recorded"],
        ["Why", teacher.get("reason") or "not recorded"],
        [
            "Deciding clause" + (" (summary)" if teacher.get("clause_kind") == "summary" else ""),
            teacher.get("clause") or "not recorded",
        ],
        ["Attestation", teacher.get("attestation") or "none given"],
        [
            "Gated use (what the gate decided for)",
            f"commercial: {_yes_no(use.get('commercial'))}; distribute the student: "
            f"{_yes_no(use.get('distribute_student'))}; "
            f"competes with the teacher's provider: {_yes_no(use.get('competes_with_teacher_provider'))}",
        ],
    ]
    if conditions:
        rows.append(
            [
                "Conditions",
                "; ".join(
                    f"{k.replace('_', ' ')}: {v:,}" if isinstance(v, int) else f"{k}: {v}"
                    for k, v in conditions.items()
                ),
            ]
        )
    rows += [["Condition stated", c] for c in (teacher.get("conditions") or {}).get("stated") or []]
    rows += [["Set aside", f"{s['policy_id']}: {s['why']}"] for s in teacher.get("set_aside") or []]
    for other in teacher.get("also_governed_by") or []:
        rows.append(
            [
                "Also governed by",
                f"{other.get('title')} (policy {other.get('policy_id')}): "
                f"{other.get('outcome')}; {other.get('clause')}",
            ]
        )
    if teacher.get("notes"):
        rows.append(["Notes", teacher["notes"]])
    return [Block("kv", rows=rows)]


def student_name(manifest: dict[str, Any]) -> str | None:
    """The trained student's name, else the name the config gives it."""
    student = (manifest.get("stages") or {}).get("student") or {}
    settings = ((manifest.get("inputs") or {}).get("config") or {}).get("settings") or {}
    return student.get("name") or (settings.get("student") or {}).get("name")


def _checked(obligation: dict[str, Any], name: str | None) -> str:
    prefix = (obligation.get("check") or {}).get("name_prefix")
    if not prefix:
        return "no (you must do it)"
    typed = DecisionObligation.model_validate({"policy_id": "", **obligation})
    verdict = (
        ""
        if name is None
        else (f"; student '{name}' BREAKS it" if name_problem(typed, name) else f"; student '{name}' keeps it")
    )
    return f'yes: the student\'s name must begin with "{prefix}"{verdict}'


def obligations_section(teacher: dict[str, Any], name: str | None = None) -> list[Block]:
    obligations = teacher.get("obligations") or []
    if not obligations:
        return [Block("text", text="The teacher's terms carry no obligations for this use.")]
    rows = []
    for o in obligations:
        checked = _checked(o, name)
        rows.append(
            [o.get("id") or "", o.get("text") or "", o.get("policy_id") or teacher.get("policy_id") or "", checked]
        )
    return [
        Block("text", text="These duties pass to whoever uses or distributes the datasets and the student:"),
        Block("table", headers=["id", "obligation", "from policy", "checked by the tool"], rows=rows),
    ]


def _triple(t: dict[str, Any] | None) -> str:
    if not t:
        return ""
    attribution = "attribution" if t["attribution"] else "no attribution"
    return f"{t['use']} / {attribution} / {'share-alike' if t['share_alike'] else 'no share-alike'}"


def licences_section(manifest: dict[str, Any]) -> list[Block]:
    rows: list[list[Cell]] = []
    for t in manifest.get("teachers", []):
        licence, document = t.get("licence") or {}, t.get("document") or {}
        rows.append(
            [
                f"teacher outputs: {t.get('model')}",
                f"{licence.get('name') or t.get('policy_title') or 'none'} ({licence.get('spdx') or '?'})",
                str(document.get("version") or ""),
                Link(document["url"], document["url"]) if document.get("url") else "",
                t.get("decision") or "",
            ]
        )
    for p in manifest["inputs"].get("packs", []):
        if p.get("name"):
            rows.append(
                [
                    f"prompt pack: {p['name']} {p.get('version', '')}",
                    p.get("licence") or "?",
                    p.get("version") or "",
                    p.get("source") or "",
                    "input",
                ]
            )
    stages = manifest.get("stages") or {}
    terms = " and ".join(t.get("policy_title") or t.get("policy_id") or "?" for t in manifest.get("teachers", []))
    for kind, info in (stages.get("datasets") or {}).items():
        rows.append(
            [
                f"dataset: {kind}",
                f"{info.get('licence') or '?'} (prompts); answers under {terms}",
                info.get("written_at") or "",
                "machine-generated",
                _triple(info.get("provenance_triple")),
            ]
        )
    if stages.get("student"):
        card = stages["student"].get("card") or {}
        rows.append(
            [
                "student model",
                str(card.get("license") or "?"),
                stages["student"].get("written_at") or "",
                f"base: {card.get('base_model') or '?'}",
                "trained",
            ]
        )
    return [Block("table", headers=["component", "licence / terms", "version / date", "source", "status"], rows=rows)]


def provenance_section(manifest: dict[str, Any]) -> list[Block]:
    datasets = (manifest.get("stages") or {}).get("datasets") or {}
    if not datasets:
        return [Block("text", text="No dataset has been built yet.")]
    rows = [
        [
            kind,
            t["use"],
            "required" if t["attribution"] else "not required",
            "yes" if t["share_alike"] else "no",
            "; ".join(t["because"]),
        ]
        for kind, info in datasets.items()
        if (t := info.get("provenance_triple"))
    ]
    return [
        Block(
            "text",
            text="The Data Provenance Initiative's triple for each dataset: the most restrictive of its prompt "
            "licences and the teacher's terms.",
        ),
        Block("table", headers=["dataset", "use", "attribution", "share-alike", "because"], rows=rows),
    ]


def _reasons(step: dict[str, Any]) -> str:
    text = ", ".join(f"{k}: {v}" for k, v in step["reasons"].items())
    if step.get("modified"):
        changed = ", ".join(f"{k}: {v}" for k, v in (step.get("modified_reasons") or {}).items())
        text += f"{'; ' if text else ''}{step['modified']} kept but modified ({changed})"
    return text


def funnel_section(manifest: dict[str, Any]) -> list[Block]:
    steps = manifest.get("funnel") or []
    if not steps:
        return [Block("text", text="No stage has produced counts yet.")]
    rows = [[s["stage"], str(s["count"]), str(s["dropped"]), _reasons(s)] for s in steps]
    return [
        Block("funnel", steps=steps),
        Block("table", headers=["stage", "rows", "dropped", "drop reasons"], rows=rows),
    ]


def plan_section(manifest: dict[str, Any]) -> list[Block]:
    lead, rows = plan_rows(manifest)
    blocks = [Block("text", text=lead)] + (
        [Block("table", headers=["", "planned", "spent"], rows=rows)] if rows else []
    )
    shard_lead, merged = shard_blocks(manifest)
    blocks += [Block("text", text=shard_lead)] if shard_lead else []
    headers = ["merged at", "run folder", "shard", "answered", "added", "conflicts"]
    return blocks + ([Block("table", headers=headers, rows=merged)] if merged else [])


def datasets_section(manifest: dict[str, Any]) -> list[Block]:
    stages = manifest.get("stages") or {}
    rows = [
        [kind, info["path"], ", ".join(f"{k}: {v}" for k, v in info["splits"].items()), str(info["rows"])]
        for kind, info in (stages.get("datasets") or {}).items()
    ]
    blocks = (
        [Block("table", headers=["dataset", "folder", "splits", "rows"], rows=rows)]
        if rows
        else [Block("text", text="No datasets yet.")]
    )
    student, evaluation = stages.get("student"), stages.get("eval")
    if student:
        card = student.get("card") or {}
        train = student.get("train") or {}
        rows = [
            [
                "Student",
                f"{student.get('name') or '?'}: {student['path']}/ "
                f"({student['files']} files, {_size(student['bytes'])})",
            ],
            ["Starting weights", str(card.get("base_model") or "?")],
            ["Student licence", str(card.get("license_name") or card.get("license") or "?")],
        ]
        if train:
            rows.append(
                [
                    "Training",
                    f"{train.get('method')}, {train.get('steps')} steps on {train.get('examples')} rows, "
                    f"loss {train.get('train_loss_first')} → {train.get('train_loss_last')}",
                ]
            )
        if train.get("on_policy"):
            rows.append(["On-policy", on_policy_text(train)])
        blocks.append(Block("kv", rows=rows))
    if evaluation:
        rows = []
        for label in ("untrained", "trained"):
            m = evaluation.get(label) or {}
            metrics = ("nll_per_token", "top1_agreement", "kd_kl", "teacher_nll_on_student_samples")
            rows.append([label, *(str(m.get(key)) for key in metrics)])
        blocks.append(
            Block(
                "text", text=f"Evaluation ({evaluation.get('method')}, {evaluation.get('examples')} held-out examples):"
            )
        )
        headers = ["student", "NLL / token", "top-1 agreement", "KD KL", "teacher NLL of own samples"]
        blocks.append(Block("table", headers=headers, rows=rows))
    return blocks


def on_policy_text(train: dict[str, Any]) -> str:
    """An on-policy run in one line: rounds, samples, teacher tokens scored, the scoring endpoint and decision."""
    info = train["on_policy"]
    endpoints = ", ".join(info.get("scoring_endpoints") or []) or "in-process teacher"
    return (
        f"{info.get('rounds')} rounds, {info.get('samples_scored')} student samples scored by {info.get('teacher')} "
        f"({info.get('teacher_tokens_scored')} teacher tokens, {info.get('scoring_requests_sent')} requests) at "
        f"{endpoints}; gate {info.get('decision')} (policy {info.get('policy_id')}); batches {info.get('batches')}; "
        f"share of student tokens with teacher targets {train.get('teacher_target_share')}"
    )


def _override_rows(stage: str, entry: dict[str, Any]) -> list[list[Cell]]:
    """One row for the overrides a stage ran with (none when it ran the file as written)."""
    overrides = entry.get("overrides") or []
    if not overrides:
        return []
    given = "; ".join(o.get("given_as") or f"{o.get('key')}={o.get('value')}" for o in overrides)
    return [[f"overrides ({stage})", given, entry.get("effective_sha256") or ""]]


def record_sections(manifest: dict[str, Any]) -> list[Section]:
    """Timeline, inputs, secrets, environment and artifacts."""
    times = [[k.replace("_", " "), v] for k, v in manifest["timestamps"].items() if v]
    times.append(["audit written", manifest["generated_at"]])
    inputs = manifest["inputs"]
    rows: list[list[Cell]] = []
    if inputs.get("config"):
        rows.append(["config", inputs["config"]["path"], inputs["config"]["sha256"]])
        rows += _override_rows("audit", inputs["config"])
    for stage, snapshot in (inputs.get("stage_overrides") or {}).items():
        rows += _override_rows(stage, snapshot)
    rows += [[f"pack {p.get('name')}", p.get("path") or "", p.get("sha256") or ""] for p in inputs.get("packs", [])]
    rows += [[f"policy {p.get('id')}", p.get("path") or "", p.get("sha256") or ""] for p in inputs.get("policies", [])]
    versions = manifest["versions"]
    env = [["synthdistill", versions["tool"]["version"]], ["Python", f"{versions['python']} ({versions['platform']})"]]
    env += [[name, v] for name, v in versions["libraries"].items() if v]
    artifacts = [[a["path"], _size(a["size"]), a["sha256"]] for a in manifest["artifacts"]]
    return [
        Section("Timeline", "timeline", [Block("kv", rows=times)]),
        Section("Inputs and their hashes", "inputs", [Block("table", headers=["input", "path", "sha256"], rows=rows)]),
        Section("Secrets", "secrets", [Block("text", text=manifest["secrets"]["note"] + ".")]),
        Section("Environment", "environment", [Block("kv", rows=env)]),
        Section(
            f"Artifacts ({len(artifacts)} files)",
            "artifacts",
            [
                Block(
                    "text",
                    text="Every file of the run folder with its sha256; "
                    "`synthdistill audit verify RUN_DIR` rechecks them. "
                    f"Not hashed: {manifest['hashing']['excluded']}.",
                ),
                Block("details", summary=f"{len(artifacts)} files", headers=["path", "size", "sha256"], rows=artifacts),
            ],
        ),
    ]


def report_sections(manifest: dict[str, Any]) -> list[Section]:
    """Every section of the report, in reading order."""
    teachers = manifest.get("teachers") or [{}]
    sections = [Section("At a glance", "glance", [Block("kv", rows=headline(manifest))])]
    for teacher in teachers:
        sections.append(Section("Teacher and terms", "teacher", teacher_section(teacher)))
        sections.append(Section("Obligations", "obligations", obligations_section(teacher, student_name(manifest))))
    sections += [
        Section("Licences", "licences", licences_section(manifest)),
        Section("Data provenance (use / attribution / share-alike)", "provenance", provenance_section(manifest)),
        Section("Plan and spend", "plan", plan_section(manifest)),
        Section("Funnel", "funnel", funnel_section(manifest)),
        Section("Datasets, student and evaluation", "datasets", datasets_section(manifest)),
    ]
    return sections + record_sections(manifest)
