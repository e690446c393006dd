"""One error hierarchy for the whole project.

Every failure a user can cause or a deployment can suffer is one of two kinds, and the kind decides
what happens next: a `PermanentError` (bad input: a broken tune, an unknown corpus, a tampered
model) is recorded and never retried; a `TransientError` (Redis gone, bucket unreachable, a tool
killed, disk full) is retried with backoff. Messages say what happened, which input caused it and
what to do next, because they are shown to people as one line.
"""

from __future__ import annotations


class TunebatchError(Exception):
    """Base of every error this project raises on purpose."""

    #: Exit code the CLI uses for this error.
    exit_code = 1


class PermanentError(TunebatchError):
    """Bad input or state that retrying cannot fix."""

    exit_code = 2


class TransientError(TunebatchError):
    """A failure of something outside us that may work on a later attempt."""

    exit_code = 3


class ConfigError(PermanentError):
    """Settings are missing or contradictory."""


class NotFoundError(PermanentError):
    """A corpus, model, batch, tune or artifact does not exist."""


class InvalidInputError(PermanentError):
    """User-supplied text, ids or parameters are malformed."""


class IntegrityError(PermanentError):
    """A file's content does not match the hash it was registered with."""


class RenderError(PermanentError):
    """An external tool rejected a tune (the tool's own message is kept)."""

    def __init__(self, message: str, *, tool: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.tool = tool
        self.detail = detail


class RenderLimitError(RenderError):
    """A tool ran past its time, memory or output-size limit on this tune."""


class ToolMissingError(PermanentError):
    """An external program (abc2midi, timidity, ...) is not installed."""


class StorageError(TransientError):
    """The artifact store could not be reached or refused a write."""


class StorageFullError(TransientError):
    """No space left where artifacts or temporary files are written."""


class BrokerError(TransientError):
    """The job broker (Redis) could not be reached."""


class InvalidTransitionError(PermanentError):
    """A job or tune was asked to move to a status its current status does not allow."""


class CancelledError(PermanentError):
    """The batch was cancelled; work stops at the next step boundary."""
