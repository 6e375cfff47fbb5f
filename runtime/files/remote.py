"""Files named by URI (s3://, gs://, hdfs://, file://...), read and written through pyarrow.fs.

Credentials come from the environment, as pyarrow finds them (AWS_* variables or ~/.aws for S3,
GOOGLE_APPLICATION_CREDENTIALS for GCS). Plain local paths never come here: they keep the local
engine's code path, so their keys and error messages are the same as `--engine local`.
pyarrow is imported on first use: the lean runtime does not need it.
"""

from __future__ import annotations

import functools

from fexport.errors import ImageError, OutputError

from . import walk
from .images import IMAGE_EXTENSIONS

# Schemes whose pyarrow path is everything after "://" (the bucket is part of the path).
_BUCKETS = ("s3", "gs", "gcs")


def is_uri(item) -> bool:
    return isinstance(item, str) and "://" in item


def split(uri):
    """(filesystem, path inside it) for a URI; one filesystem per bucket, reused."""
    scheme, rest = uri.split("://", 1)
    if scheme in _BUCKETS:
        return _filesystem(f"{scheme}://{rest.split('/', 1)[0]}"), rest
    if scheme == "file":
        return _filesystem("file:///"), rest
    from pyarrow import fs

    return fs.FileSystem.from_uri(uri)


def join(fs_path, uri) -> str:
    """The URI of `fs_path`, a path inside the filesystem that `uri` names."""
    scheme, rest = uri.split("://", 1)
    host = "" if scheme in (*_BUCKETS, "file") else rest.split("/", 1)[0]
    return f"{scheme}://{host}{fs_path}"


@functools.lru_cache(maxsize=64)
def _filesystem(root):
    # Creating an S3 or GCS client resolves credentials, maybe over the network: once a bucket.
    from pyarrow import fs

    return fs.FileSystem.from_uri(root)[0]


def list_images(uri) -> list[str]:
    """The images under a folder URI (recursive, sorted, extensions matched case-insensitively,
    as for a local folder), or [uri] when it names anything else: a missing file then fails as
    an input, like a missing local path."""
    return list(iter_images(uri))


def iter_images(uri):
    """list_images's URIs one by one, a folder listed at a time (files/walk.py), so that a
    bucket of millions of images streams."""
    from pyarrow import fs as pafs

    fs, path = split(uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        yield uri
        return

    def entries(folder):
        return [(info.path, info.type == pafs.FileType.Directory)
                for info in fs.get_file_info(pafs.FileSelector(folder))
                if info.type in (pafs.FileType.File, pafs.FileType.Directory)]

    for found in walk.sorted_files(path.rstrip("/"), entries):
        if found.lower().endswith(IMAGE_EXTENSIONS):
            yield join(found, uri)


def read_bytes(uri, error=ImageError) -> bytes:
    """The bytes of one file; `error` naming it when it cannot be read."""
    try:
        fs, path = split(uri)
        with fs.open_input_stream(path) as f:
            return f.read()
    except (OSError, ValueError) as exc:  # pyarrow: not found, permission, a malformed URI
        raise error(f"{uri}: cannot read the file ({' '.join(str(exc).split())})") from exc


def write_bytes(uri, data: bytes) -> None:
    try:
        fs, path = split(uri)
        with fs.open_output_stream(path) as f:
            f.write(data)
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot write {uri}: {exc}") from exc


def make_dir(uri) -> None:
    fs, path = split(uri)
    fs.create_dir(path, recursive=True)


def exists(uri) -> bool:
    from pyarrow import fs as pafs

    fs, path = split(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def delete(uri) -> None:
    """Remove a file or a folder; nothing to do when it is absent."""
    from pyarrow import fs as pafs

    fs, path = split(uri)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif kind != pafs.FileType.NotFound:
        fs.delete_file(path)
