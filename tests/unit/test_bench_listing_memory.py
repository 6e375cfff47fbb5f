"""bench/listing_memory.py on a small count: each way measured in its own interpreter, and the
table says which is which."""

import pytest

pytest.importorskip("pyarrow")

from fexport.bench import listing_memory  # noqa: E402


def test_both_ways_are_measured_above_the_same_baseline():
    data = listing_memory.run([20_000])
    row = data["rows"][0]
    assert row["count"] == 20_000 and row["list"] > row["baseline"] > 0
    assert row["spooled"] > 0 and "| 20,000 | " in listing_memory.markdown(data)
