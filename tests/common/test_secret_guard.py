"""A planted secret never leaks, through any trick, from any entry point (issue 16's guard).

The secret is a file holding a random token inside a valid tune (so a tool that included it
would copy the token into a MIDI track name, the SVG title, a warning quoting its lines). Every
trick below names it by path; every entry point gets every trick: `check_abc`, `rendered` with
both synths and every format, corpus import, ``model evaluate --file`` and ``submit-batch
--primer``. The token must appear in no output file, result, message, warning, stored object
or log line. The tools' entry points run twice: in the bwrap jail (the default) and with
``TUNEBATCH_SANDBOX=rlimits``, where the allow-list alone must hold.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.abc.corpus import import_corpus
from common.errors import RenderError
from common.params import FORMATS
from common.render.pipeline import check_abc, rendered
from common.settings import Settings
from common.store.local import LocalStore
from tests.model_fixtures import TinyEnv
from tests.producer_cli import embedded_data_dir, run

HEAD = "X:1\nT:Guarded\nM:4/4\nL:1/8\n"
BODY = "K:D\n|:dAFA dAFA|BGEG BGEG:|\n"

#: Every way found to make a tool read a named file. @S@ is the secret's path.
TRICKS = {
    "field-format": HEAD + "I:format @S@\n" + BODY,
    "field-format-before-x": "I:format @S@\n" + HEAD + BODY,
    "percent-format": HEAD + "%%format @S@\n" + BODY,
    "inline-format": HEAD + BODY + "[I:format @S@]dAFA|\n",
    "body-field-format": HEAD + BODY + "I:format @S@\ndAFA|\n",
    "ptstress": HEAD + "%%MIDI ptstress @S@\n" + BODY,
    "field-ptstress": HEAD + "I:MIDI ptstress @S@\n" + BODY,
    "inline-ptstress": HEAD + BODY + "[I:MIDI ptstress @S@]dAFA|\n",
    "prefix-abcm2ps": HEAD + "%%abcm2ps #\n%#format @S@\n" + BODY,
    "prefix-ss-pref": HEAD + "%%ss-pref #\n%#format @S@\n" + BODY,
    "prefix-field": HEAD + "I:ss-pref #\n%#abc-include @S@\n" + BODY,
    "include": HEAD + "%%abc-include @S@\n" + BODY,
    "continued": HEAD + "%%MIDI program 1\n+:ptstress @S@\n" + BODY,
}


@pytest.fixture
def secret(tmp_path: Path) -> tuple[Path, str]:
    token = f"TOKEN{uuid.uuid4().hex}"
    path = tmp_path / "private" / "secret.abc"
    path.parent.mkdir()
    path.write_text(f"X:7\nT:{token}\nM:4/4\nL:1/8\nK:C\n%{token}\nCDEF GABc|\n")
    return path, token


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def _planted(secret: Path) -> dict[str, str]:
    return {name: text.replace("@S@", str(secret)) for name, text in TRICKS.items()}


def _formats() -> list[str]:
    optional = {"pdf": "rsvg-convert", "flac": "flac"}
    return [f for f in FORMATS if f not in optional or shutil.which(optional[f])]


@pytest.mark.parametrize("sandbox", ["bwrap", "rlimits"])
@pytest.mark.parametrize("synth", ["timidity", "fluidsynth"])
def test_no_leak_from_check_and_render(
    sandbox: str, synth: str, secret: tuple[Path, str], logs: pytest.LogCaptureFixture
) -> None:
    path, token = secret
    settings = Settings(sandbox=sandbox, synth=synth)  # type: ignore[arg-type]
    seen: list[str] = []
    blobs: list[bytes] = []
    for name, text in _planted(path).items():
        result = check_abc(text, settings)
        assert not result.ok, name
        assert "refused before any tool" in result.errors[0], (name, result.errors)
        seen += result.errors + result.warnings
        try:
            with rendered(text, _formats(), settings) as done:
                blobs += [p.read_bytes() for p in done.files.values()]
                seen += done.warnings
        except RenderError as exc:
            assert "refused before any tool" in str(exc), (name, exc)
            seen += [str(exc), exc.detail]
        else:
            pytest.fail(f"{name} rendered")
    assert not any(token in text for text in seen)
    assert not any(token.encode() in blob for blob in blobs)
    assert token not in logs.text
    assert not any("started" in r.getMessage() for r in logs.records), "a tool ran"


def test_no_leak_from_corpus_import(
    tmp_path: Path, secret: tuple[Path, str], logs: pytest.LogCaptureFixture
) -> None:
    path, token = secret
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "tricks.abc").write_text("\n\n".join(_planted(path).values()) + "\n")
    store = LocalStore(tmp_path / "store")
    record = import_corpus(store, str(folder), name="tricks")
    # (The I:format line before an X: belongs to no tune, so import never reads it.)
    assert set(record.stripped_directives) == {
        "format", "MIDI ptstress", "ss-pref", "abcm2ps", "abc-include", "+:"
    }  # fmt: skip
    for key in store.list("corpora/"):
        data = store.get_bytes(key)
        assert token.encode() not in data, key
        for needle in (b"format", b"ptstress", b"include", b"ss-pref", b"abcm2ps", b"+:"):
            assert needle not in data or key.endswith("corpus.json"), (key, needle)
    assert token not in logs.text


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_env: TinyEnv) -> Iterator[Path]:
    with embedded_data_dir(tmp_path / "data", monkeypatch, tiny_env.store) as data:
        yield data


def test_no_leak_from_model_evaluate_and_submit_batch_primer(
    embedded: Path, tmp_path: Path, secret: tuple[Path, str], logs: pytest.LogCaptureFixture
) -> None:
    path, token = secret
    tricks = _planted(path)
    scored = tmp_path / "tricks.abc"
    scored.write_text("\n\n".join(tricks.values()) + "\n")
    code, out, err = run("model", "evaluate", "latest", "--file", str(scored), "--json")
    assert code == 0, err
    texts = [out, err]
    for name, text in tricks.items():
        code, out, err = run("submit-batch", "--count", "2", "--primer", text, "--any",
                             "--formats", "abc,mid,svg")  # fmt: skip
        assert code != 0 and "is refused" in err, (name, err)
        texts += [out, err]
    assert not any(token in text for text in texts)
    assert token not in logs.text
    stored = [p.read_bytes() for p in embedded.rglob("*") if p.is_file()]
    assert not any(token.encode() in data for data in stored)
    assert not (embedded / "batches").exists()
