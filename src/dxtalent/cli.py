"""The `dxtalent` command line: one entry point for operators, integrators and the demo."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True, help="dxtalent: DX-leader certification and target progress."
)


@app.command()
def version() -> None:
    """Print the version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("dxtalent"))
