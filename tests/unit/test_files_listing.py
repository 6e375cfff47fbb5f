"""files/listing.py: the Ray engine's inputs spooled to Parquet as they are listed: read back
in order (names that are not UTF-8 included), hashed, and written a chunk at a time."""

import hashlib
import os

import pytest

pytest.importorskip("pyarrow")

from fexport.runtime.files import listing  # noqa: E402


def test_keys_come_back_in_order_with_their_bytes(tmp_path):
    keys = ["/a.jpg", os.fsdecode(b"/caf\xe9.png"), "s3://bucket/b.jpg"]
    spooled = listing.spool(iter(keys), tmp_path / "inputs.parquet")
    assert list(spooled.keys()) == keys and spooled.count == 3
    assert spooled.sha256 == hashlib.sha256(b"".join(os.fsencode(k) + b"\0"
                                                     for k in keys)).hexdigest()
    import pyarrow.parquet as pq

    table = pq.read_table(spooled.path)
    assert table["index"].to_pylist() == [0, 1, 2] and table["path"][1].as_py() == "/caf\\xe9.png"


def test_the_listing_is_written_a_chunk_at_a_time(tmp_path, monkeypatch):
    """Each chunk goes to the file before the next is read: no more than one is held."""
    monkeypatch.setattr(listing, "CHUNK", 4)
    pulled = []

    def keys():
        for i in range(10):
            pulled.append(i)
            yield f"/{i}.jpg"

    table, written = listing._table, []  # (first index of a chunk, keys read when written)
    monkeypatch.setattr(listing, "_table", lambda chunk, first: (
        written.append((first, len(pulled))), table(chunk, first))[1])
    path = tmp_path / "inputs.parquet"
    spooled = listing.spool(keys(), path)
    import pyarrow.parquet as pq

    assert written == [(0, 4), (4, 8), (8, 10)]
    assert pq.ParquetFile(path).num_row_groups == 3 and spooled.count == 10
    assert list(spooled.keys()) == [f"/{i}.jpg" for i in range(10)]


def test_a_failed_listing_leaves_no_file(tmp_path):
    def keys():
        yield "/a.jpg"
        raise RuntimeError("the listing broke")

    with pytest.raises(RuntimeError):
        listing.spool(keys(), tmp_path / "inputs.parquet")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_listing_opens(tmp_path):
    spooled = listing.spool([], tmp_path / "inputs.parquet")
    assert spooled.count == 0 and list(spooled.keys()) == []
