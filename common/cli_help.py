"""How the producer's and the worker's ``--help`` spell their parameters.

Typer 0.29's rich help writes a type for every option, flags included (``--any <bool>``,
``--help <bool>``: a flag takes no value, so the type misleads), and its usage line writes a
required argument as ``{batch}`` and an optional one as ``[tune]``, a mix that reads like
two conventions. Both CLIs follow the usual one instead: no type after a flag, and
``BATCH [TUNE]`` in usage lines, as ``--help`` of git, pip or click itself writes them.

Typer has no setting for either, so `install` replaces the two methods that decide, once, for
every Typer app in the process; `tests/common/test_cli_help.py` walks every command's help and
fails if an upgrade of Typer changes what these methods are called or do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from typer import core

_installed = False


def _flag_has_no_type(self: core.TyperOption, ctx: Any) -> str | None:
    if self.is_flag and self.metavar is None:
        return None
    return _option_type(self, ctx)


def _usage_name(self: core.TyperArgument) -> str:
    name = self.metavar or self.name or ""
    name = name.upper() if self.metavar is None else name
    if not self.required:
        name = f"[{name}]"
    return f"{name}..." if self.nargs != 1 else name


_option_type: Callable[[core.TyperOption, Any], str | None] = core.TyperOption.display_type_rich


def install() -> None:
    """Make every Typer app in this process write its help the one way (idempotent)."""
    global _installed
    if _installed:
        return
    core.TyperOption.display_type_rich = _flag_has_no_type  # type: ignore[method-assign]
    core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]
    _installed = True
