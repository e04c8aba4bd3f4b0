"""The `b24app` command line: thin click commands, each parsing its flags and calling one function.

Scripts depend on it: `mode`, `convert`, `switch` and `jobs` keep their names, flags, JSON shapes
and exit codes (0 done, 1 some leads failed or the switch was not confirmed, 2 bad input, bad
settings or a portal that refused or could not be reached, 4 another run holds the portal and
--no-wait was given). Every expected error is one line on
stderr, never a traceback, never a token or webhook code.

Commands that live outside the framework-free core (`sandbox`, `serve`) are plugged in through the
`b24app.commands` entry-point group, so this module never imports `sandbox` or `handlers`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib.metadata import entry_points
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from b24app.config import Settings
from b24app.crm.mode import Mode
from b24app.crm.policy import Policy
from b24app.errors import B24AppError, PortalBusy, TransportError, UsageError
from b24app.locks import conversion_turn
from b24app.output import (
    ProgressBar,
    echo_json,
    failed_lines,
    is_terminal,
    jobs_table,
    preview_lines,
    preview_totals,
    report_table,
    stdout_console,
    totals_table,
)
from b24app.portals import PortalTarget, open_portal
from b24app.rest.redact import redact
from b24app.worker import worker as worker_command

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY, EXIT_INTERRUPTED = 0, 1, 2, 4, 130
INTERRUPTED = "interrupted"  # the job status of a run stopped by a portal-wide failure
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')]+)")


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"b24app: error: {redact(message)}", err=True)
    sys.exit(code)


def _describe(exc: B24AppError) -> str:
    """The one-line message for an error; a transport failure is named by its cause only."""
    if isinstance(exc, TransportError):
        found = _ERRNO.search(str(exc))
        reason = found.group(1).strip() if found else (exc.description or "no answer")
        return f"cannot reach the portal ({reason})"
    return str(exc)


class _Group(click.Group):
    """A click group whose every failure is one line on stderr: B24AppError and click's usage
    errors exit 2, a database failure exits 2, Ctrl-C exits 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PortalBusy as exc:
            _fail(str(exc), EXIT_BUSY)
        except B24AppError as exc:
            target = ctx.meta.get("b24app.portal")
            where = f" [portal {target.display}]" if isinstance(target, PortalTarget) else ""
            _fail(f"{_describe(exc)}{where}")
        except SQLAlchemyError as exc:
            first = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0]
            _fail(f"database (B24APP_DATABASE_URL): {type(exc).__name__}: {first}")

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the CLI; click's own usage errors become one line (not a usage block)."""
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _fail(f"{exc.format_message()}{hint}")
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            click.echo(
                "b24app: interrupted; 'b24app jobs list' shows the job and "
                "'b24app jobs resume ID' finishes it",
                err=True,
            )
            sys.exit(EXIT_INTERRUPTED)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else EXIT_OK)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="b24app")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log to stderr at B24APP_LOG_LEVEL (retries, throttling, batches).",
)
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """b24app: convert Bitrix24 leads exactly once and guide the CRM mode switch.

    Pick the portal with B24_WEBHOOK_URL (an incoming webhook) or --portal MEMBER_ID|DOMAIN
    (a portal that installed the app). Settings come from the environment or a .env file.
    """
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(find_dotenv(usecwd=True))
    ctx.meta["b24app.verbose"] = verbose


# -- shared flags ---------------------------------------------------------------------------


def _portal_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--portal",
        "portal",
        metavar="MEMBER_ID|DOMAIN",
        default=None,
        help="An installed portal (default: the B24_WEBHOOK_URL portal).",
    )(fn)


def _json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document on stdout."
    )(fn)


