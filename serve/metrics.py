"""The service's Prometheus metrics (prometheus_client), in seconds and `_total` counters.

Each app has its own registry, so two apps in one process (tests, a mounted service) do not
share or clash over series. Models are a label everywhere; a request for an unknown model is
counted under model="" so a scan of names cannot grow the series without bound.
"""

from __future__ import annotations

from fexport.extras import require

# Latency buckets from 1 ms to 60 s: a tiny model's batch takes about 1 ms, a request that
# queues behind ResNet50 batches on 2 cores several seconds, and the deadline is 30 s.
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
           60.0)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    """Counters and histograms of one app, and its /metrics page."""

    def __init__(self):
        client = require("prometheus_client", "fexport serve's metrics")
        self._client = client
        self.registry = client.CollectorRegistry()

        def metric(kind, name, text, labels, **extra):
            return kind(name, text, labels, registry=self.registry, **extra)

        self.requests = metric(client.Counter, "fexport_requests", "Requests answered, by "
                               "model, endpoint and HTTP status", ("model", "endpoint", "status"))
        self.images = metric(client.Counter, "fexport_images", "Images whose features were "
                             "computed", ("model",))
        self.batches = metric(client.Counter, "fexport_batches", "Batches run", ("model",))
        self.batch_size = metric(client.Histogram, "fexport_batch_size", "Images per batch",
                                 ("model",), buckets=BATCH_SIZES)
        self.queue_images = metric(client.Gauge, "fexport_queue_images", "Images admitted and "
                                   "not yet computed (decoding included)", ("model",))
        self.seconds = {stage: metric(client.Histogram, f"fexport_{stage}_seconds", text,
                                      ("model",), buckets=SECONDS)
                        for stage, text in STAGES.items()}

    def for_model(self, model: str) -> ModelObserver:
        return ModelObserver(self, model)

    def request(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(model, endpoint, str(status)).inc()
        self.seconds["request"].labels(model).observe(seconds)

    def page(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return self._client.generate_latest(self.registry), self._client.CONTENT_TYPE_LATEST


STAGES = {"queue": "Time an image waited in the queue before its batch started",
          "decode": "Time to decode one request's images",
          "compute": "Time the engine took for one batch",
          "request": "Time from a request's body being read to its answer"}


class ModelObserver:
    """What the batcher and the handlers of one model report."""

    def __init__(self, metrics: ServeMetrics, model: str):
        self._metrics, self._model = metrics, model

    def queue_depth(self, images: int) -> None:
        self._metrics.queue_images.labels(self._model).set(images)

    def queued(self, seconds: float) -> None:
        self._metrics.seconds["queue"].labels(self._model).observe(seconds)

    def decoded(self, seconds: float) -> None:
        self._metrics.seconds["decode"].labels(self._model).observe(seconds)

    def batch(self, size: int, seconds: float) -> None:
        self._metrics.batches.labels(self._model).inc()
        self._metrics.batch_size.labels(self._model).observe(size)
        self._metrics.images.labels(self._model).inc(size)
        self._metrics.seconds["compute"].labels(self._model).observe(seconds)
