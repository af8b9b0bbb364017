"""How the command line ends: an error of the library as one line on stderr, each parameter it
names written as the flag that sets it, and the exit status that says what happened."""

from __future__ import annotations

import sys

import click

from inductscan.errors import DiskFullError, HubUnreachableError, InductscanError, OutOfMemory

# Exit statuses: 0 done; 1 some checkpoints failed, or the scan stopped (Hub unreachable, out of
# memory, no space left); 2 bad input (a usage error, a bad value, an unreadable folder); 130
# interrupted (Ctrl-C).
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
STOPPED_SCAN = (HubUnreachableError, OutOfMemory, DiskFullError)

# The library's parameters whose flag is not their name with dashes (``threads`` -> ``--threads``,
# ``icl.examples`` -> ``--icl-examples``): the one place the two vocabularies meet.
FLAGS = {
    "output": "-o",
    "icl": "--icl-dataset",
    "ray": "--executor ray",
    "probe_token_ids": "--probe-tokens-file",
    "score_modules": "--score-module",
    "statement": "--sql",
}


def flag(name: str) -> str:
    """The flag that sets the library parameter ``name``."""
    return FLAGS.get(name) or "--" + name.replace(".", "-").replace("_", "-")


def one_line(error: InductscanError) -> str:
    """The error as the command line prints it: its parameters named by their flags."""
    return f"error: {error.message(flag)}"


class Group(click.Group):
    """Turns any InductscanError into one line on stderr and its exit status, and Ctrl-C into 130."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InductscanError as error:
            click.echo(one_line(error), err=True)
            sys.exit(EXIT_FAILED if isinstance(error, STOPPED_SCAN) else EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
