"""The exception tree. Library code raises these; only the CLI renders them.

    SynthdistillError                 exit 1 unless a subclass says otherwise
    ├── InputError                    exit 2: bad input, always names a file (and line)
    │   ├── ConfigError               distill.yaml
    │   ├── PackError                 a prompt pack
    │   ├── PolicyFileError           a policy file
    │   ├── MissingSecretError        an api_key_env variable that is not set
    │   ├── RunFolderBusy             another process holds the run folder's lock
    │   ├── DamagedFileError          a file of the run folder is corrupt, truncated or foreign
    │   └── UnsafeWriteError          a write would leave the project or follow a symlink
    ├── PolicyDenied                  exit 3: the licence/terms gate refused
    │   ├── AnsweringModelRefused     exit 3: the server answered as a model the gate refuses
    │   └── ObligationViolation       exit 3: a checkable obligation is broken
    ├── StageError                    exit 1: a stage cannot run (e.g. its input is missing,
    │   │                                     the teacher model cannot load)
    │   └── NothingAnswered           exit 1: every request of a harvest failed (carries the summary)
    └── TeacherError                  exit 1: the teacher failed in a way retrying cannot fix
        ├── TeacherAuthError          exit 1: 401/403, the run stops at once
        └── TeacherStuck              exit 1: no answer for harvest.give_up_after_s (answers kept)

Retryable teacher faults (429, 5xx, timeouts, dropped connections, malformed
answers) are `RetryableTeacherError`; the harvester retries them and records the
last one when retries run out.
"""

from __future__ import annotations

from pathlib import Path


def printable(text: str) -> str:
    """`text` with each non-printable character (newline, NUL, lone surrogate, …) escaped as \\n, \\x00, \\ud800."""
    if text.isprintable():
        return text
    return "".join(
        c
        if c.isprintable()
        else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        if not 0xD800 <= ord(c) <= 0xDFFF
        else f"\\u{ord(c):04x}"
        for c in text
    )


class SynthdistillError(Exception):
    """Base of every error synthdistill raises on purpose."""

    exit_code = 1


class InputError(SynthdistillError):
    """Bad input: a message that names the file and, where known, the line."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | Path | None = None, line: int | None = None):
        # One line, printable: a key or value quoted from a hostile file may hold a newline, a NUL
        # or a lone surrogate (which cannot even be written to a UTF-8 terminal).
        self.message = printable(message)
        self.file = str(file) if file is not None else None
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        return f"{where}{self.message}"


class ConfigError(InputError):
    """distill.yaml is unreadable or invalid."""


class PackError(InputError):
    """A prompt pack is unreadable or invalid."""


class PolicyFileError(InputError):
    """A policy file is unreadable or invalid."""


class MissingSecretError(InputError):
    """The environment variable named by `api_key_env` is not set."""


class RunFolderBusy(InputError):
    """Another process holds the run folder's lock (a second harvest, filter, build or train)."""


class DamagedFileError(InputError):
    """A file of the run folder is corrupt, truncated, empty or not synthdistill's (e.g. the ledger)."""


class UnsafeWriteError(InputError):
    """A write would follow a symlink or land outside the project without --allow-outside."""


class PolicyDenied(SynthdistillError):
    """The licence/terms gate refused the teacher for the declared use (`summary`: what --json still prints)."""

    exit_code = 3

    def __init__(self, message: str, *, summary: dict | None = None):
        self.summary = summary
        super().__init__(message)


class AnsweringModelRefused(PolicyDenied):
    """The server answered as another model than the one asked for, and the gate refuses that model."""

    def __init__(self, message: str, *, model: str):
        self.model = model
        super().__init__(message)


class ObligationViolation(PolicyDenied):
    """A checkable obligation of the teacher's policy is broken (e.g. a name prefix)."""


class StageError(SynthdistillError):
    """A stage cannot run, e.g. because the stage before it has not produced its output."""


class NothingAnswered(StageError):
    """Every request the harvest sent failed: exit 1, and `--json` still prints the run's summary."""

    def __init__(self, message: str, *, summary: dict):
        self.summary = summary
        super().__init__(message)


class TeacherError(SynthdistillError):
    """The teacher failed in a way that retrying cannot fix."""


class TeacherAuthError(TeacherError):
    """The teacher refused our credentials (401/403): the run stops at once."""


class TeacherStuck(TeacherError):
    """The teacher gave no answer for too long (or paused the run too long); every answer so far is kept."""


class RetryableTeacherError(Exception):
    """A transient teacher fault; `retry_after` (seconds) is honoured when the server sent one.

    Not a SynthdistillError: it never reaches the CLI, the harvester consumes it.
    """

    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        self.kind = kind  # e.g. "429", "500", "timeout", "connection", "malformed"
        self.retry_after = retry_after
        super().__init__(f"{kind}: {message}")
