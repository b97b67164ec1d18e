"""The ``catalogue-tagger`` command. Subcommands load lazily, so ``--help`` does not import torch."""

from __future__ import annotations

import atexit
import gc
import importlib
import warnings

import click

from catalogue_tagger.cli.output import user_errors
from catalogue_tagger.config import Settings

# name -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "db": "catalogue_tagger.cli.db:db",
    "query": "catalogue_tagger.cli.query:query",
    "predict": "catalogue_tagger.cli.predict:predict",
    "tag": "catalogue_tagger.cli.tag:tag",
    "demo": "catalogue_tagger.cli.demo:demo",
    "bench": "catalogue_tagger.cli.bench:bench",
    "compile": "catalogue_tagger.cli.compile:compile_command",
    "models": "catalogue_tagger.cli.models:models",
    "similar": "catalogue_tagger.cli.similar:similar",
    "heads": "catalogue_tagger.cli.heads:heads",
    "calibrate": "catalogue_tagger.cli.calibrate:calibrate",
    "report": "catalogue_tagger.cli.report:report",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="catalogue-tagger")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Tag a music catalogue with pretrained taggers and store the tags in Postgres.

    Every option has a CATALOGUE_TAGGER_* variable (see the README's settings table); an option wins over it.
    """
    # platformdirs warns on every call in a container without a login session; nothing depends on it
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    # At exit the interpreter's last garbage collections would walk every live object (~220,000 once torch is
    # imported: 0.2-0.3 s of a run). Frozen objects are skipped; the process is ending, so nothing is kept longer.
    # Objects still close through their own finalizers and atexit handlers (registered earlier, run later).
    atexit.register(gc.freeze)
    with user_errors():
        ctx.obj = Settings.from_env()
