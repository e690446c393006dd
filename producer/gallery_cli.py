"""``producer gallery`` and ``producer tunebook``: a batch as a web page, chosen tunes as one file.

Both read the batch from whichever store is configured (local disk in embedded mode, the bucket
in distributed mode), through the manifest, so they work the same in both modes. The gallery
copies what the page needs into its folder (see `producer.gallery`): a page that holds
presigned URLs would stop playing when they expire, and a local copy also opens offline.
``--serve`` is for browsers or setups that will not open ``file://`` pages; it serves that same
folder on 127.0.0.1 only.
"""

from __future__ import annotations

import functools
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from common.formats import TABLE

from producer import views
from producer.options import handles_errors
from producer.options import settings as _settings
from producer.options import store as _store

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer


#: The largest ids file `tunebook --ids` reads: a million ids with their separators.
MAX_IDS_FILE_BYTES = 16 << 20


def default_gallery_dir(batch: str) -> Path:
    path: Path = _settings().data_dir / "galleries" / batch
    return path


def make_server(folder: Path, port: int) -> ThreadingHTTPServer:
    """An HTTP server for ``folder`` on 127.0.0.1 only: the page is for this machine's browser.

    (``http.server`` is imported here, not at the top, to keep ``producer --help`` instant.)
    """
    import http.server

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {  # noqa: RUF012 - the base class declares it a plain class attribute
            **http.server.SimpleHTTPRequestHandler.extensions_map,
            # The formats' types as the bucket serves them (the formats table's); an .abc link
            # opens as text in the browser rather than downloading.
            **{fmt.suffix: fmt.content_type for fmt in TABLE},
            ".abc": "text/plain; charset=utf-8",
            ".js": "text/javascript",
        }

        def log_message(self, format: str, *args: object) -> None:
            return

        def send_head(self) -> Any:
            """The file, or the one byte range asked for (206): a browser seeks in audio by
            asking for the bytes from that point, and without ranges it plays from the start
            (seeking to 30 s landed at 1.4 s)."""
            wanted = _byte_range(self.headers.get("Range"))
            path = Path(self.translate_path(self.path))
            if wanted is None or not path.is_file():
                return super().send_head()
            size = path.stat().st_size
            first, last = wanted
            if first is None:  # bytes=-N: the last N bytes
                first, last = max(0, size - (last or 0)), size - 1
            last = size - 1 if last is None or last >= size else last
            if first >= size or first > last:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return None
            with path.open("rb") as handle:
                handle.seek(first)
                body = handle.read(last - first + 1)
            self.send_response(206)
            self.send_header("Content-Type", self.guess_type(str(path)))
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.send_header("Content-Length", str(last - first + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            return io.BytesIO(body)

    return http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(Handler, directory=str(folder))
    )


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(header: str | None) -> tuple[int | None, int | None] | None:
    """(first, last) of a single ``Range: bytes=first-last`` header; None for none or another
    form (several ranges are answered with the whole file, as HTTP allows)."""
    match = _RANGE.match((header or "").strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first = int(match.group(1)) if match.group(1) else None
    last = int(match.group(2)) if match.group(2) else None
    return first, last


def serve(folder: Path, port: int, *, open_page: bool = False) -> None:
    """Serve ``folder`` until Ctrl-C; a URL, not a file, for the browser."""
    import webbrowser

    with make_server(folder, port) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        views.console.print(f"serving {folder} at {url} (Ctrl-C stops)", highlight=False)
        if open_page:
            webbrowser.open(url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            views.console.print("stopped")


@handles_errors
def gallery(
    batch: Annotated[
        str, typer.Argument(help="Batch id (it must be finished: it needs a manifest).")
    ],
    to: Annotated[
        Path | None,
        typer.Option(
            help="Folder to write the site into; default $TUNEBATCH_DATA_DIR/galleries/<batch>."
        ),
    ] = None,
    open_page: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
    serve_page: Annotated[
        bool, typer.Option("--serve", help="Also serve the folder on 127.0.0.1 until Ctrl-C.")
    ] = False,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port for --serve (0: any free).")
    ] = 8765,
) -> None:
    """Write a static web page of a finished batch: notation, playback, quality, downloads."""
    from producer.gallery import build_gallery

    folder = (to or default_gallery_dir(batch)).resolve()
    result = build_gallery(_store(), batch, folder)
    views.console.print(
        f"gallery of {result.tunes} tunes ({result.downloaded} files fetched):", highlight=False
    )
    typer.echo(str(result.index))
    if serve_page:
        serve(folder, port, open_page=open_page)
    elif open_page:
        import webbrowser

        webbrowser.open(result.index.as_uri())


@handles_errors
def tunebook(
    batch: Annotated[str, typer.Argument(help="Batch id.")],
    ids: Annotated[
        list[str] | None, typer.Argument(help="Tune ids, e.g. t000003 t000017 (in this order).")
    ] = None,
    ids_file: Annotated[
        Path | None,
        typer.Option("--ids", help="File of tune ids (the gallery's 'Export favourite ids')."),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every tune of the batch that has its ABC, in order.")
    ] = False,
    pdf: Annotated[
        bool,
        typer.Option("--pdf", help="Engrave the tunes into an A4 PDF (abcm2ps) instead of .abc."),
    ] = False,
    to: Annotated[
        Path | None,
        typer.Option(help="Write the book here instead of stdout (required with --pdf)."),
    ] = None,
) -> None:
    """Join chosen tunes of a batch into one .abc tunebook, renumbered X:1, X:2, ... (or a PDF)."""
    from common.errors import InvalidInputError
    from common.files import read_regular_file, write_output_file

    from producer.tunebook import export_tunebook, parse_ids, tunes_with_abc

    chosen = parse_ids(" ".join(ids or []))
    if ids_file is not None:
        data = read_regular_file(ids_file, limit=MAX_IDS_FILE_BYTES, what="ids file")
        text = data.decode("utf-8", errors="replace")
        chosen = list(dict.fromkeys([*chosen, *parse_ids(text)]))
    if every:
        chosen = list(dict.fromkeys([*chosen, *tunes_with_abc(_store(), batch)]))
    if pdf and to is None:
        raise InvalidInputError("--pdf writes a binary file: name it with --to BOOK.pdf")
    book = export_tunebook(_store(), batch, chosen)
    if pdf:
        from common.abc.notation import split_tunes
        from common.render.pipeline import tunebook_pdf

        data = tunebook_pdf(list(split_tunes(book)), _settings())
        assert to is not None
        write_output_file(to, data, what="--to")
        views.err_console.print(f"{len(chosen)} tunes engraved into {to}", highlight=False)
    elif to is None:
        typer.echo(book, nl=False)
    else:
        write_output_file(to, book.encode("utf-8"), what="--to")
        views.err_console.print(f"{len(chosen)} tunes written to {to}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(gallery)
    app.command()(tunebook)
