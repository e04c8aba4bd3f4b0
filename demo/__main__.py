"""`python -m demo`: the narrated demo (see the package docstring). Exit 1 if any check fails."""

from __future__ import annotations

import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from b24app.config import PLANS, Settings
from b24app.crm.mode import MODE_METHOD, Mode, parse_mode
from b24app.crm.policy import Policy
from b24app.output import (
    ProgressBar,
    is_terminal,
    preview_lines,
    preview_totals,
    report_table,
    totals_table,
)
from b24app.portals import PortalTarget, open_portal
from bench.floors import ratio, time_floor, usage_between
from demo.checks import Check, core_query, leads_by_stage, snapshot, stage_semantics, verify
from demo.market import MarketStep

PREVIEW_LINES = 5


@dataclass(frozen=True)
class Options:
    """What the demo runs."""

    leads: int
    seed: int
    plan: str
    client: str
    activities: str
    admin_delay: float
    serve: bool = False


class Demo:
    """One demo run against one sandbox portal; `run()` returns the exit code."""

    def __init__(self, options: Options, *, console: Console | None = None) -> None:
        self.options = options
        self.console = console or Console(highlight=False)
        self.checks: list[Check] = []

    # -- narration ------------------------------------------------------------------------

    def step(self, title: str) -> None:
        """Start a numbered section."""
        self.console.rule(f"[bold]{title}", align="left")

    def say(self, text: str) -> None:
        """One line of narration (no markup interpretation of portal data)."""
        self.console.print(text, markup=False)

    def check(self, name: str, ok: bool, detail: str) -> None:
        """Record and show one check."""
        self.record(Check(name, ok, detail))

    def record(self, check: Check) -> None:
        """Show a check and remember it for the exit code."""
        self.checks.append(check)
        mark = "[green]PASS[/]" if check.ok else "[red]FAIL[/]"
        self.console.print(f"  {mark} {check.name}: ", end="")
        self.console.print(check.detail, markup=False)

    # -- the run --------------------------------------------------------------------------

    def run(self) -> int:
        """Start the sandbox, run every step, return 0 when every check passed."""
        from sandbox import Sandbox

        o = self.options
        started = time.monotonic()
        rate, burst = PLANS[o.plan]
        self.console.print(
            f"[bold]b24app demo[/]: a sandbox portal with {o.leads} leads "
            f"(seed {o.seed}, {o.plan} plan: {rate:g} requests/s, burst {burst})"
        )
        with (
            tempfile.TemporaryDirectory(prefix="b24app-demo-") as tmp,
            Sandbox(seed_leads=o.leads, seed=o.seed, plan=o.plan) as sandbox,
        ):
            settings = Settings.from_env(
                {
                    "B24_WEBHOOK_URL": sandbox.webhook_url,
                    "B24APP_PLAN": o.plan,
                    "B24APP_DATABASE_URL": f"sqlite:///{Path(tmp) / 'demo.db'}",
                }
            )
            target = open_portal(settings)
            self.say(f"portal: {target.display} (webhook code hidden)")
            from b24app.store.journal import Journal

            journal = Journal.open(settings.database_url, portal=target.key)
            self._run_steps(sandbox, target, journal)
            MarketStep(self, tmp=Path(tmp), serve=o.serve).run()
        failed = [c for c in self.checks if not c.ok]
        elapsed = time.monotonic() - started
        if failed:
            self.console.print(
                f"[red bold]demo failed[/]: {len(failed)} check(s) failed "
                f"({', '.join(c.name for c in failed)}) in {elapsed:.1f} s"
            )
            return 1
        self.console.print(
            f"[green bold]demo passed[/]: {len(self.checks)} checks in {elapsed:.1f} s"
        )
        return 0

    def _run_steps(self, sandbox: Any, target: PortalTarget, journal: Any) -> None:
        from b24app.crm import conversion

        o = self.options
        query = core_query(sandbox)
        policy = Policy.from_dict({"client": o.client, "activities": o.activities, "pipeline": 0})

        self.step("1. The portal as it is")
        current = parse_mode(target.client.call(MODE_METHOD).result)
        self.say(f"CRM mode: {current.label} ({current.title})")
        self._stage_table(query)
        before = snapshot(query)
        self.say(
            f"{len(before.active_leads)} active leads with "
            f"{sum(len(a) for a in before.open_activities.values())} open activities"
        )

        self.step("2. Preview (dry run): what b24app would create")
        counts = sandbox.portal.counts()
        previews = conversion.preview(target.client, policy)
        for line in preview_lines(previews, limit=PREVIEW_LINES):
            self.say(f"  {line}")
        self.console.print(totals_table(preview_totals(previews), title="Preview totals"))
        self.check(
            "the preview changed nothing",
            sandbox.portal.counts() == counts,
            "portal counts unchanged",
        )

        self.step(f"3. Convert: client {o.client}, pipeline 0, activities {o.activities}")
        report, usage, seconds = self._convert(sandbox, target, journal, policy, conversion)
        self.console.print(report_table(report.to_dict()))
        self._cost_table(usage, seconds)
        self.check("no lead failed", report.failed == 0, f"{report.failed} failed")
        self.check(
            "no 503 QUERY_LIMIT_EXCEEDED", usage.rejected_503 == 0, f"{usage.rejected_503} received"
        )

        self.step("4. Check the portal (read straight from the sandbox, not through b24app)")
        for check in verify(query, before, client=o.client, activities=o.activities):
            self.record(check)
        self._second_run(sandbox, target, journal, policy, conversion)

        self.step("5. The guided switch to Simple CRM")
        self._switch(sandbox, target, journal, policy)

    def _convert(
        self, sandbox: Any, target: PortalTarget, journal: Any, policy: Policy, conversion: Any
    ) -> tuple[Any, Any, float]:
        stats = sandbox.stats()
        tick = time.monotonic()
        with ProgressBar(enabled=is_terminal(sys.stderr)) as bar:
            report = conversion.convert(target.client, journal, policy, on_progress=bar)
        seconds = time.monotonic() - tick
        return report, usage_between(stats, sandbox.stats()), seconds

    def _stage_table(self, query: Callable[..., Any]) -> None:
        semantics = stage_semantics(query)
        by_stage = leads_by_stage(query)
        words = {"P": "active", "S": "converted", "F": "junk"}
        table = Table(title="Leads by stage", title_justify="left")
        table.add_column("stage")
        table.add_column("kind")
        table.add_column("leads", justify="right")
        for stage, semantic in semantics.items():
            table.add_row(stage, words.get(semantic, semantic), str(by_stage.get(stage, 0)))
        self.console.print(table)

    def _cost_table(self, usage: Any, seconds: float) -> None:
        plan = self.options.plan
        floor_time = time_floor(usage.requests, plan)
        table = Table(title="Cost against the platform floor", title_justify="left")
        for column in ("", "b24app", "floor", "ratio"):
            table.add_column(column, justify="right" if column else "left")
        table.add_row(
            "HTTP requests",
            str(usage.requests),
            str(usage.request_floor),
            ratio(usage.requests, usage.request_floor),
        )
        table.add_row(
            "wall time (s)", f"{seconds:.1f}", f"{floor_time:.1f}", ratio(seconds, floor_time)
        )
        table.add_row("503s received", str(usage.rejected_503), "0", "")
        self.console.print(table)
        self.say(
            f"calls executed: {usage.writes} writes, {usage.reads} reads; request floor = "
            f"ceil(writes/50) + ceil(reads/50); time floor = (requests - burst) / rate"
        )
        if floor_time < 1.0:
            self.say(
                "(the time floor is near zero on this plan, so the time is mostly local "
                "processing; --realistic shows the rate limit at work)"
            )

    def _second_run(
        self, sandbox: Any, target: PortalTarget, journal: Any, policy: Policy, conversion: Any
    ) -> None:
        counts = sandbox.portal.counts()
        again = conversion.convert(target.client, journal, policy)
        after = sandbox.portal.counts()
        created = {k: after[k] - counts[k] for k in counts if after[k] != counts[k]}
        self.check(
            "a second run creates nothing",
            not created and again.converted == 0,
            f"converted {again.converted}, skipped {again.skipped}, new rows {created or 'none'}",
        )

    def _switch(self, sandbox: Any, target: PortalTarget, journal: Any, policy: Policy) -> None:
        from b24app.crm.switch import switch

        o = self.options
        flipped = threading.Event()

        def admin_flips_toggle() -> None:
            time.sleep(o.admin_delay)
            self.say("  [admin] opens CRM > settings > CRM mode, picks Simple CRM, saves")
            sandbox.set_mode(
                "simple", client=o.client, complete_activities=o.activities == "complete"
            )

        def wait(seconds: float) -> None:
            # The first wait means the guide is out and b24app is polling: the admin acts now.
            if not flipped.is_set():
                flipped.set()
                threading.Thread(target=admin_flips_toggle, name="demo-admin", daemon=True).start()
            time.sleep(seconds)

        report = switch(
            target.client,
            journal,
            Mode.SIMPLE,
            policy,
            wait=wait,
            poll_timeout=60.0,
            poll_interval=0.5,
            on_step=lambda text: self.say(textwrap.indent(text, "  ")),
        )
        if report.conversion is not None:
            self.say(f"  leads converted on the way: {report.conversion.converted}")
        after = parse_mode(target.client.call(MODE_METHOD).result)
        self.check(
            "the switch was verified by polling",
            report.verified,
            f"switch reports {report.mode_after.label}",
        )
        self.check(
            "the portal now reports Simple CRM",
            after is Mode.SIMPLE,
            f"b24app mode -> {after.label}",
        )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--realistic",
    is_flag=True,
    help="The standard plan's real limits (2 requests/s, burst 50) instead of fast.",
)
@click.option(
    "--leads",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="How many leads the sandbox seeds.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the sandbox data.")
@click.option(
    "--client", type=click.Choice(["contact", "company", "both"]), default="both", show_default=True
)
@click.option(
    "--activities", type=click.Choice(["move", "complete"]), default="move", show_default=True
)
@click.option(
    "--serve",
    is_flag=True,
    help="Keep the Market app's portal, web app and worker running to open the page in a browser.",
)
def cli(realistic: bool, leads: int, seed: int, client: str, activities: str, serve: bool) -> None:
    """Run the narrated b24app demo against in-process sandbox portals."""
    options = Options(
        leads=leads,
        seed=seed,
        plan="standard" if realistic else "fast",
        client=client,
        activities=activities,
        admin_delay=1.0,
        serve=serve,
    )
    try:
        code = Demo(options).run()
    except Exception as exc:  # the demo must end in one clear line, whatever broke
        click.echo(f"demo: error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":
    cli()
