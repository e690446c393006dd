"""A real generated and rendered batch for the gallery tests, made once per session.

The tiny model of tests/model_fixtures.py writes poor tunes, so each tune is primed with a
header and one bar (meters and keys vary, for the filters) and sampled cold with --valid-only
and up to 40 tries (the most any tune needs is 20; with 8, six tunes failed the gate): every tune
then passes it and has notes to draw and audio to play. Two titles are then replaced with hostile
markup, in the manifest and in the .abc (hashes updated), as a user's corpus could carry them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.formats import canonical_formats
from common.jobs.batches import manifest_key, tune_key
from common.jobs.context import Context
from common.jobs.embedded import run_batch
from common.schemas import ArtifactFile, BatchSpec, Manifest
from common.state.local import LocalRecords
from common.store.local import LocalStore
from producer import options
from tests.model_fixtures import TinyEnv, tiny_settings
from tests.producer_cli import embedded_data_dir

GALLERY_TUNES = 50
METERS = ("6/8", "4/4", "3/4")
KEYS = ("D", "G", "Ador")
FIRST_BAR = {"6/8": "DFA dFA|", "4/4": "DEFG ABcd|", "3/4": "D2 F2 A2|"}
#: tune id -> title; each would run script if it reached the page as markup.
HOSTILE_TITLES = {
    "t000001": "<script>window.__pwned=1</script>",
    "t000002": '"><img src=x onerror=window.__pwned=1>',
}


@dataclass(frozen=True)
class GalleryBatch:
    data_dir: Path
    store: LocalStore
    batch_id: str
    manifest: Manifest


def _retitle(store: LocalStore, manifest: Manifest, titles: dict[str, str]) -> Manifest:
    tunes = []
    for tune in manifest.tunes:
        if tune.tune_id not in titles:
            tunes.append(tune)
            continue
        title = titles[tune.tune_id]
        files = []
        for item in tune.files:
            if item.format == "abc":
                text = store.get_bytes(item.key).decode("utf-8")
                text = text.replace(f"T:{tune.title}", f"T:{title}", 1)
                info = store.put_bytes(item.key, text.encode("utf-8"))
                item = ArtifactFile(format="abc", key=item.key, size=info.size, sha256=info.sha256)
            files.append(item)
        tunes.append(tune.model_copy(update={"title": title, "files": files}))
    changed = manifest.model_copy(update={"tunes": tunes})
    store.put_bytes(manifest_key(manifest.batch_id), changed.model_dump_json(indent=2).encode())
    return changed


@pytest.fixture(scope="session")
def gallery_batch(tiny_env: TinyEnv, tmp_path_factory: pytest.TempPathFactory) -> GalleryBatch:
    data_dir = tmp_path_factory.mktemp("gallery-data")
    store = LocalStore(data_dir)
    for key in tiny_env.store.list("models/"):
        store.put_bytes(key, tiny_env.store.get_bytes(key))
    ctx = Context(
        settings=tiny_settings(data_dir), store=store, records=LocalRecords(data_dir / "records")
    )
    primers = []
    for i in range(GALLERY_TUNES):
        meter, key = METERS[i % 3], KEYS[(i // 3) % 3]
        primers.append(f"X:1\nT:Tune {i}\nM:{meter}\nL:1/8\nK:{key}\n{FIRST_BAR[meter]}")
    spec = BatchSpec(
        count=GALLERY_TUNES, model_id=tiny_env.model.id, seed=3, temperature=0.4, top_k=4,
        valid_only=True, max_tries=40, max_chars=300, chunk_size=25, primers=primers,
        primed_by=[f"tiny:{i % 7}" if i % 5 == 0 else "" for i in range(GALLERY_TUNES)],
        formats=("abc", "mid", "wav", "svg", "ogg"),
    )  # fmt: skip
    manifest = run_batch(ctx, spec)
    manifest = _retitle(store, manifest, HOSTILE_TITLES)
    return GalleryBatch(data_dir, store, manifest.batch_id, manifest)


@pytest.fixture
def embedded(gallery_batch: GalleryBatch, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The CLI in embedded mode on the gallery batch's data dir."""
    for key in ("TUNEBATCH_BROKER_URL", "TUNEBATCH_S3_BUCKET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TUNEBATCH_DATA_DIR", str(gallery_batch.data_dir))
    options.settings.cache_clear()
    yield gallery_batch.data_dir
    options.settings.cache_clear()


