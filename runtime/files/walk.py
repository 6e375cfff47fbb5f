"""A folder's files listed as they are found, in the order `sorted` gives their full paths,
with one folder's listing per level in memory rather than the whole tree: a listing of millions
of images streams (the Ray engine spools it to disk, files/listing.py).

The order is sorted()'s because a folder is placed where its name followed by the separator
sorts ("a-b.jpg" < "a/" < "a0.jpg"), which is where every path inside it sorts: no other path
starts with "a/". tests/unit/test_walk.py checks this against sorted() on names chosen to tell
the two apart.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator

# (path, is_folder) for each entry of one folder, in any order.
Lister = Callable[[str], Iterable[tuple[str, bool]]]


def sorted_files(top: str, list_folder: Lister, sep: str = "/") -> Iterator[str]:
    """Every file under `top`, recursively, in sorted() order of the paths."""
    pending = [iter(_in_order(list_folder(top), sep))]
    while pending:
        entry = next(pending[-1], None)
        if entry is None:
            pending.pop()
        elif entry[1]:
            pending.append(iter(_in_order(list_folder(entry[0]), sep)))
        else:
            yield entry[0]


def _in_order(entries, sep) -> list:
    return sorted(entries, key=lambda entry: entry[0] + sep if entry[1] else entry[0])


def local_entries(folder: str) -> list[tuple[str, bool]]:
    """A local folder's entries, as os.walk sees them: a link to a folder is neither listed
    nor followed, and a folder that cannot be read holds nothing."""
    try:
        with os.scandir(folder) as entries:
            return [(os.path.join(folder, entry.name), entry.is_dir()) for entry in entries
                    if not (entry.is_dir() and entry.is_symlink())]
    except OSError:
        return []
