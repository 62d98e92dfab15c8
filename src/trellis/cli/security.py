"""``trellis users``, ``trellis audit`` and ``trellis policy``: local administration.

These work on the metadata database and files directly (whoever runs them can already read
the data directory), so they need no token.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from trellis.cli._common import ConfigOption, console, load_or_exit
from trellis.core.errors import TrellisError

__all__ = ["audit_app", "policy_app", "users_app"]

users_app = typer.Typer(help="Local users and their API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
policy_app = typer.Typer(help="Cedar authorization policies.", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _users(config: Path | None):  # type: ignore[no-untyped-def]
    from trellis.auth.users import UserStore
    from trellis.store.metadata import open_metadata

    settings = load_or_exit(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings, UserStore(open_metadata(settings.metadata_url))


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[
        str,
        typer.Option(help="admin, engineer, data_scientist, operator, viewer, auditor, contractor"),
    ],
    tenant: Annotated[str | None, typer.Option(help="default: the configured tenant")] = None,
    site: Annotated[
        str | None, typer.Option(help="limit the user to one site of the tenant (contractor)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create a user; the generated password is printed once."""
    settings, users = _users(config)
    password = secrets.token_urlsafe(18)
    try:
        users.add(name, tenant or settings.tenant, role, password, site=site)
    except (ValueError, TrellisError) as exc:
        _fail(str(exc), 2)
    from trellis.auth.audit import record_cli

    record_cli(
        settings,
        "cli.users.add",
        tenant=tenant or settings.tenant,
        user=name,
        user_role=role,
        site=site,
    )
    console.print(f"created {escape(name)} ({role}); password, shown once:")
    typer.echo(password)


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    """Every user, its tenant and role."""
    _, users = _users(config)
    table = Table("name", "tenant", "role", "state")
    for row in users.all():
        state = "disabled" if row["disabled"] else "active"
        table.add_row(str(row["name"]), str(row["tenant"]), str(row["role"]), state)
    console.print(table)


@users_app.command("token")
def users_token(
    name: str,
    scope: Annotated[
        list[str] | None, typer.Option(help="read, write, operate, ml, audit, admin")
    ] = None,
    days: Annotated[float, typer.Option(help="lifetime")] = 30.0,
    config: ConfigOption = None,
) -> None:
    """Issue an API token for ``name`` (printed once to stdout; only its hash is kept)."""
    if scope is None:
        scope = ["read"]
    settings, users = _users(config)
    try:
        token = users.issue_token(name, scope or ["read"], days)
    except (ValueError, TrellisError) as exc:
        _fail(str(exc), 2)
    from trellis.auth.audit import record_cli

    record_cli(  # the token itself is never recorded, only its id
        settings,
        "cli.users.token",
        tenant=users.resolve(token).tenant,
        user=name,
        scopes=sorted(scope),
        days=days,
        token_id=token[4:].split(".")[0],
    )
    typer.echo(token)


def _set_disabled(name: str, disabled: bool, config: Path | None) -> None:
    from trellis.auth.sessions import SessionStore

    settings, users = _users(config)
    try:
        users.set_disabled(name, disabled)
    except TrellisError as exc:
        _fail(str(exc), 2)
    if disabled:
        auth = settings.auth
        sessions = SessionStore(
            users.engine, auth.session_hours * 3600, auth.session_idle_minutes * 60
        )
        ended = sessions.end_all(name)
        console.print(f"disabled {escape(name)}: tokens refused, {ended} session(s) ended")
    else:
        console.print(f"enabled {escape(name)}")


@users_app.command("disable")
def users_disable(name: str, config: ConfigOption = None) -> None:
    """Disable a user at once: password, API tokens and dashboard sessions stop working."""
    _set_disabled(name, True, config)


@users_app.command("enable")
def users_enable(name: str, config: ConfigOption = None) -> None:
    """Enable a disabled user again (their unexpired tokens work again)."""
    _set_disabled(name, False, config)


@users_app.command("rotate")
def users_rotate(
    name: str,
    scope: Annotated[
        list[str] | None, typer.Option(help="read, write, operate, ml, audit, admin")
    ] = None,
    days: Annotated[float, typer.Option(help="lifetime")] = 30.0,
    config: ConfigOption = None,
) -> None:
    """Revoke every token of ``name`` and print one new token (once, to stdout)."""
    _, users = _users(config)
    try:
        token = users.rotate_token(name, scope or ["read"], days)
    except (ValueError, TrellisError) as exc:
        _fail(str(exc), 2)
    typer.echo(token)


KeyOption = Annotated[
    Path | None,
    typer.Option(help="PEM public key of the platform; default: the configured platform key"),
]


