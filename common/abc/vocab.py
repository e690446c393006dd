"""The character vocabulary: the mapping between the text a model reads and the ids it computes on.

A model is only meaningful with the exact vocabulary it was trained on, so the vocabulary travels
inside the model's registry record and is checked when a model is loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from common.errors import InvalidInputError


@dataclass(frozen=True)
class Vocab:
    """An ordered, duplicate-free list of characters; id = position."""

    chars: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.chars:
            raise InvalidInputError("vocabulary is empty: the corpus has no characters")
        if len(set(self.chars)) != len(self.chars):
            raise InvalidInputError("vocabulary has duplicate characters")
        if any(len(c) != 1 for c in self.chars):
            raise InvalidInputError("vocabulary entries must be single characters")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocab:
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls(tuple(sorted(seen)))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, char: object) -> bool:
        return char in self._index

    def id_of(self, char: str) -> int:
        try:
            return self._index[char]
        except KeyError:
            raise InvalidInputError(
                f"character {char!r} is not in the model's vocabulary; "
                "use only characters that occur in the training corpus"
            ) from None

    def encode(self, text: str) -> npt.NDArray[np.int32]:
        """Ids of `text`; an unknown character is an error (see `encode_lenient`)."""
        return np.fromiter((self.id_of(c) for c in text), dtype=np.int32, count=len(text))

    def encode_lenient(self, text: str) -> tuple[npt.NDArray[np.int32], int]:
        """Ids of the known characters of `text` and the count of unknown ones dropped.

        Evaluation on arbitrary files must not crash on a character the model never saw.
        """
        ids = [self._index[c] for c in text if c in self._index]
        return np.asarray(ids, dtype=np.int32), len(text) - len(ids)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"chars": list(self.chars)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        try:
            data = json.loads(text)
            chars = data["chars"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"not a vocabulary JSON document: {exc}") from exc
        if not isinstance(chars, list) or not all(isinstance(c, str) for c in chars):
            raise InvalidInputError("vocabulary 'chars' must be a list of strings")
        return cls(tuple(chars))

    @property
    def digest(self) -> str:
        """Short stable fingerprint, to tell vocabularies apart in records."""
        return hashlib.sha256("".join(self.chars).encode("utf-8")).hexdigest()[:16]
