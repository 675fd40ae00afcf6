"""Map whatever the SDK, awscrt or the event-stream codec raised onto the project's Sonic taxonomy.

Rules: a pure function of the exception (type, name and message), no I/O. The result is always a
:class:`~actors.errors.SonicError` whose ``kind`` names the cause in the service's own spelling
(``"modelTimeoutException"``) or a local one (``"connectionReset"``), and whose class says what the
call may do:

* :class:`~actors.errors.SonicRetryableError`: reopen the session with history and keep the call.
  Model timeout (the 8-minute cap), throttling, internal server / service unavailable / model stream
  errors, model not ready, quota exceeded (another stream may end), validation errors the service
  uses for its own transient faults ("System instability detected", "Invalid event bytes",
  ``RST_STREAM ... NO_ERROR``, "Tool Response parsing error"), expired temporary credentials (a new
  stream resolves fresh ones), connection resets, undecodable event bytes, socket timeouts, any
  other awscrt I/O error, our own open/stall timeouts.
* :class:`~actors.errors.SonicFatalError`: retrying cannot help. Validation of our own request,
  access denied, unknown model or resource, bad credentials or signature, no credentials at all,
  an endpoint that will not speak HTTP/2, and **TLS negotiation / certificate failures**: against
  a fixed endpoint those mean a wrong CA bundle, a wrong host or an intercepting proxy, which a
  retry loop would only hide (decision recorded in docs/sonic.md).

Unknown exception types are fatal: a bug must reach the supervisor, not spin the reopen loop.
"""

from __future__ import annotations

from typing import Final

from aws_sdk_bedrock_runtime.models import (  # type: ignore[import-untyped]  # no py.typed in 0.12
    AccessDeniedException,
    InternalServerException,
    ModelErrorException,
    ModelNotReadyException,
    ModelStreamErrorException,
    ModelTimeoutException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    ServiceUnavailableException,
    ThrottlingException,
    ValidationException,
)
from awscrt.exceptions import AwsCrtError
from smithy_aws_event_stream.exceptions import EventError, UnmodeledEventError
from smithy_core.exceptions import CallError, SmithyIdentityError
from smithy_http.exceptions import SmithyHTTPError

from actors.errors import SonicError, SonicFatalError, SonicRetryableError

__all__ = ["classify_error"]

_RETRYABLE_SERVICE: Final[dict[type[Exception], str]] = {
    ModelTimeoutException: "modelTimeoutException",
    ThrottlingException: "throttlingException",
    InternalServerException: "internalServerException",
    ServiceUnavailableException: "serviceUnavailableException",
    ModelStreamErrorException: "modelStreamErrorException",
    ModelNotReadyException: "modelNotReadyException",
    ServiceQuotaExceededException: "serviceQuotaExceededException",
}
_FATAL_SERVICE: Final[dict[type[Exception], str]] = {
    AccessDeniedException: "accessDeniedException",
    ResourceNotFoundException: "resourceNotFoundException",
    ModelErrorException: "modelErrorException",
}
# ValidationException messages the service uses for its own transient faults (reference §6, §11).
_TRANSIENT_VALIDATION: Final = (
    "system instability detected",
    "invalid event bytes",
    "rst_stream",
    "http/2 error code: no_error",
    "tool response parsing error",
)
_RETRYABLE_UNMODELED: Final = frozenset(
    {
        "modeltimeoutexception",
        "throttlingexception",
        "internalserverexception",
        "serviceunavailableexception",
        "modelstreamerrorexception",
        "internalfailure",
        "serviceunavailable",
    }
)
_EXPIRED_CREDENTIALS: Final = ("expiredtoken", "security token included in the request is expired")
_BAD_CREDENTIALS: Final = (
    "unrecognizedclient",
    "invalidsignature",
    "signaturedoesnotmatch",
    "security token included in the request is invalid",
    "incompletesignature",
)
# awscrt error names that mean "this endpoint cannot be trusted or spoken to", not "try again".
_FATAL_CRT_PREFIXES: Final = ("AWS_IO_TLS_", "AWS_ERROR_HTTP_UNSUPPORTED_PROTOCOL")
_FATAL_CRT_NAMES: Final = frozenset(
    {"AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE", "AWS_IO_FILE_VALIDATION_FAILURE"}
)


