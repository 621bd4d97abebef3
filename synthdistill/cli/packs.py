"""`synthdistill packs ...` (filled in by the packs work)."""

import typer

packs_app = typer.Typer(help="List, show, validate, render, create and measure prompt packs.", no_args_is_help=True)
