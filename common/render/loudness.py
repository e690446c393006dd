"""Loudness of a WAV file (ITU-R BS.1770-4 integrated loudness, LUFS) and normalisation to a target.

Why this exists: timidity and fluidsynth write quiet audio (peaks at about -25 to -15 dBFS) whose
level depends on the tune's instruments and density, so a batch played in a row jumps in volume
and sounds faint next to any other music. Every WAV is therefore measured and given one gain so
that its integrated loudness is the target (-16 LUFS by default, the common level of streaming
services), without letting its sample peak pass a ceiling (-1 dBFS): a constant gain keeps the
music's dynamics and cannot distort it, at the price of some very dynamic tunes ending a little
below the target.

Why numpy and not pyloudnorm: pyloudnorm needs scipy (~35 MB) for two biquad filters, and wants
the whole signal in memory as float64 — 4x the WAV's size, ~420 MB for the 10-minute WAV our
limits allow, and more while filtering. Here the file is read in chunks of at most 64 Ki frames
and the K-weighting filter is applied by FFT overlap-add with its impulse response (it decays
below 1e-13 of its peak within ~5,000 samples, so the truncation is exact to double precision);
memory stays around a few MB whatever the tune's length. The result is checked against the EBU
Tech 3341 test signals and the filter against the ITU's published 48 kHz coefficients in
tests/common/render/test_loudness.py.

The measurement follows BS.1770-4: K-weighting (a high shelf of ~+4 dB above 1.5 kHz, then a
38 Hz high-pass), mean square per channel over 400 ms blocks overlapping by 75 %, channel sum
(weights 1.0 for mono/stereo; a mono file is measured as dual mono, as it is heard: see
`LoudnessMeter`), an absolute gate at -70 LUFS and a relative gate 10 LU below the
loudness of the blocks that passed it. The peak is the sample peak (not the 4x oversampled true
peak), which is enough to rule out clipping of the 16-bit file we write.
"""

from __future__ import annotations

import functools
import math
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

#: Frames read, filtered and written at a time: 64 Ki stereo frames are 256 KiB of PCM.
CHUNK_FRAMES = 1 << 16
#: BS.1770: blocks of 400 ms, a new one every 100 ms (75 % overlap).
_BLOCK_S = 0.4
_STEP_S = 0.1
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0
#: Impulse-response samples below this fraction of the largest one are dropped.
_IR_TOLERANCE = 1e-13


@dataclass(frozen=True)
class Loudness:
    """What a measurement found: integrated loudness (``-inf`` for silence) and sample peak."""

    integrated_lufs: float
    peak_dbfs: float
    seconds: float


@dataclass(frozen=True)
class Normalisation:
    """What `normalise_wav` did: the measurement before, the gain applied, the level after."""

    before: Loudness
    gain_db: float
    target_lufs: float
    peak_ceiling_dbfs: float

    @property
    def after_lufs(self) -> float:
        return self.before.integrated_lufs + self.gain_db

    @property
    def after_peak_dbfs(self) -> float:
        return self.before.peak_dbfs + self.gain_db


# --------------------------------------------------------------------------------------------
# K-weighting
# --------------------------------------------------------------------------------------------


