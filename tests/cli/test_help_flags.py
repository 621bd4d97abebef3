"""--help shows flags as flags (`--commercial / --non-commercial`, `--fresh`), never as `<bool>` options."""

from __future__ import annotations

import json
import re

import pytest

from synthdistill.cli import command, main


def _commands(group, prefix=()):
    yield prefix
    for name, sub in getattr(group, "commands", {}).items():
        yield from _commands(sub, prefix + (name,))


EVERY_COMMAND = list(_commands(command))


def _help(capsys, *args: str) -> str:
    assert main([*args, "--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=lambda a: " ".join(a) or "synthdistill")
def test_no_help_shows_a_flag_as_taking_a_bool(capsys, args):
    assert "<bool>" not in _help(capsys, *args)


def test_the_use_flags_of_policy_check_read_as_pairs(capsys):
    out = _help(capsys, "policy", "check")
    for positive, negative in (
        ("--commercial", "--non-commercial"),
        ("--distribute", "--no-distribute"),
        ("--competes", "--not-competing"),
    ):
        line = next(line for line in out.splitlines() if positive + " " in line)
        assert re.search(rf"{positive}\s+{negative}\s+Override", line), line


def test_policy_check_takes_each_flag_without_a_value(capsys):
    base = ["--json", "policy", "check", "-m", "gpt-4o-mini", "--policy", "openai-api"]
    assert main([*base, "--non-commercial", "--no-distribute"]) in (0, 3)
    use = json.loads(capsys.readouterr().out)["use"]
    assert (use["commercial"], use["distribute_student"]) == (False, False)


def test_the_test_sees_every_command():
    names = {" ".join(a) for a in EVERY_COMMAND}
    assert {"run", "harvest", "train", "policy check", "audit verify", "packs list"} <= names
