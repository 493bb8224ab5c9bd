"""The ``spendlog`` command line. Every command has one-line help; user mistakes end in one
clear line on stderr and exit code 2."""

from __future__ import annotations

import sys

import click

from spendlog.db.errors import StorageError

__all__ = ["cli", "main"]


class _Group(click.Group):
    def main(self, args=None, prog_name=None, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name or "spendlog", standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `spendlog` (or a group) alone: its help, no "error:"
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(0)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except click.UsageError as exc:
            click.echo(f"spendlog: error: {exc.format_message()}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"spendlog: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except StorageError as exc:
            click.echo(f"spendlog: error: {exc}", err=True)
            sys.exit(2)
        if isinstance(rv, int):
            sys.exit(rv)
        sys.exit(0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="spendlog")
def cli() -> None:
    """Track what your LLM calls cost: capture, store, and read spend per model, app, user and day."""


def _register() -> None:
    from . import budget, close, dashboard, db, demo, export, fake_upstream, proxy, reconcile, reprice, whatif

    cli.add_command(db.db_group)
    cli.add_command(fake_upstream.fake_upstream_cmd)
    cli.add_command(proxy.proxy_cmd)
    cli.add_command(dashboard.dashboard_cmd)
    cli.add_command(export.export_cmd)
    cli.add_command(export.summary_cmd)
    cli.add_command(demo.demo_cmd)
    cli.add_command(reconcile.reconcile_cmd)
    cli.add_command(close.close_cmd)
    cli.add_command(reprice.reprice_cmd)
    cli.add_command(whatif.whatif_cmd)
    cli.add_command(budget.budget_group)


def _whole_first_lines(group: click.Group) -> None:
    """Command lists show each command's whole first help line (click cuts them at 45 characters)."""
    for command in group.commands.values():
        if command.help and not command.short_help:
            command.short_help = command.help.strip().splitlines()[0].strip()
        if isinstance(command, click.Group):
            _whole_first_lines(command)


_register()
_whole_first_lines(cli)


def main() -> None:
    cli.main()