def k_weighting(rate: int) -> tuple[tuple[Floats, Floats], tuple[Floats, Floats]]:
    """The two biquads of BS.1770's K-weighting at `rate`, as ((b, a) shelf, (b, a) high-pass).

    BS.1770 gives coefficients for 48 kHz only; these are the same analogue prototypes brought to
    any rate by the bilinear transform (the derivation libebur128 uses), and reproduce the
    published 48 kHz values to 1e-8.
    """
    # Stage 1: high shelf, +4 dB above ~1.7 kHz (the head's acoustic effect).
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf_b = np.array([(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0,
                        (vh - vb * k / q + k * k) / a0])  # fmt: skip
    shelf_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    # Stage 2: the "RLB" high-pass at ~38 Hz.
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1.0 + k / q + k * k
    hp_b = np.array([1.0, -2.0, 1.0])
    hp_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return (shelf_b, shelf_a), (hp_b, hp_a)


@functools.cache
def _k_filter(rate: int) -> tuple[int, int, npt.NDArray[np.complex128]]:
    """(taps, FFT size, filter spectrum) for overlap-add K-weighting at `rate`; cached per rate.

    The impulse response is computed from the exact frequency response sampled on 2**17 points
    (time aliasing is far below double precision: the response has decayed by then) and cut
    where it falls below `_IR_TOLERANCE` of its peak.
    """
    n = 1 << 17
    z = np.exp(-1j * np.pi * np.arange(n // 2 + 1) / (n // 2))  # e^{-jw} on rfft's grid
    response = np.ones_like(z)
    for b, a in k_weighting(rate):
        response *= (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)
    impulse = np.fft.irfft(response, n)
    significant = np.nonzero(np.abs(impulse) > _IR_TOLERANCE * np.abs(impulse).max())[0]
    taps = int(significant[-1]) + 1
    size = 1 << max(14, (4 * taps - 1).bit_length())
    return taps, size, np.fft.rfft(impulse[:taps], size)


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


class LoudnessMeter:
    """Integrated loudness of a signal fed in chunks of float samples (frames × channels).

    Keeps only the overlap-add tail, the samples of an unfinished 100 ms step and one mean
    square per channel and step (about 1 KB a minute), so any length of audio fits.

    ``dual_mono`` measures a mono signal as played on both speakers of a stereo pair (as
    ffmpeg's ``ebur128=dualmono=true``, with its default -3 dB pan law): BS.1770 sums the
    channels' power, so the same melody measures 3 dB louder as two identical channels than as
    one, and a mono file normalised as plain mono would play 3 dB louder than a stereo one at
    the same figure. Browsers and players send mono to both speakers.
    """

    def __init__(self, rate: int, channels: int, dual_mono: bool = False) -> None:
        if rate <= 0 or channels not in (1, 2):
            raise ValueError(
                f"loudness is measured on mono or stereo audio, not {channels} channels "
                f"at {rate} Hz"
            )
        self.rate = rate
        self.channels = channels
        #: Power weight of the channel sum: 2 for a mono signal heard on two speakers.
        self._weight = 2.0 if dual_mono and channels == 1 else 1.0
        self._taps, self._size, self._spectrum = _k_filter(rate)
        self._segment = self._size - self._taps + 1
        self._carry = np.zeros((self._taps - 1, channels))
        self._step = max(1, round(_STEP_S * rate))
        self._pending = np.zeros((0, channels))
        self._steps: list[Floats] = []
        self._peak = 0.0
        self._frames = 0

    @property
    def chunk_frames(self) -> int:
        """The number of frames one FFT filters: feeding exactly this many wastes no work."""
        return self._segment

    def feed(self, samples: Floats) -> None:
        """Add frames (shape ``(n, channels)``, full scale ±1.0)."""
        if samples.ndim != 2 or samples.shape[1] != self.channels:
            raise ValueError(f"expected (frames, {self.channels}) samples, got {samples.shape}")
        if samples.size:
            self._peak = max(self._peak, float(np.abs(samples).max()))
        self._frames += samples.shape[0]
        for start in range(0, samples.shape[0], self._segment):
            self._add_filtered(self._filter(samples[start : start + self._segment]))

    def _filter(self, segment: Floats) -> Floats:
        """K-weight one segment by overlap-add; returns as many frames as it was given."""
        m = segment.shape[0]
        spectrum = np.fft.rfft(segment, self._size, axis=0) * self._spectrum[:, None]
        full = np.fft.irfft(spectrum, self._size, axis=0)[: m + self._taps - 1]
        full[: self._taps - 1] += self._carry
        self._carry = full[m:].copy()
        return full[:m]

    def _add_filtered(self, filtered: Floats) -> None:
        squares = np.concatenate([self._pending, filtered * filtered])
        whole = squares.shape[0] // self._step
        if whole:
            used = squares[: whole * self._step].reshape(whole, self._step, self.channels)
            self._steps.append(used.sum(axis=1))
        self._pending = squares[whole * self._step :]

    def result(self) -> Loudness:
        """The integrated loudness and sample peak of everything fed so far."""
        peak_dbfs = 20.0 * math.log10(self._peak) if self._peak > 0 else -math.inf
        seconds = self._frames / self.rate
        steps = np.concatenate(self._steps) if self._steps else np.zeros((0, self.channels))
        per_block = round(_BLOCK_S / _STEP_S)
        if steps.shape[0] < per_block:
            return Loudness(-math.inf, peak_dbfs, seconds)
        # Sum of 4 consecutive steps = one 400 ms block; channel weights are 1.0 (mono/stereo).
        cumulative = np.concatenate([np.zeros(1), np.cumsum(steps.sum(axis=1) * self._weight)])
        power = (cumulative[per_block:] - cumulative[:-per_block]) / (per_block * self._step)
        with np.errstate(divide="ignore"):
            block_lufs = -0.691 + 10.0 * np.log10(power)
        gated = power[block_lufs > _ABSOLUTE_GATE_LUFS]
        if gated.size == 0:
            return Loudness(-math.inf, peak_dbfs, seconds)
        relative = -0.691 + 10.0 * math.log10(float(gated.mean())) + _RELATIVE_GATE_LU
        kept = power[(block_lufs > _ABSOLUTE_GATE_LUFS) & (block_lufs > relative)]
        return Loudness(-0.691 + 10.0 * math.log10(float(kept.mean())), peak_dbfs, seconds)


def integrated_loudness(samples: Floats, rate: int) -> Loudness:
    """Loudness of an in-memory signal (frames × channels, or a 1-D mono signal)."""
    if samples.ndim == 1:
        samples = samples[:, None]
    meter = LoudnessMeter(rate, samples.shape[1])
    meter.feed(samples)
    return meter.result()


def _pcm16_chunks(
    reader: wave.Wave_read, frames: int = CHUNK_FRAMES
) -> Iterator[npt.NDArray[np.int16]]:
    """The frames of a 16-bit PCM WAV as int16 arrays of shape (frames, channels)."""
    channels = reader.getnchannels()
    while True:
        raw = reader.readframes(frames)
        if not raw:
            return
        usable = len(raw) - len(raw) % (2 * channels)  # a truncated last frame is dropped
        yield np.frombuffer(raw[:usable], dtype="<i2").reshape(-1, channels)


def _check_pcm16(reader: wave.Wave_read, path: Path) -> None:
    """Insist on 16-bit PCM, the only thing our synths are asked to write."""
    if reader.getsampwidth() != 2:
        width = reader.getsampwidth()
        raise ValueError(f"{path.name} has {8 * width}-bit samples; expected 16-bit PCM")


def _mixed(chunk: npt.NDArray[np.int16], channels: int) -> Floats:
    """A chunk as float samples in 16-bit units, stereo mixed down to mono when `channels` is 1.

    The mix is the mean of the two channels: a melody panned to the centre (both synths'
    default) keeps its level, and the sum can never clip.
    """
    if channels == 1 and chunk.shape[1] == 2:
        mixed: Floats = chunk.mean(axis=1, keepdims=True, dtype=np.float64)
        return mixed
    return chunk.astype(np.float64)


def _out_channels(reader: wave.Wave_read, channels: int | None) -> int:
    """The channels a file is measured and written with: its own, or 1 when mixing down."""
    have = reader.getnchannels()
    if channels is None or channels == have:
        return have
    if channels == 1 and have == 2:
        return 1
    raise ValueError(f"cannot turn {have}-channel audio into {channels} channels")


def measure_wav(path: Path, channels: int | None = None, dual_mono: bool = True) -> Loudness:
    """Integrated loudness and sample peak of a 16-bit PCM WAV file, read in chunks; with
    ``channels=1``, of its mono mix (what `normalise_wav` writes). A mono file is measured as
    dual mono (see `LoudnessMeter`) unless `dual_mono` is False.

    Raises ValueError (or `wave.Error` / EOFError) for a file that is not such a WAV.
    """
    with wave.open(str(path), "rb") as reader:
        _check_pcm16(reader, path)
        out = _out_channels(reader, channels)
        meter = LoudnessMeter(reader.getframerate(), out, dual_mono)
        for chunk in _pcm16_chunks(reader, meter.chunk_frames):
            meter.feed(_mixed(chunk, out) * (1.0 / 32768.0))
    return meter.result()


def gain_for(measured: Loudness, target_lufs: float, peak_ceiling_dbfs: float) -> float:
    """The gain (dB) that brings `measured` to `target_lufs` with its peak at most the ceiling.

    Silence (no block above the -70 LUFS gate) gets no gain: there is nothing to bring up.
    """
    if not math.isfinite(measured.integrated_lufs):
        return 0.0
    gain = target_lufs - measured.integrated_lufs
    if math.isfinite(measured.peak_dbfs):
        gain = min(gain, peak_ceiling_dbfs - measured.peak_dbfs)
    return gain


def normalise_wav(
    source: Path,
    target: Path,
    target_lufs: float,
    peak_ceiling_dbfs: float,
    channels: int | None = None,
) -> Normalisation:
    """Write `source` to `target` with one gain bringing it to `target_lufs` (see `gain_for`),
    as mono when `channels` is 1 and `source` is stereo (the mean of its two channels). Mono is
    measured as dual mono, so it plays as loud as a stereo file at the same target.

    Two passes over the file, each in chunks: measure, then scale, round and write. Measuring
    on the synthesiser's stream instead of a second read was measured and not kept: the second
    pass is a tenth of this function's time (the K-weighting filter is the rest), and holding
    the whole tune in memory would undo the few-MB bound above. `target` may not be `source`
    (the caller renames it over the original once complete).
    """
    before = measure_wav(source, channels)
    gain_db = gain_for(before, target_lufs, peak_ceiling_dbfs)
    write_wav_scaled(source, target, gain_db, channels)
    return Normalisation(before, gain_db, target_lufs, peak_ceiling_dbfs)


def write_wav_scaled(
    source: Path, target: Path, gain_db: float = 0.0, channels: int | None = None
) -> None:
    """Write `source` to `target` with a gain, mixed down to mono when `channels` is 1: the
    second pass of `normalise_wav`, and the mixdown alone when loudness is not normalised."""
    factor = 10.0 ** (gain_db / 20.0)
    with wave.open(str(source), "rb") as reader, wave.open(str(target), "wb") as writer:
        _check_pcm16(reader, source)
        out = _out_channels(reader, channels)
        writer.setnchannels(out)
        writer.setsampwidth(2)
        writer.setframerate(reader.getframerate())
        for chunk in _pcm16_chunks(reader):
            scaled = np.rint(_mixed(chunk, out) * factor)
            np.clip(scaled, -32768, 32767, out=scaled)
            writer.writeframes(scaled.astype("<i2").tobytes())


__all__ = [
    "Loudness",
    "LoudnessMeter",
    "Normalisation",
    "gain_for",
    "integrated_loudness",
    "k_weighting",
    "measure_wav",
    "normalise_wav",
    "write_wav_scaled",
]
