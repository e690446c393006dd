"""Scoring a model on an ABC file, the way the sampler uses the model: whole tunes.

Each tune is scored from a zero state at ``X:`` with the state carried to the blank line that ends
it (`common.lstm.wholetune`), after the cleaning a corpus import applies (so a file scores as it
would once imported), or on its raw text. The zero-state windowed score (over `seq_len`-char
windows) comes with it, for comparison with models scored that way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np

from common.abc.vocab import Vocab
from common.errors import InvalidInputError
from common.lstm.wholetune import encode_tunes, file_tunes, score_tunes
from common.lstm.windows import LN2, evaluate_ids


@dataclass(frozen=True)
class FileScore:
    #: Bits/char over whole tunes (zero state at ``X:``, state carried to the tune's end).
    bits_per_char: float
    #: Bits/char over zero-state windows of the model's `seq_len` chars of the same text.
    window_bits_per_char: float
    #: Predicted chars (every known char of a tune after its first).
    chars: int
    unknown_chars: int
    tunes: int
    tunes_found: int
    raw: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def evaluate_abc(
    model: keras.Model, vocab: Vocab, text: str, *, seq_len: int = 100, raw: bool = False
) -> FileScore:
    """Score the tunes of an ABC file's `text`; chars outside the vocabulary are counted and
    skipped (a file may use symbols the model never saw)."""
    tunes, found = file_tunes(text, raw=raw)
    ids, unknown = encode_tunes(tunes, vocab, lenient=True)
    ids = [t for t in ids if len(t) >= 2]
    if not ids:
        raise InvalidInputError(
            f"no tune to score: {found} tunes found, none with 2 chars the model knows "
            f"({unknown} unknown chars); is it ABC with X: lines?"
        )
    whole = score_tunes(model, ids)
    flat = np.concatenate(ids).astype(np.int32)
    windowed = evaluate_ids(model, flat, min(seq_len, len(flat) - 2)) if len(flat) > 2 else 0.0
    return FileScore(
        bits_per_char=whole.bits_per_char,
        window_bits_per_char=windowed / LN2,
        chars=whole.chars,
        unknown_chars=unknown,
        tunes=whole.tunes,
        tunes_found=found,
        raw=raw,
    )
