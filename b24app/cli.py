"""The `b24app` command line: thin click commands, each parsing its flags and calling one function.

Scripts depend on it: `mode`, `convert`, `switch` and `jobs` keep their names, flags and JSON
shapes, and exit with the codes of `EXIT_CODES` (one table, error class -> code, shown by
`b24app --help`). Every expected error is one line on stderr, followed by at most one hint line,
never a traceback, never a token or webhook code.

Commands that live outside the framework-free core (`sandbox`, `serve`) are plugged in through the
`b24app.commands` entry-point group, so this module never imports `sandbox` or `handlers`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from sqlalchemy.exc import SQLAlchemyError

from b24app.config import Settings
from b24app.crm.facts import FactsError
from b24app.crm.journal import LeadStatus
from b24app.crm.mode import Mode, ModeError
from b24app.crm.planner import PlanError
from b24app.crm.policy import Policy, PolicyError
from b24app.errors import (
    B24AppError,
    B24Error,
    ConfigError,
    NotInstalled,
    PortalBusy,
    TransportError,
    UsageError,
    hint,
)
from b24app.locks import conversion_turn
from b24app.output import (
    Col,
    Live,
    Sheet,
    echo_json,
    is_terminal,
    jobs_sheet,
    leads_sheet,
    preview_lines,
    preview_totals,
    reason_lines,
    report_sheet,
    show,
    stdout_console,
    summary_line,
    totals_sheet,
)
from b24app.portals import PortalTarget, open_portal
from b24app.rest.redact import redact
from b24app.store.journal import INTERRUPTED, JobBusy
from b24app.worker import worker as worker_command

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PORTAL, EXIT_BUSY, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

# The one table: error class -> exit code; the first class an error is an instance of wins.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (PortalBusy, EXIT_BUSY),
    (JobBusy, EXIT_BUSY),
    (ConfigError, EXIT_USAGE),
    (UsageError, EXIT_USAGE),  # PolicyError among them
    (ModeError, EXIT_USAGE),
    (NotInstalled, EXIT_USAGE),  # --portal names no installation in the database
    (B24Error, EXIT_PORTAL),  # refused, unreachable, failed: every portal-side error
    (FactsError, EXIT_PORTAL),
    (PlanError, EXIT_PORTAL),
    (SQLAlchemyError, EXIT_USAGE),  # the database in B24APP_DATABASE_URL
    (B24AppError, EXIT_USAGE),
)
# What the exit codes mean, for --help and the README.
EXIT_MEANINGS: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done"),
    (EXIT_FAILED, "some leads failed, or the switch was not confirmed, or you answered no"),
    (EXIT_USAGE, "usage or configuration error (a flag, a setting, the database)"),
    (EXIT_PORTAL, "portal or network error (refused, unreachable, a job interrupted by it)"),
    (EXIT_BUSY, "another run holds this portal"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C); the job can be resumed"),
)
# Convert asks first on a terminal when it would take more leads than this.
HANDFUL = 10
# Connection attempts before an unreachable portal is reported, and the pause between them.
PROBE_ATTEMPTS, PROBE_PAUSE, PROBE_TIMEOUT = 2, 0.5, 3.0

_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')]+)")
# The policy's field names in errors, as the flags that set them.
_FLAG_NAMES = (
    ("leads.created_after", "--created-after"),
    ("leads.created_before", "--created-before"),
    ("leads.stages", "--stage"),
    ("leads.sources", "--source"),
    ("leads.ids", "--lead"),
    ("match_clients", "--match-clients"),
    ("activities", "--activities"),
)

log = logging.getLogger("b24app.cli")


def exit_code(error: BaseException) -> int:
    """The exit code for an error, from EXIT_CODES."""
    return next((code for cls, code in EXIT_CODES if isinstance(error, cls)), EXIT_USAGE)


def _fail(message: str, code: int = EXIT_USAGE, *, tip: str | None = None) -> None:
    click.echo(f"b24app: error: {redact(message)}", err=True)
    if tip:
        click.echo(f"b24app: hint: {redact(tip)}", err=True)
    sys.exit(code)


def _describe(exc: BaseException) -> str:
    """The one-line message for an error; a transport failure is named by its cause only."""
    if isinstance(exc, TransportError):
        found = _ERRNO.search(str(exc))
        reason = found.group(1).strip() if found else (exc.description or "no answer")
        return f"cannot reach the portal ({reason})"
    if isinstance(exc, PolicyError):
        return _flag_words(str(exc))
    return str(exc)


def _flag_words(text: str) -> str:
    for name, flag in _FLAG_NAMES:
        text = re.sub(rf"(?<![\w.-]){re.escape(name)}\b", flag, text)
    return text.replace("invalid conversion policy: ", "invalid options: ")


def _policy_tip(exc: PolicyError, target: PortalTarget | None) -> str | None:
    """For an unknown stage or source: the ids the portal has."""
    text = str(exc)
    if target is None or not any(w in text for w in ("stage", "sources")):
        return None
    with contextlib.suppress(B24AppError):
        from b24app.crm.overview import read_overview

        found = read_overview(target.client)
        if "stage" in text:
            ids = ", ".join(s.stage.id for s in found.stages)
            return f"active lead stages: {ids or 'none'} ('b24app portal stages' names them)"
        return f"lead sources: {', '.join(s.id for s in found.sources) or 'none'}"
    return None


def _epilog() -> str:
    lines = ["\b", "Exit codes:"]
    lines += [f"  {code:<4}{meaning}" for code, meaning in EXIT_MEANINGS]
    return "\n".join(lines)


class _Group(click.Group):
    """A click group whose every failure is one line on stderr (plus a hint), with the exit
    code of EXIT_CODES; Ctrl-C exits 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (B24AppError, SQLAlchemyError) as exc:
            target = ctx.meta.get("b24app.portal")
            target = target if isinstance(target, PortalTarget) else None
            if isinstance(exc, SQLAlchemyError):
                first = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                message = f"database (B24APP_DATABASE_URL): {type(exc).__name__}: {first}"
                tip = hint(ConfigError("B24APP_DATABASE_URL"))
            else:
                where = (
                    f" [portal {target.display}]" if isinstance(exc, B24Error) and target else ""
                )
                message = f"{_describe(exc)}{where}"
                tip = _policy_tip(exc, target) if isinstance(exc, PolicyError) else hint(exc)
            _fail(message, exit_code(exc), tip=tip)

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
            tip = f"see '{exc.ctx.command_path} --help'" if exc.ctx is not None else None
            _fail(_flag_words(exc.format_message()), tip=tip)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            click.echo("b24app: interrupted; nothing was started", err=True)
            sys.exit(EXIT_INTERRUPTED)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else EXIT_OK)


