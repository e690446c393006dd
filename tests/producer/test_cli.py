"""The producer CLI in embedded mode, through Typer's CliRunner, as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.lstm.precision import cpu_has_bf16
from producer import options
from tests.common.render.test_playing import programs
from tests.model_fixtures import TINY_CORPUS, TinyEnv
from tests.producer_cli import run


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    data = tmp_path / "data"
    monkeypatch.setenv("TUNEBATCH_DATA_DIR", str(data))
    monkeypatch.setenv("TUNEBATCH_SAMPLE_BATCH_SIZE", "8")
    monkeypatch.delenv("TUNEBATCH_BROKER_URL", raising=False)
    monkeypatch.delenv("TUNEBATCH_S3_BUCKET", raising=False)
    options.settings.cache_clear()
    yield data
    options.settings.cache_clear()


def assert_one_line_error(code: int, err: str, match: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), err
    assert match in " ".join(err.split()), err


def test_import_train_generate_fetch(env: Path, tmp_path: Path) -> None:
    code, out, err = run("corpus", "import", str(TINY_CORPUS), "--name", "tiny", "--json")
    assert code == 0, err
    assert json.loads(out)["name"] == "tiny"
    code, out, _ = run("corpus", "list", "--json")
    assert [c["name"] for c in json.loads(out)["imported"]] == ["tiny"]
    assert "oneills" in json.loads(out)["bundled"]
    # The table at a terminal's 80 columns: "held out" is the split, abc2midi's verdict has
    # its own name, and no header or cell is cut.
    code, out, _ = run("corpus", "list")
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 80, out
    header = next(line for line in out.splitlines() if line.startswith("name ") and "held" in line)
    assert header.split() == [
        "name", "train", "tunes", "held", "out", "train", "chars", "vocab", "abc2midi-clean",
        "source",
    ], out  # fmt: skip

    code, out, err = run(
        "train", "--corpus", "tiny", "--preset", "tiny", "--epochs", "1", "--stateful",
        "--learning-rate", "0.02", "--precision", "bfloat16", "--json",
    )  # fmt: skip
    assert code == 0, err
    model_id = json.loads(out)["id"]
    trained = json.loads(out)
    assert trained["stateful"] is True and trained["learning_rate"] == 0.02
    # bf16 where the CPU has it, else float32 with a log line (common.lstm.precision).
    assert trained["precision"] == ("mixed_bfloat16" if cpu_has_bf16() else "float32")
    assert "epoch 1" in err  # progress is shown on stderr
    code, out, _ = run("model", "list")
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 80, out
    assert "held-out bits/char" in out and model_id[:12] in out, out
    code, out, _ = run("model", "list", "--json")
    assert [m["id"] for m in json.loads(out)] == [model_id]
    code, out, err = run("model", "evaluate", model_id[:10], "--file", str(TINY_CORPUS), "--json")
    assert code == 0, err
    scored = json.loads(out)  # whole tunes, cleaned as on import
    assert scored["bits_per_char"] > 0 and scored["window_bits_per_char"] > 0
    assert scored["tunes"] > 0 and scored["raw"] is False
    code, out, err = run(
        "model", "evaluate", model_id[:10], "--file", str(TINY_CORPUS), "--raw", "--json"
    )
    assert code == 0, err
    raw = json.loads(out)
    assert raw["raw"] is True and raw["unknown_chars"] > scored["unknown_chars"]  # '%' comments

    code, out, err = run(
        "submit-batch", "--count", "3", "--any", "--formats", "abc,mid,wav", "--seed", "4",
        "--meter", "6/8", "--precision", "float32", "--audio", "preview",
        "--instrument", "fiddle", "--json",
    )  # fmt: skip
    assert code == 0, err
    batch_id = json.loads(out)["batch_id"]
    assert sum(json.loads(out)["counts"].values()) == 3
    folder = env / "batches" / batch_id
    assert (folder / "manifest.json").is_file()
    assert (folder / "t000000.abc").read_text().startswith("X:1\n")
    assert "M:6/8" in (folder / "t000002.abc").read_text()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {t["precision"] for t in manifest["tunes"]} == {"float32"}
    assert manifest["spec"]["audio"] == "preview"  # mono 16 kHz, in the manifest and the files
    done = [t["tune_id"] for t in manifest["tunes"] if t["status"] == "done"]
    with wave.open(str(folder / f"{done[0]}.wav")) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (1, 16000)
    # The instrument is recorded with the batch and heard in its MIDI (GM program 40, violin).
    assert manifest["spec"]["instrument"] == "fiddle"
    rendered = [t for t in manifest["tunes"] if t["status"] == "done"]
    assert rendered and all(
        programs((folder / f"{t['tune_id']}.mid").read_bytes()) == {40} for t in rendered
    )

    code, out, err = run("url", batch_id, "--json")  # the manifest and every tune's files
    assert code == 0, err
    links = json.loads(out)
    files = {f"{t['tune_id']}.{f['format']}" for t in manifest["tunes"] for f in t["files"]}
    assert set(links) == {"manifest"} | files and "t000000.abc" in files
    assert links["t000001.abc"] == (folder / "t000001.abc").absolute().as_uri()

    code, out, _ = run("status", batch_id, "--json")
    assert json.loads(out)["batch"]["id"] == batch_id
    code, out, _ = run("status", batch_id)
    assert code == 0 and "3/3 final" in out
    code, out, _ = run("list", "--json")
    assert [b["id"] for b in json.loads(out)] == [batch_id]
    code, out, err = run("fetch", batch_id, "--to", str(tmp_path / "got"), "--json")
    assert code == 0, err
    fetched = json.loads(out)
    assert fetched["downloaded"] >= 3
    assert (tmp_path / "got" / batch_id / "t000001.abc").is_file()


def test_unknown_corpus_empty_file_and_broken_abc(env: Path, tmp_path: Path) -> None:
    code, _, err = run("corpus", "import", "no-such-collection")
    assert_one_line_error(code, err, "unknown corpus 'no-such-collection'")
    empty = tmp_path / "empty.abc"
    empty.write_text("")
    code, _, err = run("corpus", "import", str(empty))
    assert_one_line_error(code, err, "no usable tunes")
    broken = tmp_path / "broken.abc"
    broken.write_bytes(b"X:1\nT:x\n%%abc-include /etc/shadow\nK:C\nC\n\nX:2\n\x00\x01\x02\n")
    code, _, err = run("corpus", "import", str(broken))
    assert_one_line_error(code, err, "no usable tunes")
    code, _, err = run("train", "--corpus", "nothing-here", "--preset", "tiny")
    assert_one_line_error(code, err, "corpus 'nothing-here' is not imported")
    assert not (env / "runs").exists()  # nothing half-written


def test_missing_model_and_bad_parameters(env: Path, tiny_env: TinyEnv) -> None:
    code, _, err = run("submit-batch", "--count", "2")
    assert_one_line_error(code, err, "no model is registered")
    code, _, err = run("submit-batch", "--count", "2", "--model", "deadbeef0000")
    assert_one_line_error(code, err, "no model id starts with 'deadbeef0000'")
    code, _, err = run("model", "evaluate", "latest", "--file", "/no/such/file.abc")
    assert_one_line_error(code, err, "no file /no/such/file.abc")
    code, _, err = run("status", "b20260101-000000-abcdef")
    assert_one_line_error(code, err, "no batch b20260101-000000-abcdef")
    code, _, err = run("status", "../../etc")
    assert_one_line_error(code, err, "not a valid batch id")
    code, _, err = run("train", "--corpus", "x", "--preset", "enormous")
    assert_one_line_error(code, err, "unknown preset 'enormous'")
    code, _, err = run("train", "--corpus", "x", "--train-on", "tunes", "--stateful")
    assert_one_line_error(code, err, "--train-on tunes or --stateful, not both")
    code, _, err = run("submit-batch", "--precision", "int4")
    assert code == 2 and "Invalid value for '--precision'" in err and "Traceback" not in err
    code, _, err = run("submit-batch", "--audio", "loud")
    assert code == 2 and "Invalid value for '--audio'" in err and "Traceback" not in err


def test_unwritable_data_dir_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TUNEBATCH_DATA_DIR", str(blocker / "data"))
    options.settings.cache_clear()
    try:
        code, _, err = run("corpus", "import", str(TINY_CORPUS))
    finally:
        options.settings.cache_clear()
    assert_one_line_error(code, err, str(blocker))


def test_producer_never_imports_tensorflow() -> None:
    code = (
        "import sys, producer.cli\n"
        "from typer.testing import CliRunner\n"
        "CliRunner().invoke(producer.cli.app, ['--help'])\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'\n"
    )
    env = {**os.environ, "TUNEBATCH_DATA_DIR": "/tmp/unused"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_commands_that_load_tensorflow_print_no_start_up_lines(
    tiny_env: TinyEnv, tmp_path: Path
) -> None:
    """`producer` as a user runs it (a process of its own, TensorFlow's variables unset): a
    command that loads a model prints its result and nothing of TensorFlow's start-up, unless
    --verbose asks for it."""
    from common.lstm.tf_logs import is_startup_noise

    data = tmp_path / "data"
    for key in tiny_env.store.list("models/"):
        (data / key).parent.mkdir(parents=True, exist_ok=True)
        (data / key).write_bytes(tiny_env.store.get_bytes(key))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TUNEBATCH_", "TF_CPP"))},
        "TUNEBATCH_DATA_DIR": str(data),
        "COLUMNS": "200",
    }

    def producer(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "producer.cli", *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)

    evaluate = ("model", "evaluate", "latest", "--file", str(TINY_CORPUS))
    quiet = producer(*evaluate)
    assert quiet.returncode == 0, quiet.stderr
    assert "bits/char" in quiet.stdout
    assert quiet.stderr == "", quiet.stderr
    loud = producer("--verbose", *evaluate)
    assert loud.returncode == 0, loud.stderr
    assert any(is_startup_noise(line) for line in loud.stderr.splitlines()), loud.stderr
