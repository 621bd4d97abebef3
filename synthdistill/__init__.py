"""synthdistill: distil a permitted teacher LLM into a small open student, with provenance.

    from synthdistill import Project
    Project("distill.yaml").run()

`Project` and `Reporter` (project.py) are loaded on first use (PEP 562), so importing one module
of the package (`synthdistill.run_layout`, the audit) does not load every stage; no heavy library
(torch, transformers, …) is imported before a stage runs either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from synthdistill.project import STAGES, Project, Reporter

__all__ = ["STAGES", "Project", "Reporter", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("STAGES", "Project", "Reporter"):
        from synthdistill import project

        return getattr(project, name)
    raise AttributeError(f"module 'synthdistill' has no attribute '{name}'")