def _info_lines() -> list[tuple[str, str]]:
    """Version, settings file, journal database and data directory."""
    from dotenv import find_dotenv, load_dotenv

    from b24app.config import data_dir

    dotenv = find_dotenv(usecwd=True)
    load_dotenv(dotenv)
    rows = [("b24app", version("b24app")), ("settings file", dotenv or "none (no .env found)")]
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return [*rows, ("settings", f"error: {exc}")]
    source = "B24APP_DATABASE_URL" if settings.database_url != _default_url() else "default"
    rows += [
        ("journal", f"{settings.database_shown} ({source})"),
        ("data directory", str(data_dir())),
    ]
    if settings.webhook_url:
        from b24app.rest import WebhookAuth

        with contextlib.suppress(B24AppError):
            rows.append(("portal (B24_WEBHOOK_URL)", WebhookAuth(settings.webhook_url).display))
    rows.append(("plan", settings.plan))
    return rows


def _default_url() -> str:
    from b24app.config import default_database_url

    return default_database_url()


def _print_version(ctx: click.Context) -> None:
    rows = dict(_info_lines())
    click.echo(f"b24app {rows['b24app']}")
    if "journal" in rows:
        click.echo(f"journal: {rows['journal']}")
    ctx.exit()


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=_epilog(),
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _print_version(ctx) if value else None,
    help="Show the version and where the journal is, then exit.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log to stderr at B24APP_LOG_LEVEL (connection attempts, retries, throttling).",
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
        click.option(
            "--create-fields",
            is_flag=True,
            default=False,
            help="Create the custom lead fields a deal, contact or company lacks (once per "
            "portal), so their values are copied too. Off by default, as Bitrix24 asks first.",
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
    create_fields: bool = False,
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
            "create_fields": create_fields,
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
    ctx.meta["b24app.portal_flag"] = portal
    if not portal and settings.webhook_url:
        _probe(settings.webhook_url, target)
    return settings, target


def _probe(url: str, target: PortalTarget) -> None:
    """Fail fast, before the client's long retries, when the portal's host cannot be reached
    at all (no such host, nothing listening): a TCP connect, at most PROBE_ATTEMPTS times."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if urllib.request.getproxies() and not urllib.request.proxy_bypass(host):
        return  # through a proxy the portal's host is the proxy's business
    for attempt in range(1, PROBE_ATTEMPTS + 1):
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
                return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            if attempt == PROBE_ATTEMPTS:
                raise TransportError(
                    f"[Errno {exc.errno or 0}] {reason}", code="TRANSPORT"
                ) from None
            log.warning(
                "%s: %s; attempt %d of %d, next in %.1f s",
                target.display,
                reason,
                attempt,
                PROBE_ATTEMPTS,
                PROBE_PAUSE,
            )
            time.sleep(PROBE_PAUSE)


def _configure_logging(settings: Settings, *, verbose: bool) -> None:
    """Quiet by default (errors are the one line the CLI prints); `-v` logs to stderr."""
    logger = logging.getLogger("b24app")
    for old in list(logger.handlers):
        if getattr(old, "_b24app_cli", False):
            logger.removeHandler(old)
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.setLevel(settings.log_level)
    else:
        handler = logging.NullHandler()
    # Any handler on the way up keeps logging's last-resort stderr printer quiet.
    handler._b24app_cli = True  # type: ignore[union-attr]
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


def _recorded(journal: Any) -> dict[str, str]:
    """What `b24app doctor` recorded for the journal's portal ({} when it never ran there)."""
    from b24app.store.portal_variants import PortalVariants

    return PortalVariants(journal.engine).of(journal.portal)


def _variants(settings: Settings, target: PortalTarget) -> dict[str, str]:
    """The recorded variants for a run that keeps no journal (a dry run): read from the database
    when it already holds them; {} (find out on the way) otherwise. Creates and migrates nothing.
    """
    from sqlalchemy.engine import make_url

    from b24app.store.db import make_engine, normalize_url
    from b24app.store.portal_variants import PortalVariants

    try:
        url = make_url(normalize_url(settings.database_url))
        on_disk = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        if on_disk and not Path(str(url.database)).exists():
            return {}
        engine = make_engine(settings.database_url)
        try:
            return PortalVariants(engine).of(target.key)
        finally:
            engine.dispose()
    except (SQLAlchemyError, OSError, ValueError):
        return {}


def _portal_args() -> str:
    """` --portal X` when the command was given one, so a printed command runs as is."""
    flag = click.get_current_context().meta.get("b24app.portal_flag")
    return f" --portal {flag}" if flag else ""


def _exit_for(report: Any) -> None:
    """Exit 3 when a portal-wide failure interrupted the job, 1 when leads failed."""
    if report.status == INTERRUPTED:
        click.echo(
            f"b24app: error: job {report.job_id} interrupted: "
            f"{redact(report.error or 'unknown reason')}",
            err=True,
        )
        click.echo(
            f"b24app: hint: fix that, then finish the job with "
            f"'b24app jobs resume {report.job_id}{_portal_args()}'",
            err=True,
        )
        sys.exit(EXIT_PORTAL)
    if report.failed:
        sys.exit(EXIT_FAILED)


@contextlib.contextmanager
def _interruptible(journal: Any, job_id: int | None = None) -> Iterator[None]:
    """On Ctrl-C: name the job that stopped and the exact command that finishes it; exit 130."""
    newest = journal.jobs(1)
    before = newest[0].id if newest else 0
    try:
        yield
    except KeyboardInterrupt:
        if job_id is None:
            started = [job for job in journal.jobs(5) if job.id > before]
            job_id = started[-1].id if started else None
        if job_id is None:
            click.echo("b24app: interrupted before a job started; nothing changed", err=True)
        else:
            click.echo(
                f"b24app: interrupted: job {job_id} stopped; finish it with "
                f"'b24app jobs resume {job_id}{_portal_args()}'",
                err=True,
            )
        sys.exit(EXIT_INTERRUPTED)


def _show_report(data: dict[str, Any], *, as_json: bool, title: str = "Conversion") -> None:
    if as_json:
        echo_json(data)
        return
    console = stdout_console()
    show(report_sheet(data, title=title), console)
    for status in (LeadStatus.FAILED, LeadStatus.SKIPPED):
        for line in reason_lines(data, status=status):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(summary_line(data), markup=False, highlight=False, soft_wrap=True)


def _ask(question: str, *, default: bool = False) -> bool:
    return click.confirm(question, default=default, err=True)


def _asking(yes: bool) -> bool:
    """Whether to ask before acting: on a terminal, unless --yes."""
    return not yes and is_terminal(sys.stdin) and is_terminal(sys.stderr)


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
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help=f"Do not ask (a terminal asks before converting more than {HANDFUL} leads, and "
    "before resuming an interrupted job with the same options).",
)
@_portal_option
@_json_option
def convert(
    leads: Sequence[str],
    dry_run: bool,
    wait: bool,
    yes: bool,
    portal: str | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """Convert every active lead (or the --lead ones) exactly once.

    Running the same convert after an interrupted one resumes that job (a terminal asks first).
    Exit 0 when no lead failed, 1 when some failed; see 'b24app --help' for the rest.
    """
    policy = policy_from_flags(**flags)
    lead_ids = lead_ids_from(leads)
    settings, target = _connect(portal)
    from b24app.crm import conversion

    if dry_run:
        previews, fields = conversion.preview_with_fields(
            target.client, policy, lead_ids=lead_ids, variants=_variants(settings, target)
        )
        _show_previews(
            previews, as_json=as_json, requests=target.client.requests_made, fields=fields
        )
        return
    journal = _journal(settings, target)
    twin = _interrupted_twin(journal, policy, lead_ids, yes=yes)
    if twin is None:
        _confirm_count(target, policy, lead_ids, yes=yes)
    with (
        _portal_turn(settings, target, wait=wait),
        _interruptible(journal, twin),
        Live() as bar,
    ):
        if twin is not None:
            report = conversion.resume(
                target.client, journal, twin, on_progress=bar, variants=_recorded(journal)
            )
        else:
            report = conversion.convert(
                target.client,
                journal,
                policy,
                lead_ids=lead_ids,
                on_progress=bar,
                variants=_recorded(journal),
            )
    _show_report(report.to_dict(), as_json=as_json)
    _exit_for(report)


def _interrupted_twin(
    journal: Any, policy: Policy, lead_ids: Sequence[int] | None, *, yes: bool
) -> int | None:
    """The newest interrupted convert job with these very options, if the user (or, off a
    terminal, the rule) takes it up again instead of leaving it behind; else None."""
    wanted = tuple(dict.fromkeys(lead_ids)) if lead_ids else None
    for job in journal.jobs(20):
        if job.kind != "convert":
            continue
        same = Policy.from_dict(job.policy) == policy and (job.lead_ids or None) == wanted
        if not same:
            continue
        if job.status != INTERRUPTED:
            return None  # a newer run with these options finished: nothing is left behind
        reason = f" ({job.error})" if job.error else ""
        if _asking(yes):
            if not _ask(
                f"Job {job.id} with these options was interrupted{reason}. Resume it?",
                default=True,
            ):
                return None
        else:
            click.echo(
                f"b24app: resuming job {job.id}, interrupted with these options{reason}",
                err=True,
            )
        return job.id
    return None


def _confirm_count(
    target: PortalTarget, policy: Policy, lead_ids: Sequence[int] | None, *, yes: bool
) -> None:
    """On a terminal, ask before converting more than HANDFUL leads (two read requests)."""
    if not _asking(yes):
        return
    if lead_ids is not None:
        count = len(lead_ids)
    else:
        from b24app.crm.overview import count_selected

        count = count_selected(target.client, policy)
    if count <= HANDFUL:
        return
    what = (
        f"client {policy.client.value}, pipeline {policy.pipeline}, "
        f"activities {policy.activities.value}"
    )
    if not _ask(f"Convert {count} leads on {target.display} ({what})?"):
        click.echo("b24app: nothing was done", err=True)
        sys.exit(EXIT_FAILED)


def _show_previews(
    previews: Sequence[Any], *, as_json: bool, requests: int, fields: Any = None
) -> None:
    totals = preview_totals(previews)
    if as_json:
        echo_json(
            {
                "dry_run": True,
                "totals": totals,
                "requests": requests,
                "leads": [p.to_dict() for p in previews],
                "custom_fields": fields.to_dict() if fields is not None else None,
            }
        )
        return
    console = stdout_console()
    # a terminal wraps a long line between words; piped, each lead stays one line (for grep)
    soft = not console.is_terminal
    for line in preview_lines(previews):
        console.print(line, markup=False, highlight=False, soft_wrap=soft)
    for line in fields.text_lines() if fields is not None else ():
        console.print(line, markup=False, highlight=False, soft_wrap=soft)
    show(totals_sheet(totals, title="Dry run: nothing was changed"), console)


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

    with (
        _portal_turn(settings, portal_target, wait=wait),
        _interruptible(journal),
        Live() as live,
    ):
        report = run_switch(
            portal_target.client,
            journal,
            target,
            policy,
            on_progress=live,
            poll_timeout=poll_timeout,
            poll_interval=poll_interval,
            on_step=_narrator(live, as_json),
            wait=live.waiter(poll_timeout, f"waiting for the toggle in Bitrix24 ({target.title})"),
            variants=_recorded(journal),
        )
    conversion = report.conversion.to_dict() if report.conversion is not None else None
    if as_json:
        echo_json(report.to_dict())
    else:
        if conversion is not None:
            _show_report(conversion, as_json=False)
        state = "verified" if report.verified else "not confirmed yet"
        click.echo(f"mode: {report.mode_after.label} ({state})")
    if report.conversion is not None and report.conversion.status == INTERRUPTED:
        _exit_for(report.conversion)
    if report.conversion is not None and report.conversion.failed:
        sys.exit(EXIT_FAILED)
    if not report.verified:
        click.echo(
            f"b24app: the portal still reports {report.mode_after.label}; flip the "
            "toggle as described, then check with 'b24app mode'",
            err=True,
        )
        sys.exit(EXIT_FAILED)


def _narrator(live: Live, as_json: bool) -> Callable[[str], None]:
    """The switch's messages: part of the text result on stdout; with --json, on a terminal's
    stderr only. Either way above any live display, never on its line."""

    def narrate(text: str) -> None:
        live.stop()  # the step before is over: its bar stays drawn once
        if as_json:
            live.say(text)
        else:
            live.say(text, to_stdout=True)

    return narrate


# -- info -----------------------------------------------------------------------------------


@main.command()
@_json_option
def info(as_json: bool) -> None:
    """Where b24app keeps its journal, which settings file it read, and its version."""
    rows = _info_lines()
    if as_json:
        echo_json({_INFO_KEYS.get(label, label): value for label, value in rows})
        return
    show(Sheet("", (Col("what"), Col("value", fold=True)), tuple(rows), header=False))


_INFO_KEYS = {
    "b24app": "version",
    "settings file": "settings_file",
    "data directory": "data_dir",
    "portal (B24_WEBHOOK_URL)": "portal",
}


# -- portal ---------------------------------------------------------------------------------


@main.group("portal")
def portal_group() -> None:
    """The ids the flags take: lead stages (--stage), pipelines (--pipeline), sources
    (--source)."""


def _overview(portal: str | None) -> Any:
    _, target = _connect(portal)
    from b24app.crm.overview import read_overview

    return read_overview(target.client)


@portal_group.command("stages")
@_portal_option
@_json_option
def portal_stages(portal: str | None, as_json: bool) -> None:
    """Lead stages: id, name, whether leads in it are converted, and how many there are."""
    found = _overview(portal)
    counts = {count.stage.id: count.leads for count in found.stages}
    rows = [
        {
            "id": stage.id,
            "name": stage.name,
            "active": stage.id in counts,
            "leads": counts.get(stage.id),
        }
        for stage in found.facts.lead_stages
    ]
    if as_json:
        echo_json({"stages": rows})
        return
    show(
        Sheet(
            "Lead stages (--stage takes the active ones)",
            (Col("id"), Col("name", fold=True), Col("active"), Col("leads", right=True)),
            tuple(
                (
                    r["id"],
                    r["name"],
                    "yes" if r["active"] else "no",
                    "" if r["leads"] is None else str(r["leads"]),
                )
                for r in rows
            ),
        )
    )


@portal_group.command("pipelines")
@_portal_option
@_json_option
def portal_pipelines(portal: str | None, as_json: bool) -> None:
    """Deal pipelines (--pipeline takes the id)."""
    found = _overview(portal)
    rows = [{"id": p.id, "name": p.name, "default": p.is_default} for p in found.facts.pipelines]
    if as_json:
        echo_json({"pipelines": rows})
        return
    show(
        Sheet(
            "Deal pipelines (--pipeline takes the id)",
            (Col("id", right=True), Col("name", fold=True), Col("default")),
            tuple((str(r["id"]), r["name"], "yes" if r["default"] else "") for r in rows),
        )
    )


@portal_group.command("sources")
@_portal_option
@_json_option
def portal_sources(portal: str | None, as_json: bool) -> None:
    """Lead sources (--source takes the id)."""
    found = _overview(portal)
    rows = [{"id": s.id, "name": s.name} for s in found.sources]
    if as_json:
        echo_json({"sources": rows})
        return
    show(
        Sheet(
            "Lead sources (--source takes the id)",
            (Col("id"), Col("name", fold=True)),
            tuple((r["id"], r["name"]) for r in rows),
        )
    )


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
    show(jobs_sheet(data, title=f"Jobs on {target.display}"))


@jobs.command("show")
@click.argument("job_id", type=click.IntRange(min=1))
@click.option("--csv", "as_csv", is_flag=True, help="Print the per-lead report as CSV.")
@_portal_option
@_json_option
def jobs_show(job_id: int, as_csv: bool, portal: str | None, as_json: bool) -> None:
    """Print a job's report: totals, then every lead's outcome."""
    if as_csv and as_json:
        raise UsageError("--csv and --json cannot be combined")
    settings, target = _connect(portal)
    journal = _journal(settings, target)
    if _undo_source(journal, job_id) is not None:
        _show_undo_job(journal, job_id, as_json=as_json, as_csv=as_csv)
        return
    report = _job_report(journal, job_id)
    if as_csv:
        click.echo(report.to_csv(), nl=False)
        return
    data = report.to_dict()
    if as_json:
        echo_json(data)
        return
    console = stdout_console()
    show(report_sheet(data, title=f"Job {job_id}"), console)
    if data.get("error"):
        console.print(f"note: {data['error']}", markup=False, highlight=False, soft_wrap=True)
    if data["leads"]:
        console.print("")
        show(leads_sheet(data, title="Leads"), console)
    console.print(summary_line(data), markup=False, highlight=False, soft_wrap=True)


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
    source = _undo_source(journal, job_id)
    if source is not None:
        raise UsageError(
            f"job {job_id} is an undo; continue it with 'b24app jobs undo {source}{_portal_args()}'"
        )
    with _portal_turn(settings, target, wait=wait), _interruptible(journal, job_id), Live() as bar:
        report = conversion.resume(
            target.client, journal, job_id, on_progress=bar, variants=_recorded(journal)
        )
    _show_report(report.to_dict(), as_json=as_json, title=f"Job {job_id}")
    _exit_for(report)


@jobs.command("undo")
@click.argument("job_id", type=click.IntRange(min=1))
@click.option(
    "--dry-run", is_flag=True, help="Show what would be reverted and kept; change nothing."
)
@click.option(
    "--force",
    is_flag=True,
    help="Revert leads changed since the conversion too (a client used elsewhere is never "
    "deleted).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask (a terminal asks before undoing).")
@_wait_option
@_portal_option
@_json_option
def jobs_undo(
    job_id: int,
    dry_run: bool,
    force: bool,
    yes: bool,
    wait: bool,
    portal: str | None,
    as_json: bool,
) -> None:
    """Undo conversion job JOB_ID: delete what it created, put its leads back as they were.

    Leads changed since the conversion are kept and listed with why (--force reverts them).
    Running it again continues an interrupted undo; on an undone job it changes nothing.
    Exit 0 when no lead failed, 1 when some failed, 3 when the portal stopped the undo.
    """
    settings, target = _connect(portal)
    from b24app import undo as undoing

    journal = _journal(settings, target)
    if dry_run or (not as_json and _asking(yes)):
        planned = undoing.preview(target.client, journal, job_id, force=force)
        if dry_run or planned.status == "noop":
            _show_undo(planned.to_dict(), as_json=as_json, title=f"Undo of job {job_id} (preview)")
            return
        _show_undo(planned.to_dict(), as_json=False, title=f"Undo of job {job_id} (preview)")
        if not _ask(f"Undo job {job_id} as shown?"):
            click.echo("b24app: nothing changed", err=True)
            return
    try:
        with _portal_turn(settings, target, wait=wait):
            report = undoing.undo(target.client, journal, job_id, force=force)
    except KeyboardInterrupt:
        click.echo(
            f"b24app: interrupted; run 'b24app jobs undo {job_id}{_portal_args()}' again to "
            "finish the undo (nothing is reverted twice)",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    _show_undo(report.to_dict(), as_json=as_json, title=f"Undo of job {job_id}")
    if report.status == INTERRUPTED:
        click.echo(f"b24app: error: the undo stopped: {redact(report.error or '')}", err=True)
        click.echo(
            f"b24app: hint: fix that, then run 'b24app jobs undo {job_id}{_portal_args()}' "
            "again: it continues",
            err=True,
        )
        sys.exit(EXIT_PORTAL)
    if report.failed:
        sys.exit(EXIT_FAILED)


def _undo_source(journal: Any, job_id: int) -> int | None:
    """The conversion job an undo job undoes; None when `job_id` is not an undo job."""
    from b24app.store.undo import KIND

    found = journal.job(job_id)
    if found is None or found.kind != KIND:
        return None
    return int(found.policy.get("undo") or 0)


def _show_undo_job(journal: Any, job_id: int, *, as_json: bool, as_csv: bool) -> None:
    """`jobs show` of an undo job: its leads, reverted / kept (why) / failed (portal text)."""
    import csv
    import io

    from b24app.undo import stored_report

    data = stored_report(journal, job_id).to_dict()
    if as_csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["lead_id", "status", "why", "notes", "error", "deletes", "stage"])
        for lead in data["leads"]:
            deletes = " ".join(f"{k}:{v}" for k, v in lead["deletes"].items())
            writer.writerow(
                [
                    lead["lead_id"],
                    lead["status"],
                    "; ".join(lead["why"]),
                    "; ".join(lead["notes"]),
                    lead["error"] or "",
                    deletes,
                    lead["stage"],
                ]
            )
        click.echo(out.getvalue(), nl=False)
        return
    _show_undo(data, as_json=as_json, title=f"Job {job_id} (undo of job {data['undo_of']})")


def _show_undo(data: dict[str, Any], *, as_json: bool, title: str) -> None:
    from b24app.undo_output import undo_fields_sheet, undo_sheet, undo_summary

    if as_json:
        echo_json(data)
        return
    console = stdout_console()
    if data.get("leads"):
        show(undo_sheet(data, title=title), console)
    if data.get("fields"):
        show(undo_fields_sheet(data, title=f"{title}: custom fields it created"), console)
    console.print(undo_summary(data), markup=False, highlight=False, soft_wrap=True)


def _job_report(journal: Any, job_id: int) -> Any:
    from b24app.crm.report import load_report

    return load_report(journal, job_id)


# -- doctor ---------------------------------------------------------------------------------


@main.command()
@_portal_option
@_json_option
@click.option(
    "--lang",
    default="en",
    show_default=True,
    metavar="LANG",
    help="Portal language whose custom-field labels are compared.",
)
def doctor(portal: str | None, as_json: bool, lang: str) -> None:
    """Check, read-only and in a few requests, that the portal behaves as b24app expects.

    Each line is ok, warn or fail, with what to do. Exits 3 when a check fails.
    """
    from b24app.doctor import RETRY, TIMEOUT, examine, recordable
    from b24app.portals import open_portal

    settings = Settings.from_env()
    ctx = click.get_current_context()
    _configure_logging(settings, verbose=bool(ctx.meta.get("b24app.verbose")))
    target = open_portal(settings, portal, retry=RETRY, timeout=TIMEOUT)
    ctx.meta["b24app.portal"] = target
    report = examine(
        target.client,
        display=target.display,
        app=bool(portal),
        configured_plan=settings.plan,
        public_url=settings.public_url,
        language=lang,
    )
    recorded = _record_variants(settings, target.key, recordable(report))
    if as_json:
        echo_json({**report.to_dict(), "recorded": recorded})
    else:
        _show_checks(report, recorded=recorded)
        extra = f", {report.other_requests} to the public URL" if report.other_requests else ""
        click.echo(
            f"{report.requests} request(s) to the portal{extra}, {report.seconds:.2f} s; "
            "nothing was written to the CRM"
        )
    if report.failed:
        sys.exit(EXIT_PORTAL)


def _show_checks(report: Any, *, recorded: bool) -> None:
    """The doctor's lines: on a terminal a table whose text wraps between words under its own
    column; piped, one unwrapped line per check and per fix (grep keeps working)."""
    rows: list[tuple[str, str, str]] = []
    for check in report.checks:
        rows.append((check.status, check.name, check.summary))
        if check.fix and check.status != "ok":
            rows.append(("", "", f"fix: {check.fix}"))
    if report.variants:
        shown = ", ".join(f"{v.name}={v.value}" for v in report.variants)
        rows.append(("", "variants", shown + (" (recorded)" if recorded else "")))
    console = stdout_console()
    if console.is_terminal:
        columns = (Col("status"), Col("check"), Col("what", fold=True))
        show(Sheet("", columns, tuple(rows), header=False), console)
        return
    for status, name, text in rows:
        click.echo(f"{status:<5} {name:<12} {text}" if status else f"{name:<18} {text}")


def _record_variants(settings: Settings, portal_key: str, found: dict[str, Any]) -> bool:
    """Store what the doctor observed in the journal database; False if it could not."""
    if not found:
        return False
    from b24app.store.db import make_engine, migrate
    from b24app.store.portal_variants import PortalVariants

    try:
        migrate(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            PortalVariants(engine).record(portal_key, found)
        finally:
            engine.dispose()
    except (SQLAlchemyError, OSError) as exc:
        log.warning("doctor: could not record the variants (%s)", type(exc).__name__)
        return False
    return True


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