def _message_of(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    return str(exc) or type(exc).__name__


def _crt_error_in_chain(exc: BaseException) -> AwsCrtError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, AwsCrtError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _classify_crt(exc: AwsCrtError) -> SonicError:
    name = str(exc.name)
    message = f"{name}: {exc.message}"
    if name in _FATAL_CRT_NAMES or name.startswith(_FATAL_CRT_PREFIXES):
        return SonicFatalError(
            "tlsNegotiationFailure" if "TLS" in name else "transportUnsupported", message
        )
    if "TIMEOUT" in name:
        return SonicRetryableError("socketTimeout", message)
    return SonicRetryableError("connectionReset", message)


def _classify_validation(message: str) -> SonicError:
    lowered = message.lower()
    if any(marker in lowered for marker in _TRANSIENT_VALIDATION):
        return SonicRetryableError("validationException", message)
    return SonicFatalError("validationException", message)


def _classify_call_error(exc: CallError, message: str) -> SonicError:
    lowered = message.lower()
    if any(marker in lowered for marker in _EXPIRED_CREDENTIALS):
        return SonicRetryableError("expiredToken", message)
    if any(marker in lowered for marker in _BAD_CREDENTIALS):
        return SonicFatalError("badCredentials", message)
    if exc.is_throttling_error:
        return SonicRetryableError("throttlingException", message)
    if exc.is_timeout_error:
        return SonicRetryableError("timeout", message)
    if exc.fault == "server":
        return SonicRetryableError("serverError", message)
    return SonicFatalError("clientError", message)


def classify_error(exc: BaseException) -> SonicError:
    """Return the Sonic error that ``exc`` means for the call. Pure; never raises.

    Args:
        exc: anything raised by ``invoke_model_with_bidirectional_stream``, ``await_output()``,
            ``receive()`` or our own timeouts; a :class:`SonicError` is returned unchanged.

    Returns:
        A :class:`SonicRetryableError` or :class:`SonicFatalError` with a ``kind`` naming the cause;
        the original exception is not attached (the caller chains it with ``raise ... from exc``).
    """
    if isinstance(exc, SonicError):
        return exc
    message = _message_of(exc)
    for cls, kind in _RETRYABLE_SERVICE.items():
        if isinstance(exc, cls):
            return SonicRetryableError(kind, message)
    for cls, kind in _FATAL_SERVICE.items():
        if isinstance(exc, cls):
            return SonicFatalError(kind, message)
    if isinstance(exc, ValidationException):
        return _classify_validation(message)
    if isinstance(exc, UnmodeledEventError):
        code = exc.code.lower()
        if code == "validationexception":
            return _classify_validation(exc.message)
        if code in _RETRYABLE_UNMODELED:
            return SonicRetryableError(exc.code, exc.message)
        return SonicFatalError(exc.code, exc.message)
    if isinstance(exc, EventError):
        # Undecodable frames mid-response: the reported "invalid event bytes" case, recoverable.
        return SonicRetryableError("invalidEventBytes", message)
    if isinstance(exc, CallError):
        return _classify_call_error(exc, message)
    if isinstance(exc, SmithyIdentityError):
        return SonicFatalError("badCredentials", message)
    crt = _crt_error_in_chain(exc)
    if crt is not None:
        return _classify_crt(crt)
    if isinstance(exc, SmithyHTTPError):
        lowered = message.lower()
        if "http/2 could not be negotiated" in lowered:
            return SonicFatalError("transportUnsupported", message)
        return SonicRetryableError("connectionReset", message)
    if isinstance(exc, TimeoutError):
        return SonicRetryableError("timeout", message)
    if isinstance(exc, (OSError, ConnectionError, EOFError)):
        # receive() wraps transport failures as OSError("Failed to read from stream.").
        return SonicRetryableError("connectionReset", message)
    # botocore is untyped and optional at this layer: match its credential errors by name.
    if type(exc).__name__ in {"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"}:
        return SonicFatalError("badCredentials", message)
    if "timeout" in type(exc).__name__.lower():
        # smithy_http's private _CRTTimeoutError (socket timeout/closed) and similar.
        return SonicRetryableError("socketTimeout", message)
    return SonicFatalError("unexpected", f"{type(exc).__name__}: {message}")
