"""`synthdistill policy ...` (filled in by the policy work)."""

import typer

policy_app = typer.Typer(help="List, show and check teacher licence/terms policies.", no_args_is_help=True)
