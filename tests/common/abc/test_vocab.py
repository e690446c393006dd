from __future__ import annotations

import pytest

from common.abc.vocab import Vocab
from common.errors import InvalidInputError


def test_round_trip_through_json_keeps_ids() -> None:
    vocab = Vocab.from_texts(["X:1\nabc", "K:D\n|"])
    again = Vocab.from_json(vocab.to_json())
    assert again == vocab
    text = "X:1\nK:D\n|abc"
    assert again.decode(again.encode(text)) == text
    assert vocab.digest == again.digest


def test_unknown_char_is_a_clear_error_or_counted_when_lenient() -> None:
    vocab = Vocab.from_texts(["abc"])
    with pytest.raises(InvalidInputError, match="'z' is not in the model's vocabulary"):
        vocab.encode("abz")
    ids, unknown = vocab.encode_lenient("abzzc")
    assert vocab.decode(ids) == "abc" and unknown == 2


@pytest.mark.parametrize("bad", ['{"chars": "abc"}', "not json", '{"chars": ["a", "a"]}', "{}"])
def test_bad_vocab_json_is_rejected(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        Vocab.from_json(bad)
