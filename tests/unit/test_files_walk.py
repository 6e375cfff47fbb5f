"""files/walk.py: folders listed as they are read give exactly sorted()'s order, on names
chosen where a folder-first walk would not ("a-b" < "a/" < "a0", "a.jpg" beside "a/")."""

import os

import pytest

from fexport.runtime.files import images, walk

NAMES = ["a-b.jpg", "a/z.jpg", "a/b/c.png", "a0.jpg", "a.jpg", "A.JPG", "b/a.txt", "b/x.webp",
         "ab/c.jpg", "a b/c.jpg", "ä.jpg", "z/y/x/w.jpg", "empty/"]


def _tree(root):
    for name in NAMES:
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")


def _sorted_like_before(folder):
    """The listing as it was made before it streamed: os.walk, then one sort of every path."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files if f.lower().endswith(
            images.IMAGE_EXTENSIONS)]
    return sorted(found)


def test_streamed_folder_listing_is_sorted_order(tmp_path):
    _tree(tmp_path)
    streamed = list(images.iter_images(tmp_path))
    assert streamed == _sorted_like_before(tmp_path) == images.list_images(tmp_path)
    assert len(streamed) == 11 and streamed.index(str(tmp_path / "a-b.jpg")) < \
        streamed.index(str(tmp_path / "a" / "z.jpg")) < streamed.index(str(tmp_path / "a0.jpg"))


def test_links_to_folders_are_not_followed_as_os_walk_does(tmp_path):
    _tree(tmp_path)
    try:
        os.symlink(tmp_path / "a", tmp_path / "link")
    except OSError:
        pytest.skip("this filesystem has no symbolic links")
    assert list(images.iter_images(tmp_path)) == _sorted_like_before(tmp_path)


def test_the_walk_reads_one_folder_at_a_time():
    """A lister over a fake tree: the walk asks for a folder only when it reaches it."""
    tree = {"r": [("r/b", True), ("r/a.jpg", False), ("r/c.jpg", False)],
            "r/b": [("r/b/x.jpg", False)]}
    asked = []

    def lister(folder):
        asked.append(folder)
        return tree[folder]

    files = walk.sorted_files("r", lister)
    assert next(files) == "r/a.jpg" and asked == ["r"]
    assert list(files) == ["r/b/x.jpg", "r/c.jpg"] and asked == ["r", "r/b"]


def test_a_folder_that_cannot_be_read_holds_nothing(tmp_path):
    assert walk.local_entries(str(tmp_path / "missing")) == []
