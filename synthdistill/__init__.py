"""synthdistill: distil a permitted teacher LLM into a small open student, with provenance."""

__version__ = "0.1.0"
