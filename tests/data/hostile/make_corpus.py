"""Regenerate the hostile ABC corpus in this folder (deterministic: same bytes every run).

    python tests/data/hostile/make_corpus.py

Each file is one way a tune can attack or overwhelm the render tools; what each must produce
(a clear error or a render within limits) is asserted by tests/common/test_render_hostile.py.
``@SECRET@`` is replaced by the path of a planted secret file when the test runs.
"""

from __future__ import annotations

import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEAD = "X:1\nT:Hostile\nM:4/4\nL:1/8\nK:D\n"
BAR = "dAFA dAFA|"


def corpus() -> dict[str, bytes]:
    rng = random.Random(20261125)
    files: dict[str, str | bytes] = {}

    # --- nothing, or not text -----------------------------------------------------------
    files["empty.abc"] = b""
    files["whitespace.abc"] = " \n\t\n\n   \n"
    files["binary.abc"] = bytes(rng.randrange(256) for _ in range(4096))
    files["nul-in-tune.abc"] = HEAD + "abc\x00def|\n"
    files["invalid-utf8.abc"] = HEAD.encode() + b"ab\xff\xfe\xc3(c|\n"
    files["rtl-override.abc"] = HEAD.replace("Hostile", "Hostile\u202e") + BAR + "\n"
    # 1 MB of noise: printable ABC-ish characters (so it reaches abc2midi), no X: lines.
    alphabet = "abcdefgABCDEFGzxZ|:[]()^_=,'/<>{}!+.~0123456789 \"-"
    lines = []
    size = 0
    while size < 1 << 20:
        line = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 200)))
        lines.append(line)
        size += len(line) + 1
    files["noise-1mb.abc"] = HEAD + "\n".join(lines) + "\n"

    # --- time ---------------------------------------------------------------------------
    files["tempo-1.abc"] = HEAD.replace("K:D", "Q:1/4=1\nK:D") + BAR * 16 + "\n"
    files["tempo-tiny-unit.abc"] = HEAD.replace("K:D", "Q:1/1024=1\nK:D") + BAR * 64 + "\n"
    files["tempo-huge.abc"] = HEAD.replace("K:D", "Q:1/4=999999999\nK:D") + BAR * 16 + "\n"
    files["tempo-changes.abc"] = HEAD + "".join(f"[Q:1/4={i % 7 + 1}]{BAR}" for i in range(2000))
    files["long-notes.abc"] = HEAD + "a999999999|b999999999|\n"
    files["many-long-rests.abc"] = HEAD + "z64|" * 5000 + "\n"
    files["meter-huge.abc"] = HEAD.replace("M:4/4", "M:999999/1") + BAR * 8 + "\n"
    files["unit-huge.abc"] = HEAD.replace("L:1/8", "L:99999/1") + BAR * 8 + "\n"

    # --- repetition -----------------------------------------------------------------------
    files["nested-repeats.abc"] = HEAD + "|:" * 5000 + BAR + ":|" * 5000 + "\n"
    files["many-repeats.abc"] = HEAD + ("|:" + BAR + ":|") * 20000 + "\n"
    files["variant-endings.abc"] = (
        HEAD + "|:" + BAR + "".join(f"[{i} {BAR}" for i in range(1, 3000)) + ":|\n"
    )
    files["repeat-count-huge.abc"] = (
        HEAD + "|:" + BAR + ":|" + "|:" * 1 + "ab:|" * 9 + ("[1-999999999 " + BAR + ":|\n")
    )
    files["double-repeats.abc"] = HEAD + ("|::" + BAR + "::|") * 5000 + "\n"

    # --- nesting and counts -----------------------------------------------------------------
    files["nested-tuplets.abc"] = HEAD + "(3" * 10000 + "abc|\n"
    files["thousands-tuplets.abc"] = HEAD + "(3abc " * 20000 + "|\n"
    files["tuplet-huge.abc"] = HEAD + "(999999999:1:999999999abc|\n"
    files["nested-grace.abc"] = HEAD + "{" * 10000 + "g" + "}" * 10000 + "a|\n"
    files["thousands-grace.abc"] = HEAD + "{gag}a " * 20000 + "|\n"
    files["nested-slurs.abc"] = HEAD + "(" * 20000 + "abc" + ")" * 20000 + "|\n"
    files["nested-chords.abc"] = HEAD + "[" * 10000 + "ceg" + "]" * 10000 + "|\n"
    files["huge-chord.abc"] = HEAD + "[" + "cdefgab" * 1000 + "]|\n"
    files["many-ties.abc"] = HEAD + "a-" * 50000 + "a|\n"
    files["decorations.abc"] = HEAD + "!trill!!fermata!!mordent!" * 10000 + "a|\n"
    files["broken-rhythm.abc"] = HEAD + "a" + ">" * 10000 + "b|\n"
    files["accidentals.abc"] = HEAD + "^" * 10000 + "a|\n"
    files["octaves.abc"] = HEAD + "a" + "'" * 10000 + "b" + "," * 10000 + "|\n"

    # --- size and shape ---------------------------------------------------------------------
    files["long-line.abc"] = HEAD + BAR * 60000 + "\n"
    files["long-title.abc"] = HEAD.replace("Hostile", "T" * 200_000) + BAR + "\n"
    files["many-lines.abc"] = HEAD + (BAR + "\n") * 50000
    files["many-voices.abc"] = HEAD + "".join(f"V:{v}\n{BAR * 2}\n" for v in range(1, 1001))
    files["many-fields.abc"] = HEAD + "".join(f"N:{i}\n" for i in range(50000)) + BAR + "\n"
    files["lyrics.abc"] = HEAD + (BAR + "\nw:" + "la-" * 500 + "\n") * 500
    files["many-tunes.abc"] = "".join(f"X:{i}\nT:t\nK:C\nabc|\n\n" for i in range(1, 1001))
    files["no-x-line.abc"] = "T:Nothing\nM:4/4\nK:C\n" + BAR + "\n"
    files["no-key.abc"] = "X:1\nT:No key\n" + BAR + "\n"

    # --- directives ---------------------------------------------------------------------------
    files["midi-directives.abc"] = (
        HEAD
        + (
            "%%MIDI program 999999\n%%MIDI transpose 999999\n%%MIDI channel 9999\n"
            "%%MIDI drum dddd 99999 99999 99999 99999\n%%MIDI gchord ffffffffffffffffff\n"
            "%%MIDI ratio 999999 1\n%%MIDI beat 999 999 999 999\n%%MIDI chordprog 99999\n"
        )
        * 200
        + BAR
        + "\n"
    )
    files["midi-drone.abc"] = HEAD + "%%MIDI droneon\n%%MIDI drone 999 999 999 999 999\n" + BAR * 8
    files["macros.abc"] = (
        "X:1\nT:Macro bomb\nM:4/4\nL:1/8\n"
        + "".join(
            f"m:~{c}{i} = {('~' + c + str(i + 1) + ' ') * 4}\n" for i, c in enumerate("A" * 30)
        )
        + "K:D\n~A0|\n"
    )
    files["user-symbols.abc"] = (
        HEAD
        + "".join(f"U:{c} = !trill!\n" for c in "HIJKLMNOPQRSTUVWhijklmnopqrstuvw")
        + "HIJKL" * 2000
        + "|\n"
    )
    files["include-abc.abc"] = HEAD + "%%abc-include @SECRET@\n" + BAR + "\n"
    files["include-plain.abc"] = HEAD + "%%include @SECRET@\n" + BAR + "\n"
    files["include-field.abc"] = HEAD.replace("K:D", "I:abc-include @SECRET@\nK:D") + BAR + "\n"
    files["include-inline.abc"] = HEAD + "[I:abc-include @SECRET@]" + BAR + "\n"
    files["include-mixed-case.abc"] = HEAD + "%%ABC-Include @SECRET@\n" + BAR + "\n"
    files["include-spaces.abc"] = HEAD + "%%  abc-include   @SECRET@\n" + BAR + "\n"
    files["format-file.abc"] = HEAD + "%%format @SECRET@\n" + BAR + "\n"
    files["eps-file.abc"] = HEAD + "%%EPS @SECRET@\n" + BAR + "\n"
    files["beginps.abc"] = (
        HEAD
        + "%%beginps\n(@SECRET@) (r) file 1000 string readstring pop ==\n%%endps\n"
        + BAR
        + "\n"
    )
    files["beginsvg.abc"] = (
        HEAD + '%%beginsvg\n<image href="file://@SECRET@"/>\n%%endsvg\n' + BAR + "\n"
    )
    files["postscript-ps.abc"] = HEAD + "%%ps (@SECRET@) run\n" + BAR + "\n"
    files["svg-in-title.abc"] = (
        HEAD.replace(
            "T:Hostile", 'T:<image href="@SECRET@"/><image href="file://@SECRET@"/>&amp;</svg>'
        )
        + BAR
        + "\n"
    )
    files["svg-in-annotation.abc"] = HEAD + '"^<image href=\\"@SECRET@\\"/>"' + BAR + "\n"
    files["secret-in-lyrics-path.abc"] = HEAD + BAR + "\nw:@SECRET@\n"

    # --- every spelling a deny-list of directive names misses (refused by the allow-list) -----
    # abcm2ps reads I: lines as %% lines: a format file before X:, in the header, in the body.
    files["field-format-before-x.abc"] = "I:format @SECRET@\n" + HEAD + BAR + "\n"
    files["field-format-header.abc"] = HEAD.replace("K:D", "I:format @SECRET@\nK:D") + BAR + "\n"
    files["field-format-body.abc"] = HEAD + BAR + "\nI:format @SECRET@\n" + BAR + "\n"
    files["field-format-inline.abc"] = HEAD + "[I:format @SECRET@]" + BAR + "\n"
    files["field-format-dev-zero.abc"] = HEAD + "I:format /dev/zero\n" + BAR + "\n"
    files["field-format-upper.abc"] = HEAD + "  I : FORMAT @SECRET@\n" + BAR + "\n"
    # A new directive prefix, then the forbidden directive in the new spelling.
    files["prefix-abcm2ps-format.abc"] = HEAD + "%%abcm2ps #\n%#format @SECRET@\n" + BAR + "\n"
    files["prefix-ss-pref-format.abc"] = HEAD + "%%ss-pref #\n%#format @SECRET@\n" + BAR + "\n"
    files["prefix-field-beginsvg.abc"] = (
        HEAD + "I:ss-pref $\n%$beginsvg\n<script>alert(1)</script>\n%$endsvg\n" + BAR + "\n"
    )
    # Values abcm2ps writes raw into the SVG.
    files["bgcolor-script.abc"] = (
        HEAD.replace("K:D", 'I:bgcolor red"/><script>alert(1)</script><rect fill="red\nK:D')
        + BAR
        + "\n"
    )
    files["titlefont-script.abc"] = (
        HEAD.replace("K:D", 'I:titlefont Times"/><script>alert(1)</script><g\nK:D') + BAR + "\n"
    )
    files["vocalfont-inline.abc"] = HEAD + '[I:vocalfont x"/><image/onload="alert(1)"/>]' + BAR
    files["musicfont-url.abc"] = HEAD + "%%musicfont url(http://example.invalid/f.woff)\n" + BAR
    # abc2midi opens any file %%MIDI ptstress names, in its three spellings.
    files["midi-ptstress.abc"] = HEAD + "%%MIDI ptstress @SECRET@\n" + BAR + "\n"
    files["midi-ptstress-field.abc"] = HEAD + "I:MIDI ptstress @SECRET@\n" + BAR + "\n"
    files["midi-ptstress-inline.abc"] = HEAD + "[I:MIDI ptstress @SECRET@]" + BAR + "\n"
    files["midi-continued.abc"] = HEAD + "%%MIDI program 1\n+:ptstress @SECRET@\n" + BAR + "\n"
    # Escapes abcm2ps decodes before it reads a line (\ooo, \uXXXX): every position of a field
    # or directive, spelt so the text as written holds none.
    files["escape-octal-percent.abc"] = HEAD + "\\045\\045bgcolor red\n" + BAR + "\n"
    files["escape-octal-field.abc"] = HEAD + "\\111:abc-include @SECRET@\n" + BAR + "\n"
    files["escape-inline-bracket.abc"] = HEAD + "dAFA \\133I:bgcolor blue] " + BAR + "\n"
    files["escape-inline-letter.abc"] = HEAD + "dAFA [\\111:format @SECRET@] " + BAR + "\n"
    files["escape-inline-colon.abc"] = HEAD + "dAFA [I\\072bgcolor blue] " + BAR + "\n"
    files["escape-in-argument.abc"] = HEAD + "dAFA [I:bgcolor\\040blue] " + BAR + "\n"
    files["escape-unicode-beginsvg.abc"] = (
        HEAD
        + "\\u0025\\u0025beginsvg\n<style>@import url(http://x.invalid/a.css);</style>\n"
        + "\\u0025\\u0025endsvg\n"
        + BAR
        + "\n"
    )
    files["escape-unicode-upper.abc"] = HEAD + "\\u005B\\u0049:bgcolor blue]" + BAR + "\n"
    files["escape-new-tune.abc"] = HEAD + BAR + "\n\\130:2\nT:Second\nK:D\n" + BAR + "\n"
    files["escape-nul.abc"] = HEAD + "dAFA \\000 " + BAR + "\n"
    # A line ending in '\' is joined to the next in an ABC 2.0 file, before abcm2ps parses it.
    files["continuation-inline.abc"] = "%abc-2.0\n" + HEAD + "dAFA [I\\\n:bgcolor blue] |\n"
    # %%MIDI numbers out of abc2midi's ranges: a channel in the thousands writes out of bounds
    # (SIGSEGV), a zero length in a drum pattern crashes it.
    files["midi-channel-huge.abc"] = HEAD + "%%MIDI program 5000 1\n" + BAR * 4 + "\n"
    files["midi-drum-zero.abc"] = HEAD + "%%MIDI drum d0 36 100\n%%MIDI drumon\n" + BAR * 4 + "\n"
    files["midi-gracedivider-zero.abc"] = HEAD + "%%MIDI gracedivider 0\n{g}" + BAR * 4 + "\n"
    # A title of combining marks, which abcm2ps cuts in the middle of a character.
    files["combining-title.abc"] = HEAD.replace("Hostile", "e" + "\u0301" * 400) + BAR + "\n"

    return {name: data.encode() if isinstance(data, str) else data for name, data in files.items()}


def main() -> None:
    for old in HERE.glob("*.abc"):
        old.unlink()
    for name, data in sorted(corpus().items()):
        (HERE / name).write_bytes(data)
    print(f"wrote {len(corpus())} files to {HERE}")


if __name__ == "__main__":
    main()
