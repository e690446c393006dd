"""Tests of common.render.loudness against the standard's own numbers.

The K-weighting filter must reproduce the coefficients ITU-R BS.1770-4 publishes for 48 kHz, and
the meter must read the EBU Tech 3341 (2016) test signals within their ±0.1 LU tolerance; those
signals are synthesised here (sines at stated levels), so no reference implementation is needed.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import pytest

from common.render.loudness import (
    Loudness,
    LoudnessMeter,
    gain_for,
    integrated_loudness,
    k_weighting,
    measure_wav,
    normalise_wav,
)

Floats = np.ndarray


def sine(dbfs: float, seconds: float, rate: int = 48000, freq: float = 1000.0) -> Floats:
    """A stereo sine whose peak is `dbfs` in both channels, as EBU Tech 3341 specifies."""
    t = np.arange(round(seconds * rate)) / rate
    wave_ = 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)
    return np.stack([wave_, wave_], axis=1)


def write_wav(path: Path, samples: Floats, rate: int = 44100, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(samples.shape[1])
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(np.rint(samples * 32767).astype("<i2").tobytes())
    return path


def test_k_weighting_matches_the_published_48khz_coefficients() -> None:
    (shelf_b, shelf_a), (hp_b, hp_a) = k_weighting(48000)
    np.testing.assert_allclose(shelf_b, [1.53512485958697, -2.69169618940638, 1.19839281085285])
    np.testing.assert_allclose(shelf_a, [1.0, -1.69065929318241, 0.73248077421585])
    np.testing.assert_allclose(hp_b, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(hp_a, [1.0, -1.99004745483398, 0.99007225036621])


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        # EBU Tech 3341 cases 1 and 2: a 1 kHz stereo sine at -23 / -33 dBFS reads -23 / -33.
        ([(-23.0, 20.0)], -23.0),
        ([(-33.0, 20.0)], -33.0),
        # Case 3: the relative gate drops the -36 dBFS parts.
        ([(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)], -23.0),
        # Case 4: the absolute gate drops the -72 dBFS parts as well.
        ([(-72.0, 10.0), (-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0), (-72.0, 10.0)], -23.0),
    ],
)
def test_ebu_tech_3341_signals(
    rate: int, parts: list[tuple[float, float]], expected: float
) -> None:
    signal = np.concatenate([sine(level, secs, rate) for level, secs in parts])
    assert integrated_loudness(signal, rate).integrated_lufs == pytest.approx(expected, abs=0.1)


def test_chunking_does_not_change_the_result() -> None:
    rng = np.random.default_rng(7)
    signal = rng.normal(0, 0.05, (5 * 44100, 2)) * np.linspace(0.1, 1, 5 * 44100)[:, None]
    whole = integrated_loudness(signal, 44100)
    meter = LoudnessMeter(44100, 2)
    start = 0
    while start < signal.shape[0]:
        size = int(rng.integers(1, 30000))
        meter.feed(signal[start : start + size])
        start += size
    assert meter.result().integrated_lufs == pytest.approx(whole.integrated_lufs, abs=1e-9)
    assert meter.result().peak_dbfs == whole.peak_dbfs


def test_silence_and_short_signals_have_no_loudness() -> None:
    silence = integrated_loudness(np.zeros((44100, 2)), 44100)
    assert silence.integrated_lufs == -math.inf and silence.peak_dbfs == -math.inf
    short = integrated_loudness(sine(-10, 0.3, 44100), 44100)  # no complete 400 ms block
    assert short.integrated_lufs == -math.inf
    assert gain_for(silence, -16, -1) == 0.0


def test_gain_is_limited_by_the_peak_ceiling() -> None:
    quiet = Loudness(integrated_lufs=-30.0, peak_dbfs=-20.0, seconds=10)
    assert gain_for(quiet, -16.0, -1.0) == pytest.approx(14.0)
    spiky = Loudness(integrated_lufs=-30.0, peak_dbfs=-6.0, seconds=10)
    assert gain_for(spiky, -16.0, -1.0) == pytest.approx(5.0)
    loud = Loudness(integrated_lufs=-8.0, peak_dbfs=-0.5, seconds=10)
    assert gain_for(loud, -16.0, -1.0) == pytest.approx(-8.0)


def test_normalise_wav_reaches_the_target(tmp_path: Path) -> None:
    source = write_wav(tmp_path / "in.wav", sine(-30, 12, 44100, 440))
    target = tmp_path / "out.wav"
    done = normalise_wav(source, target, target_lufs=-16.0, peak_ceiling_dbfs=-1.0)
    after = measure_wav(target)
    assert after.integrated_lufs == pytest.approx(-16.0, abs=0.01)
    assert after.integrated_lufs == pytest.approx(done.after_lufs, abs=0.01)
    assert after.peak_dbfs == pytest.approx(done.after_peak_dbfs, abs=0.01)
    with wave.open(str(target)) as out, wave.open(str(source)) as src:
        assert out.getparams() == src.getparams()


def test_normalise_wav_mixes_stereo_down_to_mono(tmp_path: Path) -> None:
    """The mono mix is the mean of the channels: opposite channels cancel, equal ones keep."""
    samples = sine(-30, 12, 24000, 440)
    samples[:, 1] *= 0.5  # the right channel 6 dB quieter: the mix is 3/4 of the left
    source = write_wav(tmp_path / "in.wav", samples, rate=24000)
    target = tmp_path / "out.wav"
    done = normalise_wav(source, target, -16.0, -1.0, channels=1)
    with wave.open(str(target)) as out:
        assert (out.getnchannels(), out.getframerate()) == (1, 24000)
    mono = write_wav(tmp_path / "mono.wav", samples.mean(axis=1, keepdims=True), rate=24000)
    assert done.before.integrated_lufs == pytest.approx(measure_wav(mono).integrated_lufs, abs=0.01)
    assert measure_wav(source, channels=1) == done.before
    assert measure_wav(target).integrated_lufs == pytest.approx(-16.0, abs=0.01)
    with pytest.raises(ValueError, match="cannot turn 1-channel audio into 2 channels"):
        normalise_wav(mono, tmp_path / "x.wav", -16.0, -1.0, channels=2)


def test_mono_is_measured_as_heard_on_two_speakers(tmp_path: Path) -> None:
    """Dual mono: a mono file measures as its two-channel copy does, 3.01 dB over plain mono."""
    stereo = sine(-20, 10, 24000, 440)
    two = measure_wav(write_wav(tmp_path / "two.wav", stereo, rate=24000))
    mono_path = write_wav(tmp_path / "one.wav", stereo[:, :1], rate=24000)
    dual, plain = measure_wav(mono_path), measure_wav(mono_path, dual_mono=False)
    assert dual.integrated_lufs == pytest.approx(two.integrated_lufs, abs=0.01)
    assert dual.integrated_lufs - plain.integrated_lufs == pytest.approx(3.01, abs=0.01)
    assert dual.peak_dbfs == plain.peak_dbfs == two.peak_dbfs


def test_only_16_bit_pcm_is_read(tmp_path: Path) -> None:
    path = tmp_path / "8bit.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(1)
        out.setframerate(44100)
        out.writeframes(bytes(44100 * 2))
    with pytest.raises(ValueError, match="8-bit"):
        measure_wav(path)
    with pytest.raises(ValueError, match="mono or stereo"):
        LoudnessMeter(44100, 6)