def _policy_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bitrix24's conversion options (same defaults as its UI) plus b24app's lead selection."""
    options = [
        click.option(
            "--client",
            type=click.Choice(["contact", "company", "both"]),
            default="contact",
            show_default=True,
            help="Which clients the deal gets.",
        ),
        click.option(
            "--pipeline",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Deal pipeline (category) id.",
        ),
        click.option(
            "--activities",
            type=click.Choice(["move", "complete"]),
            default="complete",
            show_default=True,
            help="Open activities: move them to the deal still open, or complete them.",
        ),
        click.option(
            "--match-clients",
            "match_clients",
            multiple=True,
            metavar="phone|email",
            help="Reuse an existing contact/company with the same phone or e-mail "
            "(repeatable or comma-separated).",
        ),
        click.option(
            "--stage",
            "stages",
            multiple=True,
            metavar="STATUS_ID",
            help="Only leads in this stage (repeatable).",
        ),
        click.option(
            "--source",
            "sources",
            multiple=True,
            metavar="SOURCE_ID",
            help="Only leads from this source (repeatable).",
        ),
        click.option(
            "--created-after",
            metavar="YYYY-MM-DD",
            default=None,
            help="Only leads created after this day.",
        ),
        click.option(
            "--created-before",
            metavar="YYYY-MM-DD",
            default=None,
            help="Only leads created before this day.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _words(values: Iterable[str]) -> list[str]:
    return [word.strip() for value in values for word in value.split(",") if word.strip()]


def policy_from_flags(
    *,
    client: str,
    pipeline: int,
    activities: str,
    match_clients: Sequence[str] = (),
    stages: Sequence[str] = (),
    sources: Sequence[str] = (),
    created_after: str | None = None,
    created_before: str | None = None,
) -> Policy:
    """The Policy the policy flags describe; PolicyError (exit 2) lists every bad value."""
    return Policy.from_dict(
        {
            "client": client,
            "pipeline": pipeline,
            "activities": activities,
            "match_clients": _words(match_clients),
            "leads": {
                "stages": _words(stages),
                "sources": _words(sources),
                "created_after": created_after,
                "created_before": created_before,
            },
        }
    )


def lead_ids_from(values: Sequence[str]) -> list[int] | None:
    """`--lead 5 --lead 7,9` -> [5, 7, 9]; None when no --lead was given."""
    words = _words(values)
    if not words:
        return None
    bad = [w for w in words if not w.isdigit() or int(w) <= 0]
    if bad:
        raise UsageError(f"--lead takes positive lead ids (got {', '.join(bad)})")
    return list(dict.fromkeys(int(w) for w in words))


def _connect(portal: str | None) -> tuple[Settings, PortalTarget]:
    settings = Settings.from_env()
    ctx = click.get_current_context()
    _configure_logging(settings, verbose=bool(ctx.meta.get("b24app.verbose")))
    target = open_portal(settings, portal)
    ctx.meta["b24app.portal"] = target
    return settings, target


def _configure_logging(settings: Settings, *, verbose: bool) -> None:
    """Quiet by default (errors are the one line the CLI prints); `-v` logs to stderr."""
    logger = logging.getLogger("b24app")
    for handler in list(logger.handlers):
        if getattr(handler, "_b24app_cli", False):
            logger.removeHandler(handler)
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.setLevel(settings.log_level)
    else:
        handler = logging.NullHandler()
    # Any handler on the way up keeps logging's last-resort stderr printer quiet.
    handler._b24app_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)


_wait_option = click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="When another b24app run is converting this portal, wait for it to finish "
    "(--no-wait: exit 4 at once).",
)


@contextlib.contextmanager
def _portal_turn(settings: Settings, target: PortalTarget, *, wait: bool) -> Iterator[None]:
    """Hold the portal's conversion lock for the block (waiting for another run, or PortalBusy)."""
    from b24app.locks import conversion_locks, lock_redis_url
    from b24app.store.db import make_engine

    engine = None
    if settings.database_url.startswith("postgres"):
        engine = make_engine(settings.database_url)
    redis_url = lock_redis_url(settings.redis_url, settings.queue_url)
    locks = conversion_locks(redis_url=redis_url, engine=engine)

    def waiting(who: str | None) -> None:
        by = f" (process {who})" if who else ""
        click.echo(
            f"b24app: another b24app run is converting this portal{by}; waiting for it to "
            "finish (Ctrl-C stops; --no-wait exits at once)",
            err=True,
        )

    try:
        with conversion_turn(locks, target.lock_name, wait=wait, on_wait=waiting):
            yield
    finally:
        if engine is not None:
            engine.dispose()


def _journal(settings: Settings, target: PortalTarget) -> Any:
    from b24app.store.journal import Journal

    return Journal.open(settings.database_url, portal=target.key)


