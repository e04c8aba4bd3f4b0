"""The `b24app` command line: thin click commands, each parsing its flags and calling one function.

Commands that live outside the framework-free core (`sandbox`, `serve`) are plugged in through the
`b24app.commands` entry-point group, so this module never imports `sandbox` or `handlers`.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import click

from b24app.errors import B24AppError

EXIT_USAGE = 2


class _Group(click.Group):
    """A click group that turns every B24AppError into one line on stderr and exit 2."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except B24AppError as exc:
            click.echo(f"b24app: error: {exc}", err=True)
            sys.exit(getattr(exc, "exit_code", EXIT_USAGE))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="b24app")
def main() -> None:
    """b24app: convert Bitrix24 leads exactly once and guide the CRM mode switch."""


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
