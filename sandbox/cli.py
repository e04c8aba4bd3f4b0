"""`b24app sandbox`: run a local Bitrix24 portal until Ctrl-C."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from sandbox.faults import FaultSpecError, parse_faults
from sandbox.limits import PLANS

FAULTS_HELP = (
    "Injected faults, comma-separated KIND[:TRIGGER][@SECONDS]; KIND is 500, drop_before, "
    "drop_after, slow or expire; TRIGGER a probability (seeded) or every=N. "
    "Example: 500:0.05,drop_after:0.05,slow:0.02@1.5,expire:every=500"
)


class _OneLineErrors(click.Command):
    """Bad flags give one line on stderr and exit 2, not click's usage block."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.Exit:
            raise
        except click.UsageError as exc:
            click.echo(f"b24app sandbox: error: {exc.format_message()}", err=True)
            sys.exit(2)


def _faults(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        parse_faults(value)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _fail(message: str) -> NoReturn:
    click.echo(f"b24app sandbox: error: {message}", err=True)
    sys.exit(1)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8800,
    show_default=True,
    help="Port on 127.0.0.1 (0 = any free port).",
)
@click.option(
    "--webhook-code",
    default=None,
    help="Code of the admin's incoming webhook (/rest/1/CODE/); random when omitted.",
)
@click.option(
    "--seed-leads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="How many leads to create at start.",
)
@click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Seed for data, identities and probabilistic faults.",
)
@click.option(
    "--custom-fields",
    is_flag=True,
    default=False,
    help="Seed realistic custom fields (every type) on leads, deals, contacts and companies.",
)
@click.option(
    "--mode",
    type=click.Choice(["classic", "simple"]),
    default="classic",
    show_default=True,
    help="CRM mode at start.",
)
@click.option(
    "--plan",
    type=click.Choice(sorted(PLANS)),
    default="standard",
    show_default=True,
    help="Limits: standard 2/s burst 50, enterprise 5/s burst 250, fast = standard x25.",
)
@click.option("--faults", default=None, callback=_faults, help=FAULTS_HELP)
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    default=None,
    help="SQLite file for the portal's data (default: in memory).",
)
@click.option(
    "--token-ttl",
    type=click.IntRange(min=1),
    default=3600,
    show_default=True,
    help="Access-token lifetime in seconds.",
)
@click.option("--admin-key", default=None, help="Admin endpoint key (random when omitted).")
@click.option(
    "--info-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the addresses and credentials as JSON to this file.",
)
def sandbox(
    port: int,
    webhook_code: str | None,
    seed_leads: int,
    seed: int,
    custom_fields: bool,
    mode: str,
    plan: str,
    faults: str | None,
    db: str | None,
    token_ttl: int,
    admin_key: str | None,
    info_file: str | None,
) -> None:
    """Run a local Bitrix24 portal (REST, OAuth server, events, limits, faults) until Ctrl-C."""
    from sandbox.server import Sandbox

    try:
        portal = Sandbox(
            mode=mode,
            seed_leads=seed_leads,
            seed=seed,
            custom_fields=custom_fields,
            plan=plan,
            faults=faults,
            db=db,
            webhook_code=webhook_code,
            token_ttl=token_ttl,
            port=port,
            admin_key=admin_key,
        )
    except Exception as exc:  # a bad --db file and the like: one line, never a traceback
        _fail(f"cannot open the portal: {exc}")
    try:
        portal.start()
    except OSError as exc:
        portal.stop()
        _fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}")
    info = portal.info()
    if info_file:
        Path(info_file).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"Bitrix24 sandbox portal: mode {mode}, plan {plan}, {seed_leads} seeded leads",
        f"  webhook        {info['webhook_url']}",
        f"  OAuth client   client_id={info['client_id']} client_secret={info['client_secret']}",
        f"  OAuth server   {info['token_url']}",
        f"  portal         member_id={info['member_id']} domain={info['domain']}",
        f"  admin          {info['admin_url']} (X-Sandbox-Key: {info['admin_key']})",
        "Press Ctrl-C to stop.",
    ]
    click.echo("\n".join(lines))
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        portal.serve_forever()
    except KeyboardInterrupt:
        click.echo("Sandbox stopped.")
