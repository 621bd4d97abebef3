"""synthdistill: distil a permitted teacher LLM into a small open student, with provenance.

    from synthdistill import Project
    Project("distill.yaml").run()

No heavy library (torch, transformers, …) is imported here: the stages import them when they run.
"""

from synthdistill.project import STAGES, Project, Reporter
from synthdistill.version import __version__

__all__ = ["STAGES", "Project", "Reporter", "__version__"]
