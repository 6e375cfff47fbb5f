"""The service's settings, with the library's defaults (the CLI reads them from here)."""

from __future__ import annotations

from dataclasses import dataclass

from fexport.errors import UsageError


@dataclass(frozen=True)
class ServeConfig:
    """How requests are batched and bounded. Sizes count images; times are in seconds."""

    max_batch_size: int = 32
    # How long the oldest waiting image may wait for others to fill its batch: 5 ms is a
    # fraction of one batch's compute on the models we serve (ResNet50 at batch 32 takes
    # about 0.7 s on 2 CPU cores, the tiny CIFAR ResNet 10 ms), so waiting costs little.
    max_delay: float = 0.005
    max_queue: int = 256  # images accepted and not yet computed, decoding included
    max_body_bytes: int = 32 * 2**20
    # Pixels of one image, read from its header before it is decoded: 50 M holds a 48 MP phone
    # photo (8000x6000) and refuses decompression bombs before they cost memory.
    max_image_pixels: int = 50_000_000
    request_timeout: float = 30.0  # a request still waiting for its batch then gets 504
    decode_workers: int = 4  # threads decoding images, shared by every model

    def __post_init__(self):
        for name in ("max_batch_size", "max_queue", "max_body_bytes", "max_image_pixels",
                     "decode_workers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UsageError(f"{name} {getattr(self, name)!r}: expected a whole number >= 1")
        if self.max_delay < 0 or self.request_timeout <= 0:
            raise UsageError(f"max_delay {self.max_delay!r} and request_timeout "
                             f"{self.request_timeout!r}: expected max_delay >= 0 and "
                             "request_timeout > 0 (seconds)")
