"""classify_error maps each SDK / awscrt / codec failure onto retryable or fatal, with a kind."""

from __future__ import annotations

import pytest
from aws_sdk_bedrock_runtime.models import (
    AccessDeniedException,
    InternalServerException,
    ModelStreamErrorException,
    ModelTimeoutException,
    ResourceNotFoundException,
    ServiceUnavailableException,
    ThrottlingException,
    ValidationException,
)
from awscrt.exceptions import AwsCrtError
from smithy_aws_event_stream.exceptions import InvalidPayloadLength, UnmodeledEventError
from smithy_core.exceptions import CallError, SmithyIdentityError
from smithy_http.exceptions import SmithyHTTPError

from actors.errors import SonicError, SonicFatalError, SonicRetryableError
from actors.sonic import classify_error


def _crt(name: str) -> AwsCrtError:
    return AwsCrtError(code=0, name=name, message=f"{name} happened")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (
            ModelTimeoutException(message="Model has timed out in processing the request"),
            "modelTimeoutException",
        ),
        (ThrottlingException(message="slow down"), "throttlingException"),
        (InternalServerException(message="oops"), "internalServerException"),
        (ServiceUnavailableException(message="later"), "serviceUnavailableException"),
        (ModelStreamErrorException(message="stream"), "modelStreamErrorException"),
        (
            ValidationException(message="System instability detected. Please retry your request."),
            "validationException",
        ),
        (ValidationException(message="Invalid event bytes"), "validationException"),
        (
            ValidationException(
                message="InternalErrorCode=531::RST_STREAM closed stream. HTTP/2 error code: NO_ERROR"
            ),
            "validationException",
        ),
        (OSError("Failed to read from stream."), "connectionReset"),
        (ConnectionResetError("reset by peer"), "connectionReset"),
        (_crt("AWS_ERROR_HTTP_CONNECTION_CLOSED"), "connectionReset"),
        (_crt("AWS_IO_SOCKET_TIMEOUT"), "socketTimeout"),
        (InvalidPayloadLength(99999999), "invalidEventBytes"),
        (UnmodeledEventError("internalFailure", "x"), "internalFailure"),
        (CallError(message="Unknown error - status: 503", fault="server"), "serverError"),
        (
            CallError(
                message="ExpiredTokenException: The security token included in the request is expired"
            ),
            "expiredToken",
        ),
        (SmithyHTTPError("connection dropped"), "connectionReset"),
        (TimeoutError(), "timeout"),
    ],
)
def test_retryable(exc: BaseException, kind: str) -> None:
    err = classify_error(exc)
    assert isinstance(err, SonicRetryableError)
    assert err.retryable
    assert err.kind == kind


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (
            ValidationException(
                message="Chat history should be sent completely before streaming audio."
            ),
            "validationException",
        ),
        (
            ValidationException(message="Invalid input request: unknown field"),
            "validationException",
        ),
        (
            AccessDeniedException(message="You don't have access to the model"),
            "accessDeniedException",
        ),
        (ResourceNotFoundException(message="Model not found"), "resourceNotFoundException"),
        (
            CallError(
                message="UnrecognizedClientException: The security token included in the request is invalid"
            ),
            "badCredentials",
        ),
        (CallError(message="Unknown error - status: 400", fault="client"), "clientError"),
        (SmithyIdentityError("no credentials"), "badCredentials"),
        (_crt("AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE"), "tlsNegotiationFailure"),
        (SmithyHTTPError("HTTP/2 could not be negotiated: Http1_1"), "transportUnsupported"),
        (UnmodeledEventError("validationException", "bad field"), "validationException"),
        (RuntimeError("a bug"), "unexpected"),
    ],
)
def test_fatal(exc: BaseException, kind: str) -> None:
    err = classify_error(exc)
    assert isinstance(err, SonicFatalError)
    assert not err.retryable
    assert err.kind == kind


def test_crt_error_found_through_the_cause_chain() -> None:
    try:
        try:
            raise _crt("AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE")
        except AwsCrtError as inner:
            raise OSError("Failed to read from stream.") from inner
    except OSError as outer:
        err = classify_error(outer)
    assert isinstance(err, SonicFatalError)
    assert err.kind == "tlsNegotiationFailure"


def test_sonic_errors_pass_through_unchanged() -> None:
    original: SonicError = SonicRetryableError("stall", "quiet")
    assert classify_error(original) is original
