"""The playing time of a Standard MIDI File, read from its bytes alone (no tool, no trust)."""

from __future__ import annotations

from collections.abc import Sequence

from common.errors import RenderError

_DEFAULT_TEMPO_US = 500_000  # 120 quarter notes a minute, the SMF default


def _malformed(what: str, pos: int) -> RenderError:
    return RenderError(f"malformed MIDI file: {what} at byte {pos}", tool="midi")


def _u32(data: bytes, pos: int) -> int:
    if pos + 4 > len(data):
        raise _malformed("truncated chunk header", pos)
    return int.from_bytes(data[pos : pos + 4], "big")


def _vlq(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a variable-length quantity (at most 4 bytes); return (value, next position)."""
    value = 0
    for i in range(4):
        if pos + i >= end:
            raise _malformed("truncated variable-length number", pos)
        byte = data[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos + i + 1
    raise _malformed("variable-length number longer than 4 bytes", pos)


def _scan_track(data: bytes, pos: int, end: int) -> tuple[list[tuple[int, int]], int]:
    """Walk one MTrk chunk: its tempo changes as (tick, µs per quarter) and its length in ticks.

    Follows running status (also across meta events, as real files need) and skips sysex.
    A track without End of Track ends at its chunk's end.
    """
    tick = 0
    running: int | None = None
    tempos: list[tuple[int, int]] = []
    while pos < end:
        delta, pos = _vlq(data, pos, end)
        tick += delta
        if pos >= end:
            raise _malformed("event missing after delta time", pos)
        status = data[pos]
        if status == 0xFF:
            if pos + 1 >= end:
                raise _malformed("truncated meta event", pos)
            meta_type = data[pos + 1]
            length, body = _vlq(data, pos + 2, end)
            if body + length > end:
                raise _malformed("meta event runs past its track", pos)
            if meta_type == 0x51:
                if length != 3:
                    raise _malformed(f"tempo event of {length} bytes, not 3", pos)
                tempos.append((tick, int.from_bytes(data[body : body + 3], "big")))
            pos = body + length
            if meta_type == 0x2F:
                return tempos, tick
        elif status in (0xF0, 0xF7):
            length, body = _vlq(data, pos + 1, end)
            pos = body + length
            if pos > end:
                raise _malformed("sysex event runs past its track", body)
        elif status >= 0xF0:
            raise _malformed(f"unexpected status byte 0x{status:02X}", pos)
        else:
            if status >= 0x80:
                running = status
                pos += 1
            elif running is None:
                raise _malformed("data byte without a status byte", pos)
            pos += 1 if running & 0xF0 in (0xC0, 0xD0) else 2
            if pos > end:
                raise _malformed("channel event runs past its track", pos)
    return tempos, tick


def _ticks_to_seconds(end_tick: int, tempos: Sequence[tuple[int, int]], per_quarter: int) -> float:
    seconds = 0.0
    last_tick, tempo = 0, _DEFAULT_TEMPO_US
    for tick, new_tempo in tempos:
        if tick >= end_tick:
            break
        seconds += (tick - last_tick) * tempo / (per_quarter * 1e6)
        last_tick, tempo = tick, new_tempo
    return seconds + (end_tick - last_tick) * tempo / (per_quarter * 1e6)


def midi_duration_seconds(data: bytes) -> float:
    """Playing time of a Standard MIDI File, in seconds, from its bytes alone.

    Used to refuse absurd tunes before timidity spends minutes synthesising them, so it must
    not trust the file: every length is bounds-checked and malformed data raises `RenderError`.
    Format 0/1: tempo changes (FF 51) from every track form one tempo map, and the file lasts
    until its longest track ends. Format 2: tracks are independent songs played one after
    another, each with its own tempo map. SMPTE divisions (frames × ticks per second) ignore
    tempo events, as the standard says.
    """
    if not data.startswith(b"MThd"):
        raise _malformed("no MThd header", 0)
    header_len = _u32(data, 4)
    if header_len < 6 or 8 + header_len > len(data):
        raise _malformed(f"header chunk of {header_len} bytes", 4)
    fmt = int.from_bytes(data[8:10], "big")
    declared = int.from_bytes(data[10:12], "big")
    division = int.from_bytes(data[12:14], "big")

    tracks: list[tuple[list[tuple[int, int]], int]] = []
    pos = 8 + header_len
    while pos + 8 <= len(data) and len(tracks) < declared:
        chunk_type = data[pos : pos + 4]
        length = _u32(data, pos + 4)
        body, end = pos + 8, pos + 8 + length
        if end > len(data):
            raise _malformed(f"{chunk_type!r} chunk of {length} bytes runs past the file", pos)
        if chunk_type == b"MTrk":
            tracks.append(_scan_track(data, body, end))
        pos = end  # unknown chunk types are skipped, as the standard asks
    if len(tracks) < declared:
        raise _malformed(f"header declares {declared} tracks but {len(tracks)} found", pos)

    if division & 0x8000:
        frames = 256 - (division >> 8)
        per_frame = division & 0xFF
        if frames not in (24, 25, 29, 30) or per_frame == 0:
            raise _malformed(f"SMPTE division {frames} fps x {per_frame}", 12)
        fps = 30000 / 1001 if frames == 29 else float(frames)
        ticks = sum(t for _, t in tracks) if fmt == 2 else max((t for _, t in tracks), default=0)
        return ticks / (fps * per_frame)
    if division == 0:
        raise _malformed("zero ticks per quarter note", 12)
    if fmt == 2:
        return sum(_ticks_to_seconds(end, tempos, division) for tempos, end in tracks)
    merged = sorted((event for tempos, _ in tracks for event in tempos), key=lambda e: e[0])
    end_tick = max((end for _, end in tracks), default=0)
    return _ticks_to_seconds(end_tick, merged, division)
