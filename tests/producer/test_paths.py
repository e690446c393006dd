"""The paths a command reads and writes: regular files only, never through a symlink.

A path given to a command may name a device (``/dev/zero`` never ends), a FIFO (a read blocks
forever) or a folder, and a folder a command writes into may hold symlinks someone planted
(``index.html -> ~/.bashrc``). Every case must end in one clear ``error:`` line or a correct
result: no traceback, no unbounded read, no block, no write through a link, no file read from
outside an imported folder. Device and FIFO cases run the real CLI in a subprocess, under a
memory limit and a timeout, so a regression fails the test instead of hanging or swapping.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from common.abc.corpus import load_corpus
from common.store.local import LocalStore
from producer.tunebook import parse_ids
from tests.producer.conftest import GalleryBatch
from tests.producer_cli import run

GOOD = "X:1\nT:Kept tune\nM:6/8\nL:1/8\nK:G\nD|GAB cBA|GAB c2:|\n"
SECRET = "X:1\nT:SECRET-outside-the-folder\nM:4/4\nL:1/8\nK:D\nDEFG ABcd|dcBA GFED|\n"
BATCH = "b20260101-000000-abcdef"


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    assert "Traceback" not in err, err[-2000:]
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), err[-2000:]
    flat = " ".join(err.split())
    for needle in needles:
        assert needle in flat, err[-2000:]


# -- reading: devices and FIFOs -------------------------------------------------------------------


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _cli(data: Path, *args: str) -> tuple[int, str]:
    """(exit code, stderr) of the real ``producer`` process, at most 2 GiB and 60 s."""
    env = {**os.environ, "TUNEBATCH_DATA_DIR": str(data)}
    for key in ("TUNEBATCH_BROKER_URL", "TUNEBATCH_S3_BUCKET"):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-c", "from producer.cli import main; main()", *args],
        env=env, capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory,
        check=False,
    )  # fmt: skip
    return done.returncode, done.stderr


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.abc"
    os.mkfifo(path)
    return path


READERS = {
    "report --file": lambda p: ["report", "--file", str(p)],
    "tunebook --ids": lambda p: ["tunebook", BATCH, "--ids", str(p)],
    "model evaluate --file": lambda p: ["model", "evaluate", "latest", "--file", str(p)],
    "corpus import": lambda p: ["corpus", "import", str(p)],
}


@pytest.mark.parametrize("command", sorted(READERS))
def test_a_device_is_refused_in_one_line_without_reading_it(command: str, tmp_path: Path) -> None:
    code, err = _cli(tmp_path / "data", *READERS[command](Path("/dev/zero")))
    one_line_error(code, err, "/dev/zero")


@pytest.mark.parametrize("command", sorted(READERS))
def test_a_fifo_is_refused_in_one_line_without_blocking(
    command: str, fifo: Path, tmp_path: Path
) -> None:
    code, err = _cli(tmp_path / "data", *READERS[command](fifo))
    one_line_error(code, err, str(fifo))


def test_the_refusal_says_what_the_path_is(tmp_path: Path, fifo: Path) -> None:
    _, err = _cli(tmp_path / "data", "report", "--file", "/dev/zero")
    assert "character device" in err and "not a regular file" in err
    _, err = _cli(tmp_path / "data", "tunebook", BATCH, "--ids", str(fifo))
    assert "FIFO" in err


def test_a_file_too_large_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(17 << 20)  # sparse: 17 MiB of ids file, past the 16 MiB limit
    code, err = _cli(tmp_path / "data", "tunebook", BATCH, "--ids", str(big))
    one_line_error(code, err, "more than the")


# -- reading: an imported folder ------------------------------------------------------------------


def _folder_with_links(tmp_path: Path) -> Path:
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.abc").write_text(SECRET)
    folder = tmp_path / "tunes"
    (folder / "sub").mkdir(parents=True)
    (folder / "good.abc").write_text(GOOD)
    (folder / "link-out.abc").symlink_to(outside / "secret.abc")
    (folder / "sub" / "link-in.abc").symlink_to(folder / "good.abc")
    (folder / "linked-folder").symlink_to(outside, target_is_directory=True)
    os.mkfifo(folder / "pipe.abc")
    return folder


def test_import_of_a_folder_does_not_follow_links_out_of_it(
    fresh_data_dir: Path, tmp_path: Path
) -> None:
    folder = _folder_with_links(tmp_path)
    code, out, err = run("corpus", "import", str(folder), "--name", "linked", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["files"] == 1  # good.abc, once (link-in.abc leads to it), not the pipe
    corpus = load_corpus(LocalStore(fresh_data_dir), "linked")
    assert "SECRET" not in corpus.train_text + corpus.valid_text
    from common.abc.corpus import folder_files

    files, outside = folder_files(folder)
    assert files == [(folder / "good.abc").resolve()]
    assert outside == [folder / "link-out.abc"]


# -- writing: symlinks, files and devices where a folder or file goes -----------------------------


def test_gallery_replaces_planted_symlinks_instead_of_writing_through(
    embedded: Path, gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    (site / "assets").mkdir(parents=True)
    (site / gallery_batch.batch_id).mkdir()
    victims = {name: tmp_path / f"victim-{n}" for n, name in enumerate(
        ["index.html", "assets/gallery.js", f"{gallery_batch.batch_id}/t000000.abc",
         f"{gallery_batch.batch_id}/manifest.json"]
    )}  # fmt: skip
    for name, victim in victims.items():
        victim.write_text("precious\n")
        (site / name).symlink_to(victim)
    code, _, err = run("gallery", gallery_batch.batch_id, "--to", str(site))
    assert code == 0, err
    for name, victim in victims.items():
        assert victim.read_text() == "precious\n", name
        assert not (site / name).is_symlink() and (site / name).is_file(), name
    assert "<html" in (site / "index.html").read_text()


def test_gallery_refuses_a_symlinked_folder_of_its_own(
    embedded: Path, gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    site.mkdir()
    elsewhere.mkdir()
    (site / "assets").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = run("gallery", gallery_batch.batch_id, "--to", str(site))
    one_line_error(code, err, "symbolic link")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("command", ["gallery", "fetch"])
def test_a_file_or_device_as_the_to_folder_is_one_line(
    command: str, embedded: Path, gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    for target in (a_file, Path("/dev/null")):
        code, _, err = run(command, gallery_batch.batch_id, "--to", str(target))
        one_line_error(code, err, str(target), "not a folder")
    assert a_file.read_text() == "not a folder\n"


def test_tunebook_to_replaces_a_symlink_and_refuses_a_device_or_folder(
    embedded: Path, gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    victim, book = tmp_path / "victim", tmp_path / "book.abc"
    victim.write_text("precious\n")
    book.symlink_to(victim)
    code, _, err = run("tunebook", gallery_batch.batch_id, "t000003", "--to", str(book))
    assert code == 0, err
    assert victim.read_text() == "precious\n"
    assert not book.is_symlink() and "X:1" in book.read_text()
    for target in ("/dev/null", str(tmp_path)):
        code, _, err = run("tunebook", gallery_batch.batch_id, "t000003", "--to", target)
        one_line_error(code, err, target)


# -- tunebook --ids: many ids ---------------------------------------------------------------------


def test_many_ids_give_a_short_error_naming_a_few(
    embedded: Path, gallery_batch: GalleryBatch, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"t{i:06d}\n" for i in range(100_000)) * 2)  # each twice
    code, _, err = run("tunebook", gallery_batch.batch_id, "--ids", str(ids))
    one_line_error(code, err, "has no ABC for", "more")
    assert len(err) < 400, len(err)


def test_parse_ids_drops_duplicates_keeping_the_first() -> None:
    assert parse_ids("t000003 t000001, t000003\n# t000009\nt000001 t000002") == [
        "t000003", "t000001", "t000002"
    ]  # fmt: skip


def test_a_bad_id_is_shown_short() -> None:
    from common.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as caught:
        parse_ids("t000001 " + "x" * 100_000)
    assert len(str(caught.value)) < 120
