"""The user's inputs as the items to extract, one per image: the one expansion every caller uses.

Inputs are image paths, folders (their images, recursive and sorted), bytes, PIL images and
numpy arrays (a batch array becomes one array per image, read in the model's layout); with
`uris=True` (`--engine ray`), also URIs of files or folders (s3://, gs://, file://...), listed
through pyarrow.fs. The result is an `Items` list, which every later step (an engine,
FeatureExtractor.stream) takes as it is: the CLI expands once, to count the images, and nothing
lists a folder twice.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from . import images, remote

# One input standing alone, not a collection of inputs (bytes and arrays are iterable).
_SINGLE = (str, os.PathLike, bytes, np.ndarray, Image.Image)


class Items(list):
    """Inputs already expanded, one item per image: expanding them again gives them back."""

    def __getitem__(self, index):
        found = super().__getitem__(index)
        return Items(found) if isinstance(index, slice) else found  # a slice is expanded too


def expand(inputs, load_options=None, *, uris=False) -> Items:
    """Every item, at once (an engine needs all the keys before it starts); UsageError when
    the inputs name no image. `load_options` read batch arrays in the model's layout; without
    them, 4-D arrays are split along their first axis (a grayscale (N, H, W) batch needs them)."""
    if isinstance(inputs, Items):
        return inputs
    given = list(_one_or_many(inputs))  # a generator is read once, and named if it is empty
    items = Items(iter_items(given, load_options, uris=uris))
    if not items:
        raise images.nothing_found(given)
    return items


def iter_items(inputs, load_options=None, *, uris=False):
    """The items one by one, so that an endless generator of inputs is read as it is used."""
    if isinstance(inputs, Items):
        yield from inputs
        return
    for item in _one_or_many(inputs):
        if uris and remote.is_uri(item):
            yield from remote.iter_images(item)
        elif isinstance(item, (str, Path)) and os.path.isdir(item):
            yield from images.iter_images(item)  # as the folders are read
        else:
            # One item at a time: a list inside the inputs is an input (refused when loaded).
            yield from images.split_batch_arrays(images.expand_inputs([item]), load_options)


def _one_or_many(inputs):
    return [inputs] if isinstance(inputs, _SINGLE) or not hasattr(inputs, "__iter__") \
        else inputs
