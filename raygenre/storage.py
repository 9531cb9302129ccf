"""Where a run lives: a local folder or an object-store prefix (``s3://bucket/runs``, ``gs://…``).

Everything a run writes and reads goes through a :class:`RunPath`, which pairs a URI with the
``pyarrow.fs`` filesystem that serves it, so one code path serves a laptop folder and S3. Ray Data,
Ray Tune and ``pyarrow.parquet`` take the same filesystem. Credentials come from the standard
environment (``AWS_*`` variables, ``~/.aws``, an instance profile; ``AWS_ENDPOINT_URL`` for an
S3-compatible server) and never from the URI, so they cannot reach logs, records or reports.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from raygenre.errors import ConfigError


def is_remote(uri: str | os.PathLike) -> bool:
    """True for a URI with a scheme other than ``file``: writes go through the object store, not the disk."""
    text = str(uri)
    return "://" in text and not text.startswith("file://")


@functools.lru_cache(maxsize=16)
def _filesystem(root: str) -> pafs.FileSystem:
    """One filesystem per bucket (resolving an S3 bucket's region is a network call)."""
    return pafs.FileSystem.from_uri(root)[0]


@dataclass(frozen=True)
class RunPath:
    """A file or folder of a run: ``uri`` is an absolute local path or ``scheme://bucket/key``."""

    uri: str

    @classmethod
    def of(cls, where: str | os.PathLike | RunPath) -> RunPath:
        if isinstance(where, RunPath):
            return where
        text = str(where)
        if text.startswith("file://"):
            text = text[len("file://"):]
        if is_remote(text):
            parts = urlsplit(text)
            if parts.username or parts.password or parts.query:
                raise ConfigError(f"'{parts.scheme}://{parts.hostname}/…': give object-store credentials and "
                                  "endpoints through the AWS environment or profile, not in the URI.")
            return cls(text.rstrip("/"))
        return cls(str(Path(text).expanduser().resolve()))

    # -- naming -----------------------------------------------------------------------------------
    @property
    def remote(self) -> bool:
        return is_remote(self.uri)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> RunPath:
        return RunPath(self.uri.rstrip("/").rsplit("/", 1)[0])

    def __truediv__(self, part: str) -> RunPath:
        return RunPath(f"{self.uri.rstrip('/')}/{str(part).strip('/')}")

    def __str__(self) -> str:
        return self.uri

    def __fspath__(self) -> str:
        """Only a local RunPath is a filesystem path; code that needs a remote one must use ``fs``/``path``."""
        if self.remote:
            raise TypeError(f"{self.uri} is in object storage, not on this machine's disk")
        return self.uri

    @property
    def local(self) -> Path | None:
        return None if self.remote else Path(self.uri)

    @property
    def fs(self) -> pafs.FileSystem:
        if not self.remote:
            return pafs.LocalFileSystem()
        parts = urlsplit(self.uri)
        return _filesystem(f"{parts.scheme}://{parts.netloc}")

    @property
    def path(self) -> str:
        """The path as ``fs`` names it (``bucket/key`` on S3, the absolute path locally)."""
        if not self.remote:
            return self.uri
        parts = urlsplit(self.uri)
        return f"{parts.netloc}{parts.path}".rstrip("/")

    # -- queries ----------------------------------------------------------------------------------
    def _type(self) -> pafs.FileType:
        return self.fs.get_file_info(self.path).type

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._type() == pafs.FileType.Directory

    def files(self, suffix: str = "", recursive: bool = True) -> list[RunPath]:
        """Files under this folder whose name ends with ``suffix``, sorted; none when it does not exist."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=recursive, allow_not_found=True))
        base = self.path.rstrip("/") + "/"
        return sorted((self / i.path[len(base):] for i in infos
                       if i.type == pafs.FileType.File and i.base_name.endswith(suffix)), key=lambda p: p.uri)

    # -- reading and writing ----------------------------------------------------------------------
    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def read_json(self):
        return json.loads(self.read_text())

    def write_bytes(self, data: bytes) -> None:
        """Whole or not at all: locally a temp file renamed over the target; an object PUT is atomic."""
        if self.remote:
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
            return
        target = Path(self.uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}"
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def write_json(self, body, indent: int | None = 2) -> None:
        self.write_text(json.dumps(body, indent=indent) + "\n")

    def mkdir(self) -> None:
        """Locally a folder; object stores have no folders (a no-op)."""
        if not self.remote:
            Path(self.uri).mkdir(parents=True, exist_ok=True)

    def delete(self) -> None:
        """Remove this folder and everything under it (or this file); nothing when it does not exist."""
        kind = self._type()
        if kind == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif kind == pafs.FileType.File:
            self.fs.delete_file(self.path)

    # -- moving whole folders between here and this machine ---------------------------------------
    def upload(self, folder: str | os.PathLike) -> None:
        """Copy a local folder's files under this one (multipart for big files on S3)."""
        if not self.remote:
            shutil.copytree(folder, self.uri, dirs_exist_ok=True)
            return
        pafs.copy_files(str(Path(folder).resolve()), self.path, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)

    def download(self, folder: str | os.PathLike) -> Path:
        """Copy this folder's files into a local folder; returns it."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(self.path, str(out.resolve()), source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())
        return out

    @contextmanager
    def replacing(self) -> Iterator[RunPath]:
        """A folder to write this one's new content into; on exit (without error) it replaces this one.

        Locally it is a sibling temp folder renamed into place, so a reader never sees half of it. An
        object store cannot rename a folder: there the old objects are deleted and the new ones written
        in place, and whatever names the folder as finished (a manifest, a record) must be written after.
        """
        if self.remote:
            self.delete()
            yield self
            return
        target = Path(self.uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            yield RunPath(str(tmp))
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def written_locally(self) -> Iterator[Path]:
        """A local folder to write into that becomes this folder on exit (without error): see
        :meth:`replacing`; in object storage the local folder is uploaded."""
        with self.replacing() as dest:
            if dest.local is not None:
                yield dest.local
                return
            with tempfile.TemporaryDirectory(prefix="raygenre-upload-") as tmp:
                yield Path(tmp)
                dest.upload(tmp)


def check_reachable(root: RunPath) -> None:
    """Fail before Ray starts, in one sentence, when a run folder can be neither made nor reached."""
    if not root.remote:
        try:
            Path(root.uri).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--storage {root.uri} cannot be made: {exc.strerror or exc}.") from None
        if not os.access(root.uri, os.W_OK):
            raise ConfigError(f"--storage {root.uri} is not writable.")
        return
    bucket = root.path.split("/", 1)[0]
    try:
        fs = root.fs
        kind = fs.get_file_info(bucket).type
    except (OSError, ValueError) as exc:  # no endpoint, refused credentials, a malformed URI
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--storage {root.uri} is not reachable: {first}") from None
    if kind == pafs.FileType.NotFound:
        raise ConfigError(f"--storage {root.uri}: bucket '{bucket}' does not exist or these credentials cannot see it.")
