"""The ``trellis`` command. Each group of sub-commands lives in its own module and is
registered here (one name per line, so parallel additions merge cleanly)."""

from __future__ import annotations

import typer

from trellis._version import __version__
from trellis.cli import (
    alerts,
    archive,
    db,
    device_models,
    experiment,
    flows,
    lineage,
    models,
    mqtt,
    quarantine,
    query,
    reprocess,
    rules,
    security,
    semantic,
    serve,
    sim,
)

__all__ = ["app", "main"]

app = typer.Typer(
    help="Trellis: an AIoT platform from pilot to production.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(serve.demo)
app.command()(serve.serve)
app.command("sim")(sim.simulate)
app.add_typer(alerts.app, name="alerts")
app.add_typer(mqtt.app, name="mqtt")
app.add_typer(db.app, name="db")
app.add_typer(experiment.app, name="experiment")
app.command("query")(query.query)
app.add_typer(quarantine.app, name="quarantine")
app.add_typer(models.app, name="models")
app.add_typer(device_models.app, name="device-models")
app.add_typer(rules.app, name="rules")
app.add_typer(flows.app, name="flows")
app.add_typer(security.users_app, name="users")
app.add_typer(security.audit_app, name="audit")
app.add_typer(security.policy_app, name="policy")
app.add_typer(semantic.app, name="semantic")
app.command("reprocess")(reprocess.reprocess)
app.command("lineage")(lineage.lineage)
app.add_typer(archive.app, name="archive")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point of the ``trellis`` script."""
    app()