def _check_log(file: Path | None, key: Path | None, config: Path | None):  # type: ignore[no-untyped-def]
    from trellis.auth.audit import audit_path, check
    from trellis.auth.keys import load_public_key, platform_key

    settings = load_or_exit(config)
    path = file or audit_path(settings)
    if not path.exists():
        _fail(f"no audit log at {path}", 2)
    try:
        public = load_public_key(key) if key else platform_key(settings).public_key()
    except (OSError, TrellisError) as exc:
        _fail(f"the platform key: {exc}", 2)
    return path, check(path, public, require_checkpoint_file=file is None)


@audit_app.command("verify")
def audit_verify(
    file: Annotated[Path | None, typer.Option(help="default: <data_dir>/audit/audit.jsonl")] = None,
    key: KeyOption = None,
    config: ConfigOption = None,
) -> None:
    """Check the hash chain and the signed checkpoints; exit 1 naming the first edited,
    deleted or reordered entry, or the range cut off the end."""
    path, found = _check_log(file, key, config)
    if found.broken is not None:
        _fail(
            f"{path}: entry at line {found.broken.line} is bad: {found.broken.reason} "
            f"({found.entries} good before it)"
        )
    console.print(
        f"[green]ok[/green]: {found.entries} entries chain from the first; "
        f"{found.checkpoints} checkpoints signed by the platform key; "
        f"{found.unprotected} entries after the newest checkpoint"
    )
    if found.warning:
        console.print(f"[yellow]warning:[/yellow] {escape(found.warning)}")


@audit_app.command("export")
def audit_export(
    file: Annotated[Path | None, typer.Option(help="default: <data_dir>/audit/audit.jsonl")] = None,
    key: KeyOption = None,
    config: ConfigOption = None,
) -> None:
    """Write the log, signed checkpoints included, as JSON lines to stdout after verifying
    it (an auditor verifies the copy with `trellis audit verify --file F --key PUB.pem`)."""
    path, found = _check_log(file, key, config)
    if found.broken is not None:
        _fail(f"not exported: line {found.broken.line} is bad: {found.broken.reason}")
    with path.open("rb") as source:
        for line in source:
            sys.stdout.buffer.write(line)


@audit_app.command("public-key")
def audit_public_key(config: ConfigOption = None) -> None:
    """Print the platform's public key (PEM), which verifies the checkpoints anywhere."""
    from trellis.auth.keys import platform_key, public_pem

    try:
        key = platform_key(load_or_exit(config))
    except (OSError, TrellisError) as exc:
        _fail(f"the platform key: {exc}", 2)
    typer.echo(public_pem(key.public_key()), nl=False)


@policy_app.command("validate")
def policy_validate(
    directory: Annotated[
        Path | None, typer.Argument(help="*.cedar files; default: configured")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Parse and validate the policies against the schema of the API's operations and the
    dashboard's pages (the same schema the server validates against)."""
    from trellis.api.auth import operations
    from trellis.auth.policy import PolicyEngine, PolicyError, read_policy_dir
    from trellis.auth.setup import guarded_router

    settings = load_or_exit(config)
    actions = {op.action: op.group for op in operations(guarded_router()).values()}
    try:
        PolicyEngine(actions, read_policy_dir(directory or settings.auth.policy_dir))
    except PolicyError as exc:
        _fail(str(exc))
    console.print(f"[green]ok[/green]: policies valid for {len(actions)} actions")


@policy_app.command("test")
def policy_test(
    directory: Annotated[
        Path | None,
        typer.Argument(help="*.cedar policies and their *.tests.csv tables; default: configured"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the policy unit tests (principal, action, resource, expected) beside the policies;
    exit 1 naming each row that failed and the policy that decided it."""
    from trellis.auth.policy import PolicyError
    from trellis.auth.policy_tests import PolicyTestError, run_policy_tests

    settings = load_or_exit(config)
    try:
        report = run_policy_tests(directory or settings.auth.policy_dir)
    except (PolicyError, PolicyTestError) as exc:
        _fail(str(exc), 2)
    decisions = sum(result.decisions for result in report.results)
    if report.failed:
        table = Table("where", "principal", "action", "resource", "expected", "got: why")
        for result in report.results:
            case = result.case
            for action, why in result.failures:
                table.add_row(
                    f"{case.file}:{case.line}",
                    f"{case.principal.name}:{case.principal.role}@{case.principal.tenant}",
                    action,
                    "::".join(case.resource),
                    "allow" if case.expected else "deny",
                    escape(why),
                )
        console.print(table)
        _fail(f"{report.failed} of {len(report.results)} rows failed ({decisions} decisions)")
    console.print(
        f"[green]ok[/green]: {report.passed} rows, {decisions} decisions as expected "
        f"({', '.join(report.policies)})"
    )
