"""The few typed exceptions fexport raises.

Every message says what was received, what was expected and how to fix it. Library code raises
these; only the CLI turns them into one line and an exit code.
"""

from __future__ import annotations

from fexport.reports import QualityReport, VerificationReport


def whole_sentences(text: str, limit: int = 400) -> str:
    """A library's message on one line, shortened only after a whole sentence, never in the
    middle of one (its last words are often the fix). Without a sentence end before `limit`,
    a pathological message is kept up to ten times that."""
    line = " ".join(str(text).split())
    if len(line) <= limit:
        return line
    end = line.rfind(". ", 0, limit)
    if end >= 0:
        return line[:end + 1] + " [...]"
    return line if len(line) <= 10 * limit else line[:10 * limit] + " [...]"


class FexportError(Exception):
    """Base class: an error whose message is meant for the user as it is."""

    exit_code = 1


class UsageError(FexportError):
    """The arguments do not make sense together (exit status 2, like a usage error)."""

    exit_code = 2


class ModelNotFoundError(FexportError):
    """An unknown registry name or a path that does not exist."""


class ModelLoadError(FexportError):
    """A model file exists but no loader could read it."""


class WeightsUnavailableError(FexportError):
    """Pretrained weights could not be downloaded or read."""


class LayerError(FexportError):
    """A layer name or index that the model does not have, or a head that does not fit it."""


class ConversionError(FexportError):
    """tf2onnx could not convert the cut model."""


class VerificationError(FexportError):
    """The exported model's outputs differ from Keras beyond tolerance, or in shape (`report`
    is a VerificationReport), or a reduced-precision variant's features fall below the gate
    (a QualityReport)."""

    def __init__(self, message, report: VerificationReport | QualityReport | None = None):
        super().__init__(message)
        self.report = report


class ContractError(FexportError):
    """An ONNX file lacks fexport metadata, or carries metadata this version cannot read."""


class ImageError(FexportError):
    """One input image could not be read or converted."""


class DeviceError(FexportError):
    """The requested execution device (CUDA) is not available."""


class OutputError(FexportError):
    """An output path that cannot be written, or would be overwritten without --overwrite."""


class EngineError(FexportError):
    """The distributed engine (Ray) is not installed, cannot be reached, or its job failed."""


class RequestError(FexportError):
    """A request to the feature service that cannot be answered as sent (HTTP 400): malformed
    JSON, a binary header length that lies, a wrong datatype or shape."""


class PayloadTooLargeError(RequestError):
    """A request body, or a request's image count, over the server's limit (HTTP 413)."""


class QueueFullError(FexportError):
    """The server's queue holds its limit of images; retry after `retry_after` s (HTTP 429)."""

    def __init__(self, message, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineError(FexportError):
    """A request waited past its deadline for a batch slot (HTTP 504)."""
