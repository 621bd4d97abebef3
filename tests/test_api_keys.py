"""API keys come from the environment variables the config names: the teacher's and the embedding endpoint's."""

from __future__ import annotations

import pytest

from synthdistill.api_keys import embeddings_api_key, read_api_key
from synthdistill.config import load_config
from synthdistill.errors import MissingSecretError
from tests.harvest_fixtures import write_project

URL = "http://127.0.0.1:9/v1"


def test_the_teacher_key_comes_from_its_variable_and_a_missing_one_names_it(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_TEACHER_KEY", raising=False)
    config = load_config(write_project(tmp_path, URL, 1, teacher={"api_key_env": "NO_SUCH_TEACHER_KEY"}))
    with pytest.raises(MissingSecretError) as raised:
        read_api_key(config)
    assert str(raised.value) == f"{config.path}: " + (
        "teacher.api_key_env names the environment variable NO_SUCH_TEACHER_KEY, which is not set; export it first"
    )
    assert raised.value.file == str(config.path)
    monkeypatch.setenv("NO_SUCH_TEACHER_KEY", "sk-teacher")
    assert read_api_key(config) == "sk-teacher"
    assert read_api_key(load_config(write_project(tmp_path / "keyless", URL, 1))) is None


def test_the_embedding_key_has_its_own_variable_or_else_the_teachers(tmp_path, monkeypatch):
    monkeypatch.setenv("TEACHER_KEY", "sk-teacher")
    monkeypatch.delenv("EMBED_KEY", raising=False)
    embeddings = {"model": "embedder", "base_url": URL}
    config = load_config(
        write_project(tmp_path, URL, 1, teacher={"api_key_env": "TEACHER_KEY"}, harvest={"embeddings": embeddings})
    )
    assert embeddings_api_key(config, config.harvest.embeddings) == "sk-teacher"
    own = load_config(
        write_project(
            tmp_path / "own",
            URL,
            1,
            teacher={"api_key_env": "TEACHER_KEY"},
            harvest={"embeddings": {**embeddings, "api_key_env": "EMBED_KEY"}},
        )
    )
    with pytest.raises(
        MissingSecretError,
        match=r"harvest.embeddings uses the API key in the environment variable EMBED_KEY, which is not set",
    ):
        embeddings_api_key(own, own.harvest.embeddings)
    monkeypatch.setenv("EMBED_KEY", "sk-embed")
    assert embeddings_api_key(own, own.harvest.embeddings) == "sk-embed"
