"""API keys: read only from the environment variables the config names, never from a file.

The key itself never enters a log, a record, an exception or a report: errors name the variable.
"""

from __future__ import annotations

import os

from synthdistill.config import DistillConfig, EmbeddingsConfig
from synthdistill.errors import MissingSecretError


def read_api_key(config: DistillConfig) -> str | None:
    """The teacher's key, from the environment variable that `teacher.api_key_env` names."""
    name = config.teacher.api_key_env
    if not name:
        return None
    return _from_env(
        name, f"teacher.api_key_env names the environment variable {name}, which is not set; export it first", config
    )


def embeddings_api_key(config: DistillConfig, settings: EmbeddingsConfig) -> str | None:
    """The embedding endpoint's key: `harvest.embeddings.api_key_env`, else the teacher's variable."""
    name = settings.api_key_env or config.teacher.api_key_env
    if not name or config.teacher.backend == "transformers" and settings.base_url is None:
        return None
    return _from_env(
        name,
        f"harvest.embeddings uses the API key in the environment variable {name}, which is not set; export it",
        config,
    )


def _from_env(name: str, missing: str, config: DistillConfig) -> str:
    value = os.environ.get(name)
    if not value:
        raise MissingSecretError(missing, file=config.path)
    return value
