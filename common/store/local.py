"""The local backend of `ArtifactStore`: artifacts as files under one directory.

Writes go through `common.files.atomic_write` (temp file, fsync, rename), so a killed worker
leaves either the old file or the new one; hashes come from the process-wide cache there, so a
file this process wrote or read is hashed once while it is unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from common.errors import InvalidInputError, NotFoundError, StorageError
from common.files import atomic_write, read_chunks, sha256_of_open
from common.store.base import (
    ArtifactStore,
    ObjectInfo,
    check_expires,
    is_valid_key,
    os_error,
    validate_key,
    validate_prefix,
)

__all__ = ["LocalStore"]

logger = logging.getLogger(__name__)


class LocalStore(ArtifactStore):
    """Artifacts as files under one root directory: ``<root>/<key>``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.description = f"local directory {self.root}"

    # -- helpers ---------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _not_found(self, key: str) -> NotFoundError:
        return NotFoundError(f"no artifact {key!r} in {self.description}")

    def _store(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        path = self._path(key)
        try:
            st, sha = atomic_write(path, chunks)
        except OSError as exc:
            raise os_error(
                exc,
                doing=f"writing {key!r}",
                where=self.root,
                hint="set TUNEBATCH_DATA_DIR to a writable directory",
            ) from exc
        logger.debug("stored %s (%d bytes) in %s", key, st.st_size, self.root)
        return ObjectInfo(key=key, size=st.st_size, sha256=sha)

    # -- API -------------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        return self._store(key, [bytes(data)])

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> ObjectInfo:
        validate_key(key)
        try:
            src = Path(path).open("rb")  # noqa: SIM115 - closed below, after the streaming write
        except OSError as exc:
            raise InvalidInputError(
                f"cannot store {path} as {key!r}: {exc.strerror or exc}"
            ) from exc
        with src:
            return self._store(key, read_chunks(src))

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise self._not_found(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key!r} from {self.description}: {exc}") from exc

    def get_file(self, key: str, dest: Path) -> ObjectInfo:
        path = self._path(key)
        dest = Path(dest)
        try:
            src = path.open("rb")  # closed below, after the streaming write
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise self._not_found(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key!r} from {self.description}: {exc}") from exc
        with src:
            try:
                st, sha = atomic_write(dest, read_chunks(src))
            except OSError as exc:
                raise os_error(
                    exc,
                    doing=f"copying {key!r} to {dest}",
                    where=dest.parent,
                    hint="choose a writable destination",
                ) from exc
        return ObjectInfo(key=key, size=st.st_size, sha256=sha)

    def info(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            f = path.open("rb")  # closed just below
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {key!r} from {self.description}: {exc}") from exc
        with f:
            st, sha = sha256_of_open(path, f)
        return ObjectInfo(key=key, size=st.st_size, sha256=sha)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        validate_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[str]:
        base_rel = prefix.rpartition("/")[0]
        base = self.root / base_rel if base_rel else self.root
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            # Only descend where a key could still start with the prefix.
            dirnames[:] = [
                d
                for d in dirnames
                if (rel_dir + d + "/").startswith(prefix) or prefix.startswith(rel_dir + d + "/")
            ]
            for name in filenames:
                key = rel_dir + name
                # Temp files (".tmp-…") and foreign files are not valid keys: never listed.
                if key.startswith(prefix) and is_valid_key(key):
                    keys.append(key)
        yield from sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a "folder" of other keys, not an object: nothing to delete
        except OSError as exc:
            raise os_error(
                exc,
                doing=f"deleting {key!r}",
                where=self.root,
                hint="set TUNEBATCH_DATA_DIR to a writable directory",
            ) from exc
        logger.debug("deleted %s from %s", key, self.root)

    def url(self, key: str, expires_s: int = 3600) -> str:
        check_expires(expires_s)
        path = self._path(key)
        if not path.is_file():
            raise self._not_found(key)
        return path.as_uri()

    def local_path(self, key: str) -> Path | None:
        return self._path(key)
