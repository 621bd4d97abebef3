"""`synthdistill audit ...` (filled in by the audit work)."""

import typer

audit_app = typer.Typer(help="Write and verify the audit of a run.", invoke_without_command=True)