def _exit_for(report: Any) -> None:
    """Exit 2 when a portal-wide failure interrupted the job, 1 when leads failed."""
    if report.status == INTERRUPTED:
        click.echo(
            f"b24app: error: job {report.job_id} interrupted: "
            f"{redact(report.error or 'unknown reason')}; finish it with "
            f"'b24app jobs resume {report.job_id}'",
            err=True,
        )
        sys.exit(EXIT_USAGE)
    if report.failed:
        sys.exit(EXIT_FAILED)


def _show_report(data: dict[str, Any], *, as_json: bool, title: str = "Conversion") -> None:
    if as_json:
        echo_json(data)
        return
    console = stdout_console()
    console.print(report_table(data, title=title))
    for line in failed_lines(data):
        console.print(line, markup=False)


# -- mode -----------------------------------------------------------------------------------


@main.command()
@_portal_option
@_json_option
def mode(portal: str | None, as_json: bool) -> None:
    """Print the portal's CRM mode: classic or simple."""
    _, target = _connect(portal)
    from b24app.crm.conversion import read_mode

    current = read_mode(target.client)
    if as_json:
        echo_json({"mode": current.label, "value": int(current)})
    else:
        click.echo(current.label)


# -- convert --------------------------------------------------------------------------------


@main.command()
@_policy_options
@click.option(
    "--lead",
    "leads",
    multiple=True,
    metavar="ID",
    help="Convert only this lead (repeatable or comma-separated).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be created; change nothing.")
