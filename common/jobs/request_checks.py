"""Check a whole request before anything of it is written: validate first, write after.

A batch is records in Redis (or local JSON) plus objects in the bucket; a request that fails
halfway leaves a batch ``running`` with tunes stuck in ``generating``. So `check_batch_spec`
runs at the top of `common.jobs.batches.create_batch` — the one door of `submit-batch` (embedded and
distributed) and of scheduled batches — and raises before the first record exists:

* **formats** need no check here: a spec's formats are the validated `Formats` type
  (`common.formats`), refused with the known names when the spec is built;
* **primers**: one per tune when per-tune primers are given; each one shorter than
  ``max_chars`` (the sampler must have room to write), written only in characters the model
  knows, holding at most one ``X:`` line (a primer starts one tune), and passing the same rule
  as every tune (`common.abc.notation.unsafe_reason`: the directive allow-list, no include
  spelling, no control character), so a primer can never carry ``I:bgcolor`` or
  ``%%MIDI ptstress`` into a stored tune.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from common.abc.notation import unsafe_reason
from common.errors import InvalidInputError
from common.schemas import BatchSpec

_X_LINE = re.compile(r"^X:", re.MULTILINE)


def _shown(primer: str) -> str:
    return repr(primer) if len(primer) <= 60 else f"{primer[:57]!r}... ({len(primer)} chars)"


def check_primer(primer: str, *, max_chars: int, chars: Collection[str] | None = None) -> None:
    """Raise `InvalidInputError` when `primer` cannot start a tune of at most `max_chars`."""
    if not primer:
        raise InvalidInputError("a primer must have at least one character (e.g. 'X:')")
    if len(primer) >= max_chars:
        raise InvalidInputError(
            f"primer {_shown(primer)} has {len(primer)} characters, which leaves no room in "
            f"--max-chars {max_chars}; shorten the primer or raise --max-chars"
        )
    tunes = len(_X_LINE.findall(primer))
    if tunes > 1:
        raise InvalidInputError(
            f"primer {_shown(primer)} holds {tunes} X: lines; a primer starts one tune"
        )
    reason = unsafe_reason(primer)
    if reason is not None:
        raise InvalidInputError(f"primer {_shown(primer)} is refused: {reason}")
    if chars is not None:
        unknown = sorted(set(primer) - set(chars))
        if unknown:
            raise InvalidInputError(
                f"primer {_shown(primer)} uses characters the model does not know: "
                f"{''.join(unknown)!r}"
            )


def check_batch_spec(spec: BatchSpec, chars: Collection[str] | None = None) -> None:
    """Raise `InvalidInputError` for anything in `spec` that would fail after records exist.

    `chars` is the model's vocabulary (None skips that one check).
    """
    if spec.primers is not None and len(spec.primers) != spec.count:
        raise InvalidInputError(f"{len(spec.primers)} primers given for {spec.count} tunes")
    vocab = set(chars) if chars is not None else None
    for primer in dict.fromkeys([spec.primer, *(spec.primers or [])]):
        check_primer(primer, max_chars=spec.max_chars, chars=vocab)


__all__ = ["check_batch_spec", "check_primer"]
