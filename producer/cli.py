"""``producer``: import corpora, train models, submit batches, follow them and get the files back.

With ``TUNEBATCH_BROKER_URL`` unset every command runs in this process on local disk (embedded
mode). With it set (distributed mode) the commands write job records to Redis and enqueue work for
the `worker gpu` / `worker cpu` processes by task name, and return at once; ``--wait`` follows the
work to its end. The commands do not choose the mode: `producer.backend` does, once, from the
settings. Either way the heavy modules (TensorFlow) are imported only inside the commands that need
them, so ``producer --help`` and the read commands stay instant. Every error a user can cause ends
as one line on stderr and a non-zero exit code, never a traceback.

This module is the Typer app; each command group has its own module (`producer.corpus_cli`,
`model_cli`, `batch_cli`, `schedule_cli`, `gallery_cli`, `report`) and the options and helpers
they share are in `producer.options`.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from common import cli_help
from common.lstm.tf_logs import quiet_startup

from producer import batch_cli, corpus_cli, gallery_cli, model_cli, report, schedule_cli

app = typer.Typer(
    name="producer",
    help="tunebatch: generate folk tunes in batches with a character-level LSTM.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def _everywhere(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Log what the command does, TensorFlow's start-up lines too."
        ),
    ] = False,
) -> None:
    """Runs before every command: how much it says on stderr."""
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
    quiet_startup(show=verbose)


cli_help.install()
corpus_cli.register(app)
model_cli.register(app)
schedule_cli.register(app)
batch_cli.register(app)
gallery_cli.register(app)
report.register(app)


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    app()


if __name__ == "__main__":
    main()
