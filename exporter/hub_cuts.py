"""Where a KerasHub model is cut: the named points of its flat image side (exporter/hub.py),
and the layer each head takes by default."""

from __future__ import annotations

from fexport.errors import LayerError, UsageError
from fexport.export_options import RECOMMENDED

from . import cut

BLOCK_PREFIX = "block:"


def resolve_point(side, selector) -> str | None:
    """The layer name a cut point names (`block:-1` counts from the end), or None."""
    if not isinstance(selector, str):
        return None
    if selector.startswith(BLOCK_PREFIX):
        return side.points.get(_block_key(side, selector[len(BLOCK_PREFIX):]))
    return side.points.get(selector)


def _block_key(side, text):
    count = sum(1 for key in side.points if key.startswith(BLOCK_PREFIX))
    try:
        index = int(text)
    except ValueError:
        index = 0
    if not count or not (-count <= index <= count) or index == 0:
        raise UsageError(f"--layer block:{text}: {side.family} has "
                         + (f"{count} blocks, so use block:1..block:{count} (block:-1 is the "
                            "last)" if count else "no transformer blocks; cut it by layer name"))
    return f"{BLOCK_PREFIX}{index if index > 0 else count + 1 + index}"


def resolve_layer(model, side, selector, head):
    """The layer to cut at: a named point (block:K, a pyramid key), a layer name or index, or
    the recommended layer for the head (the pooled embedding for pooled, else the final
    tokens, or a CNN's output)."""
    if head == "pooled" and not side.pooled_layer:
        raise LayerError(f"{side.family} has no pooled image embedding of its own; use "
                         f"--head {' or '.join(_other_heads(side))}")
    if selector != RECOMMENDED:
        layer = resolve_point(side, selector)
        return model.get_layer(layer) if layer else cut.resolve(model, selector)
    if head == "pooled":
        return model.get_layer(side.pooled_layer)
    return model.get_layer(side.tokens_layer) if side.tokens_layer else model.layers[-1]


def _other_heads(side) -> list[str]:
    if side.prefix_tokens is None:
        return ["avg", "max", "flatten"]
    return ["cls", "mean", "cls+mean"] if side.prefix_tokens else ["mean", "flatten"]