@_wait_option
@_portal_option
@_json_option
def convert(
    leads: Sequence[str],
    dry_run: bool,
    wait: bool,
    portal: str | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """Convert every active lead (or the --lead ones) exactly once.

    Exit 0 when no lead failed, 1 when some failed, 2 on bad input or settings, 4 when another
    run holds the portal and --no-wait was given.
    """
    policy = policy_from_flags(**flags)
    lead_ids = lead_ids_from(leads)
    settings, target = _connect(portal)
    from b24app.crm import conversion

    if dry_run:
        previews = conversion.preview(target.client, policy, lead_ids=lead_ids)
        _show_previews(previews, as_json=as_json, requests=target.client.requests_made)
        return
    journal = _journal(settings, target)
    with _portal_turn(settings, target, wait=wait), ProgressBar() as bar:
        report = conversion.convert(
            target.client, journal, policy, lead_ids=lead_ids, on_progress=bar
        )
    _show_report(report.to_dict(), as_json=as_json)
    _exit_for(report)


def _show_previews(previews: Sequence[Any], *, as_json: bool, requests: int) -> None:
    totals = preview_totals(previews)
    if as_json:
        echo_json(
            {
                "dry_run": True,
                "totals": totals,
                "requests": requests,
                "leads": [p.to_dict() for p in previews],
            }
        )
        return
    console = stdout_console()
    for line in preview_lines(previews):
        console.print(line, markup=False)
    console.print(totals_table(totals, title="Dry run: nothing was changed"))


# -- switch ---------------------------------------------------------------------------------


@main.command()
@click.argument(
    "target_mode",
    metavar="simple|classic",
    type=click.Choice(["simple", "classic"], case_sensitive=False),
)
@_policy_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--poll-timeout",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Seconds to wait for the admin to flip the toggle.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.01),
    default=5.0,
    show_default=True,
    help="Seconds between mode checks.",
)
@_wait_option
@_portal_option
@_json_option
def switch(
    target_mode: str,
    yes: bool,
    poll_timeout: float,
    poll_interval: float,
    wait: bool,
    portal: str | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """Guide the CRM mode switch: to simple, convert every active lead first, then wait for
    the admin to flip the toggle (REST cannot) and verify it."""
    target = Mode.from_label(target_mode)
    policy = policy_from_flags(**flags)
    if not yes:
        if not is_terminal(sys.stdin):
            raise UsageError("switching needs confirmation: pass --yes when not on a terminal")
        what = (
            "convert every active lead, then guide the switch to Simple CRM"
            if target is Mode.SIMPLE
            else "guide the switch to Classic CRM"
        )
        if not click.confirm(f"b24app will {what}. Continue?", err=True):
            click.echo("b24app: nothing was done", err=True)
            sys.exit(EXIT_FAILED)
    settings, portal_target = _connect(portal)
    journal = _journal(settings, portal_target)
    from b24app.crm.switch import switch as run_switch

    narrate = _narrator(as_json)
    with _portal_turn(settings, portal_target, wait=wait), ProgressBar() as bar:
        report = run_switch(
            portal_target.client,
            journal,
            target,
            policy,
            on_progress=bar,
            poll_timeout=poll_timeout,
            poll_interval=poll_interval,
            on_step=narrate,
        )
    conversion = report.conversion.to_dict() if report.conversion is not None else None
    if as_json:
        echo_json(
            {
                "target": report.target.label,
                "verified": report.verified,
                "mode_after": report.mode_after.label,
                "guide": report.guide_text,
                "conversion": conversion,
            }
        )
    else:
        if conversion is not None:
            _show_report(conversion, as_json=False)
        state = "verified" if report.verified else "not confirmed yet"
        click.echo(f"mode: {report.mode_after.label} ({state})")
    if report.conversion is not None and report.conversion.failed:
        sys.exit(EXIT_FAILED)
    if not report.verified:
        click.echo(
            f"b24app: the portal still reports {report.mode_after.label}; flip the "
            "toggle as described, then check with 'b24app mode'",
            err=True,
        )
        sys.exit(EXIT_FAILED)


def _narrator(as_json: bool) -> Callable[[str], None]:
    def narrate(text: str) -> None:
        if as_json:
            if is_terminal(sys.stderr):
                click.echo(text, err=True)
        else:
            click.echo(text)

    return narrate


# -- jobs -----------------------------------------------------------------------------------


@main.group(invoke_without_command=True)
@click.pass_context
def jobs(ctx: click.Context) -> None:
    """The conversion journal: list jobs, show a job's report, resume an interrupted job."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(jobs_list)


@jobs.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@_portal_option
@_json_option
def jobs_list(limit: int = 20, portal: str | None = None, as_json: bool = False) -> None:
    """The newest conversion jobs of the portal."""
    settings, target = _connect(portal)
    data = [row.to_dict() for row in _journal(settings, target).jobs(limit)]
    if as_json:
        echo_json({"jobs": data})
        return
    if not data:
        click.echo("no jobs yet")
        return
    stdout_console().print(jobs_table(data, title=f"Jobs on {target.display}"))


@jobs.command("show")
@click.argument("job_id", type=click.IntRange(min=1))
@click.option("--csv", "as_csv", is_flag=True, help="Print the per-lead report as CSV.")
@_portal_option
@_json_option
def jobs_show(job_id: int, as_csv: bool, portal: str | None, as_json: bool) -> None:
    """Print a job's report (per-lead outcomes)."""
    if as_csv and as_json:
        raise UsageError("--csv and --json cannot be combined")
    settings, target = _connect(portal)
    report = _job_report(_journal(settings, target), job_id)
    if as_csv:
        click.echo(report.to_csv(), nl=False)
        return
    _show_report(report.to_dict(), as_json=as_json, title=f"Job {job_id}")


@jobs.command("resume")
@click.argument("job_id", type=click.IntRange(min=1))
@_wait_option
@_portal_option
@_json_option
def jobs_resume(job_id: int, wait: bool, portal: str | None, as_json: bool) -> None:
    """Finish an interrupted job (leads already done are not touched again)."""
    settings, target = _connect(portal)
    from b24app.crm import conversion

    journal = _journal(settings, target)
    with _portal_turn(settings, target, wait=wait), ProgressBar() as bar:
        report = conversion.resume(target.client, journal, job_id, on_progress=bar)
    _show_report(report.to_dict(), as_json=as_json, title=f"Job {job_id}")
    _exit_for(report)


def _job_report(journal: Any, job_id: int) -> Any:
    from b24app.crm.report import load_report

    return load_report(journal, job_id)


# -- worker ---------------------------------------------------------------------------------

main.add_command(worker_command, "worker")


def _load_plugins() -> None:
    for ep in entry_points(group="b24app.commands"):
        if ep.name in main.commands:
            continue
        try:
            command = ep.load()
        except ImportError:  # an optional part not installed: the core CLI still works
            continue
        main.add_command(command, ep.name)


_load_plugins()
