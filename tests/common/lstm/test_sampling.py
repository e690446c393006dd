"""The batched stateful sampler against the Keras model it shares weights with."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from common.abc.vocab import Vocab
from common.errors import CancelledError, InvalidInputError
from common.lstm.network import build_model
from common.lstm.randomness import choose, tune_seed, uniforms, uniforms_np
from common.lstm.sampler import Sampler
from common.lstm.sampling import TuneRequest, generate
from common.params import SamplingParams

VOCAB = Vocab.from_texts(["X:1\nT:Reel\nM:4/4\nK:D\nABcd efga|bagf edcB|\n\n"])


@pytest.fixture(scope="module")
def model() -> tf.keras.Model:
    tf.keras.utils.set_random_seed(1)
    m = build_model(len(VOCAB), 8, 24)
    # Sharpen the random head so logits differ by more than float noise (a trained model's do).
    head = m.get_layer("head")
    head.kernel.assign(head.kernel * 30.0)
    return m


def biased_model(char: str) -> tf.keras.Model:
    """A model that writes `char` after anything (its head bias dwarfs everything else)."""
    m = build_model(len(VOCAB), 4, 8)
    head = m.get_layer("head")
    bias = np.full(len(VOCAB), -50.0, np.float32)
    bias[VOCAB.id_of(char)] = 50.0
    head.bias.assign(bias)
    return m


def test_step_reproduces_the_full_sequence_model(model: tf.keras.Model) -> None:
    sampler = Sampler(model, VOCAB, batch_size=1)
    ids = VOCAB.encode("X:1\nT:Reel\nK:D\nABc")
    expected = model.predict(ids[None], verbose=0)[0]
    h = c = tf.zeros([1, 24])
    for i, token in enumerate(ids):
        logits, h, c = sampler._step(tf.constant([token]), h, c)
        np.testing.assert_allclose(tf.nn.softmax(logits)[0], expected[i], atol=2e-5)


def test_same_seed_same_tunes_whatever_the_batch_size(model: tf.keras.Model) -> None:
    params = SamplingParams(temperature=1.0, seed=11, max_chars=80)
    requests = [TuneRequest(i) for i in range(9)]
    a = generate(Sampler(model, VOCAB, batch_size=4, steps_per_call=8), params, requests)
    b = generate(Sampler(model, VOCAB, batch_size=9, steps_per_call=3), params, requests)
    c = generate(Sampler(model, VOCAB, batch_size=1, steps_per_call=50), params, requests)
    assert [t.text for t in a] == [t.text for t in b] == [t.text for t in c]
    assert [t.index for t in a] == list(range(9))
    other = generate(
        Sampler(model, VOCAB, batch_size=4), SamplingParams(seed=12, max_chars=80), requests
    )
    assert [t.text for t in other] != [t.text for t in a]


def test_temperature_zero_is_argmax_of_the_model(model: tf.keras.Model) -> None:
    out = generate(
        Sampler(model, VOCAB, batch_size=2, steps_per_call=4),
        SamplingParams(temperature=0.0, max_chars=30, bar_tracker=False),
        [TuneRequest(0), TuneRequest(1)],
    )
    ids = list(VOCAB.encode("X:"))
    while len(ids) < 30:
        probs = model.predict(np.asarray([ids]), verbose=0)[0, -1]
        ids.append(int(np.argmax(probs)))
        text = VOCAB.decode(ids)
        if text.endswith("\n\n") or (text.endswith("\nX") and len(text) > 2):
            break
    assert out[0].text == out[1].text
    assert out[0].text.rstrip("\n") == VOCAB.decode(ids).rstrip("\nX").rstrip("\n")
    tiny_t = generate(
        Sampler(model, VOCAB, batch_size=2),
        SamplingParams(temperature=1e-4, max_chars=30, bar_tracker=False),
        [TuneRequest(0)],
    )
    assert tiny_t[0].text == out[0].text


def test_uniforms_match_the_numpy_reference_and_are_in_range() -> None:
    seeds = np.asarray([tune_seed(0, i, 0) for i in range(5)], np.uint32)
    pos = np.asarray([1, 2, 3, 400, 9999], np.int32)
    got = uniforms(tf.constant(seeds), tf.constant(pos), 30).numpy()
    np.testing.assert_array_equal(got, uniforms_np(seeds, pos, 30))
    assert got.min() > 0.0 and got.max() < 1.0


def test_gumbel_sampling_follows_softmax_and_top_k() -> None:
    n = 20000
    logits = tf.tile(tf.math.log(tf.constant([[0.5, 0.3, 0.15, 0.05]])), [n, 1])
    seeds = tf.constant(np.arange(n, dtype=np.uint32))
    pos = tf.zeros([n], tf.int32)
    picks = choose(logits, seeds, pos, tf.constant(1.0), tf.constant(0)).numpy()
    freq = np.bincount(picks, minlength=4) / n
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.015)
    top2 = choose(logits, seeds, pos, tf.constant(1.0), tf.constant(2)).numpy()
    assert set(np.unique(top2)) == {0, 1}
    np.testing.assert_allclose(np.mean(top2 == 0), 0.5 / 0.8, atol=0.015)
    greedy = choose(logits, seeds, pos, tf.constant(0.0), tf.constant(0)).numpy()
    assert (greedy == 0).all()


def test_slots_are_refilled_until_every_request_is_done() -> None:
    sampler = Sampler(biased_model("\n"), VOCAB, batch_size=2, steps_per_call=3)
    run = sampler.start(SamplingParams(max_chars=50, bar_tracker=False))
    for i in range(7):
        run.submit(TuneRequest(i))
    tunes = list(run)
    assert sorted(t.index for t in tunes) == list(range(7))
    # Primer "X:", then "\n\n" ends the tune: the blank line is not part of the text.
    assert all(t.text == "X:\n" and not t.truncated for t in tunes)


def test_stop_at_next_x_line_and_at_max_chars() -> None:
    x_model = Sampler(biased_model("X"), VOCAB, batch_size=3, steps_per_call=4)
    [tune] = generate(
        x_model, SamplingParams(max_chars=40, bar_tracker=False), [TuneRequest(0, 0, "X:1\nK:D\n")]
    )
    assert tune.text == "X:1\nK:D\n" and not tune.truncated
    a_model = Sampler(biased_model("a"), VOCAB, batch_size=3, steps_per_call=4)
    [long] = generate(a_model, SamplingParams(max_chars=40, bar_tracker=False), [TuneRequest(0)])
    assert long.truncated and len(long.text.rstrip("\n")) == 40


def test_primer_is_forced_and_each_request_keeps_its_own(model: tf.keras.Model) -> None:
    sampler = Sampler(model, VOCAB, batch_size=2, steps_per_call=5)
    primers = ["X:1\nM:4/4\nK:D\n", "X:1\nT:Reel\n", "X:"]
    out = generate(sampler, SamplingParams(seed=3, max_chars=60),
                   [TuneRequest(i, 0, p) for i, p in enumerate(primers)])  # fmt: skip
    for tune, primer in zip(out, primers, strict=True):
        assert tune.text.startswith(primer.rstrip("\n"))


def test_bad_requests_and_cancellation(model: tf.keras.Model) -> None:
    sampler = Sampler(model, VOCAB, batch_size=2)
    run = sampler.start(SamplingParams())
    with pytest.raises(InvalidInputError, match="not in the model's vocabulary"):
        run.submit(TuneRequest(0, 0, "X:1\nT:\u00e9"))
    with pytest.raises(InvalidInputError):
        SamplingParams(temperature=-1)
    cancelled = sampler.start(SamplingParams(max_chars=500), should_stop=lambda: True)
    cancelled.submit(TuneRequest(0))
    with pytest.raises(CancelledError):
        list(cancelled)


def test_vocab_mismatch_is_refused(model: tf.keras.Model) -> None:
    with pytest.raises(InvalidInputError, match="different corpora"):
        Sampler(model, Vocab.from_texts(["abc"]))


def test_requests_submitted_while_running_grow_the_batch_again(model: tf.keras.Model) -> None:
    sampler = Sampler(model, VOCAB, batch_size=6, steps_per_call=4)
    params = SamplingParams(seed=9, max_chars=50)
    run = sampler.start(params)
    run.submit(TuneRequest(0))
    seen = []
    for tune in run:
        seen.append(tune)
        if tune.attempt == 0 and tune.index == 0:
            for i in range(1, 6):
                run.submit(TuneRequest(i, 1))  # like --valid-only retries
    assert sorted((t.index, t.attempt) for t in seen) == [(0, 0)] + [(i, 1) for i in range(1, 6)]
    reference = generate(
        Sampler(model, VOCAB, batch_size=6), params, [TuneRequest(i, 1) for i in range(1, 6)]
    )
    assert sorted(t.text for t in seen[1:]) == sorted(t.text for t in reference)
