"""The ``spindoctor`` command line: thin commands that call the library.

Each package's ``cli`` module holds that package's commands and is registered
here, the same way for all. Heavy imports (torch, transformers) happen inside
the command functions, so ``spindoctor game ...`` never imports torch.

Exit codes (docs/design.md, "CLI contract"): 0 success; 2 bad input, with one
line on stderr (a :class:`~spindoctor.errors.UserError`, a pydantic
``ValidationError``, or any ``ValueError`` / ``TypeError`` the library raises
about an argument); 1 internal failure (any other exception, with its traceback).
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from spindoctor.errors import UserError, first_error

app = typer.Typer(
    name="spindoctor",
    help="Probe, inspect and repair OOD forgetting in SFT -> RL post-training.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    """Attach every package's commands: groups with ``add_typer``, single commands with
    ``command``; one import per package's ``cli`` module keeps merges trivial."""
    from spindoctor.game.cli import app as game_app

    app.add_typer(game_app, name="game")
    from spindoctor.spectral.cli import drift_cmd

    app.command("drift")(drift_cmd)
    from spindoctor.spectral.cache_cli import app as cache_app

    app.add_typer(cache_app, name="cache")
    from spindoctor.models.cli import app as models_app
    from spindoctor.models.cli import organism_app

    app.add_typer(models_app, name="models")
    app.add_typer(organism_app, name="organism")
    from spindoctor.toy.cli import app as toy_app

    app.add_typer(toy_app, name="toy")
    from spindoctor.restore.cli import restore, sweep_app

    app.command(name="restore")(restore)
    app.add_typer(sweep_app, name="sweep")
    from spindoctor.study.cli import report, study

    app.command(name="study")(study)
    app.command(name="report")(report)
    from spindoctor.probes.cli import probe

    app.command(name="probe")(probe)
    from spindoctor.training.cli import rl, select, sft

    app.command(name="sft")(sft)
    app.command(name="select")(select)
    app.command(name="rl")(rl)
    from spindoctor.arena.cli import arena

    app.command(name="arena")(arena)

    from spindoctor.report.cli import early_warning_cmd

    app.command(name="early-warning")(early_warning_cmd)


_register()


def validation_line(exc: ValidationError) -> str:
    """One line for the first error of a pydantic ``ValidationError``: model, field, reason."""
    where, msg = first_error(exc)
    msg = msg.removeprefix("Value error, ")
    return f"bad {exc.title} setting {where}: {msg}" if where else f"bad {exc.title}: {msg}"


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map bad input to exit 2 with a one-line message."""
    try:
        app(args=argv, standalone_mode=False)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except ValidationError as exc:  # a typed config refused a value a flag or file passed through
        typer.echo(f"error: {validation_line(exc)}", err=True)
        return 2
    except (ValueError, TypeError) as exc:  # the library names the bad parameter
        typer.echo(f"error: {one_line(exc)}", err=True)
        return 2
    except typer.Exit as exc:  # raised by commands that choose their own code
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # click usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "format_message"):
            typer.echo(f"error: {exc.format_message()}", err=True)
            return int(code)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
