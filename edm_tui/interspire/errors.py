"""Exceptions raised by the IEM XML API adapter.

Catch `IemTransientError` for anything worth retrying later, `IemAuthError` to stop a run,
and `IemRejected` for a permanent refusal of one subscriber. A negative answer (FAILED with
an empty or "0" errormessage on methods that use it) is not an exception: the client maps it
to None, False or an empty list.

Every exception carries `.message` (IEM's own errormessage where there is one), `.method`
(the IEM request method, such as "AddSubscriberToList") and `.attempts` (HTTP attempts made,
retries included; 0 when nothing was sent). IEM's own errormessage is passed on untranslated.
"""

from __future__ import annotations

import ssl

from edm_tui.i18n import _

__all__ = [
    "IemAuthError",
    "IemBadResponse",
    "IemConnectionError",
    "IemError",
    "IemHttpError",
    "IemRejected",
    "IemRequestError",
    "IemServerError",
    "IemTimeout",
    "IemTransientError",
    "IemCertificateError",
    "is_certificate_failure",
    "classify_failure",
]


class IemError(Exception):
    """An IEM XML API call failed."""

    def __init__(self, message: str, *, method: str | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.attempts = attempts

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, method={self.method!r}, "
            f"attempts={self.attempts})"
        )


# Authentication


class IemAuthError(IemError):
    """IEM rejected the XML username or token, or its XML API policy denied access."""


class IemCertificateError(IemError):
    """The IEM server's TLS certificate could not be verified; sending the call again cannot help."""


def is_certificate_failure(error: BaseException) -> bool:
    """Check whether `error` or an exception in its cause chain is a failed TLS certificate check."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


# Transport and response problems: worth retrying


class IemTransientError(IemError):
    """The response was lost or unusable, so the call may succeed if sent again."""


class IemTimeout(IemTransientError):
    """Connecting to IEM or reading its response timed out."""


class IemConnectionError(IemTransientError):
    """The connection to IEM failed or was closed before a response arrived."""


class IemHttpError(IemTransientError):
    """IEM, or a proxy in front of it, returned an HTTP status other than 2xx, or a redirect."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message, method=method, attempts=attempts)
        self.status_code = status_code


class IemBadResponse(IemTransientError):
    """The response body was empty, truncated, an HTML page or otherwise not IEM's XML."""


# FAILED responses


class IemRequestError(IemError):
    """IEM reported that our request was malformed or named an unknown method."""


class IemServerError(IemError):
    """IEM reported a fault that affects every request (system deactivated, misconfigured)."""


class IemRejected(IemError):
    """IEM permanently refused the request for this subscriber or field."""


# IEM 8.x returns policy messages whose exact case and punctuation are not known, so they
# are matched as lower-case substrings.
_AUTH_MESSAGES = (
    "unable to check user details",
    "xml api access is not enabled",
    "xml api is restricted to admin users only",
)
_REQUEST_MESSAGES = (
    "the xml format you have sent is invalid",
    "the xml you provided is not valid",
    "no data has been given to the xml-api",
    "invalid request type",
)
_SERVER_MESSAGES = (
    "the xml-api requires the simplexml extension",
    "error: please contact your system admin",
)


def classify_failure(errormessage: str, *, method: str | None = None) -> IemError:
    """Return the exception for a FAILED response with this errormessage.

    The caller handles negative answers (an empty or "0" message) and the "already exists"
    result of AddSubscriberToList before calling this. Any message that is not an
    authentication, request-format or server-wide fault becomes `IemRejected`, because IEM
    uses FAILED for refusals of one item (invalid field value, unknown field id,
    not-subscribed address, ...).
    """
    message = errormessage.strip()
    lowered = message.lower()

    if any(text in lowered for text in _AUTH_MESSAGES):
        return IemAuthError(message, method=method)
    if any(lowered.startswith(text) for text in _REQUEST_MESSAGES):
        return IemRequestError(message, method=method)
    if any(lowered.startswith(text) for text in _SERVER_MESSAGES):
        return IemServerError(message, method=method)
    if not message:
        return IemRejected(_("IEM returned FAILED with an empty errormessage"), method=method)
    return IemRejected(message, method=method)