@pytest.fixture
def fresh_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The CLI in embedded mode on a new, empty data dir."""
    with embedded_data_dir(tmp_path / "data", monkeypatch) as data:
        yield data


#: Tunes a musician would practise, written by hand so the page's loop and play-from-note times
#: can be checked against the music: two 8-bar parts with pickups, each repeated, and a tempo
#: from the type (R:reel is played at Q:1/2=100, so a bar lasts 1.2 s and a part 9.6 s).
PRACTICE_TUNES = {
    "t000000": "X:1\nT:Practice Reel\nR:reel\nM:4/4\nL:1/8\nK:D\n"
    "|:AG|FAdA FAdA|GBdB GBdB|FAdA FAdA|GBAG FDD2|FAdA FAdA|GBdB GBdB|FAdf edcB|A2d2 d2:|\n"
    "|:fg|afdf afdf|gecA gece|afdf afdf|gece d2fg|afdf afdf|gecA gece|fdec dBAF|E2D2 D2:|\n",
    "t000001": "X:1\nT:Practice Jig\nR:double jig\nM:6/8\nL:1/8\nK:G\n"
    "|:D|GBd gdB|GBd gdB|cBc ABc|BAG AFD|GBd gdB|GBd gdB|cBA BAG|AFD G2:|\n"
    "|:d|gfg agf|gdB Bcd|efe edB|ded dBA|gfg agf|gdB Bcd|cBA BAG|AFD G2:|\n",
    "t000002": "X:1\nT:Not a Reel\nR:reel\nM:6/8\nL:1/8\nK:D\n|:FAA dAA|FAA d2e|fdd ecA|ABc d3:|\n",
}
#: Seconds of one part of the practice reel at its type's tempo (8 bars of 1.2 s).
REEL_PART_SECONDS = 9.6


@pytest.fixture(scope="session")
def practice_batch(gallery_batch: GalleryBatch, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A finished batch in the gallery batch's store whose tunes are `PRACTICE_TUNES`, rendered
    by the real pipeline (abc2midi, timidity, oggenc, abcm2ps) on the fiddle."""
    from common.params import Instrument
    from common.render.pipeline import rendered
    from common.schemas import RenderInfo, TuneStatus, new_batch_id

    store = gallery_batch.store
    source = gallery_batch.manifest
    batch_id = new_batch_id()
    formats = ["abc", "mid", "ogg", "svg"]
    settings = tiny_settings(tmp_path_factory.mktemp("practice-render"))
    tunes = []
    for index, (tid, abc) in enumerate(PRACTICE_TUNES.items()):
        files = []
        with rendered(abc, formats, settings, instrument=Instrument.FIDDLE) as result:
            for fmt in formats:
                key = tune_key(batch_id, tid, fmt)
                info = (
                    store.put_bytes(key, abc.encode("utf-8"))
                    if fmt == "abc"
                    else store.put_file(key, result.files[fmt])
                )
                files.append(ArtifactFile(format=fmt, key=key, size=info.size, sha256=info.sha256))
            seconds = result.midi_seconds
        title = abc.split("T:", 1)[1].split("\n", 1)[0]
        tunes.append(
            source.tunes[0].model_copy(
                update={
                    "batch_id": batch_id,
                    "tune_id": tid,
                    "index": index,
                    "title": title,
                    "files": files,
                    "status": TuneStatus.DONE,
                    "primed_by": None,
                    "bars": None,
                    "render": RenderInfo(midi_seconds=seconds),
                }
            )
        )
    spec = source.spec.model_copy(
        update={"count": len(tunes), "primers": None, "primed_by": None,
                "formats": canonical_formats(formats), "instrument": Instrument.FIDDLE}
    )  # fmt: skip
    manifest = source.model_copy(
        update={"batch_id": batch_id, "spec": spec, "tunes": tunes, "counts": {"done": len(tunes)}}
    )
    store.put_bytes(manifest_key(batch_id), manifest.model_dump_json(indent=2).encode())
    return batch_id
