"""AWS credentials for Sonic streams: resolved off the event loop, cached, pinned per stream.

Theory of operation:

* A :class:`CredentialsProvider` loads credentials with blocking I/O (files, SSO cache, container
  or instance metadata). :class:`BotocoreCredentials` is the standard AWS chain through botocore
  (environment, shared config and profiles, SSO, container and instance roles; refreshable
  credentials refresh themselves inside botocore); :class:`StaticCredentials` is fixed keys (the
  emulator uses ``AKIDEXAMPLE``/``dummy`` and verifies signatures against them).
* :class:`CredentialCache` runs the provider in a worker thread (``anyio.to_thread``), caches the
  result, and reloads when fewer than ``2 x refresh_margin_s`` remain, so a stream opened for a
  credential handover (at expiry - margin) always gets credentials that outlive it.
* Each stream is signed with ONE identity for its whole life: :class:`PinnedIdentityResolver` (the
  SDK's ``IdentityResolver`` interface) is installed per stream through an operation plugin.
  Refreshing keys under a running stream breaks its signature chain (the ValidationException
  livekit/agents PR #4250 hit); instead the conversation hands over before ``expiration``.
  Pinning also makes per-event signing cheap: the SDK asks for the identity on every event.

The expiry is a UTC ``datetime`` (wall clock, read here at the edge); :func:`seconds_left` converts
it to a duration the actors add to ``anyio.current_time()``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, final

import anyio
import anyio.to_thread
from smithy_aws_core.identity import AWSCredentialsIdentity, AWSIdentityProperties
from smithy_core.aio.interfaces.identity import IdentityResolver

from actors.errors import SonicFatalError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "BotocoreCredentials",
    "CredentialCache",
    "CredentialsProvider",
    "PinnedIdentityResolver",
    "StaticCredentials",
    "seconds_left",
]


class CredentialsProvider(Protocol):
    """Loads AWS credentials. ``load`` BLOCKS (file and network I/O): call it in a worker thread."""

    def load(self) -> AWSCredentialsIdentity:
        """Return current credentials (with ``expiration`` when temporary).

        Raises:
            SonicFatalError: no credentials could be found (kind ``"badCredentials"``).
        """
        ...


@final
class StaticCredentials:
    """Fixed keys: tests, the emulator, or keys injected by a secrets manager."""

    def __init__(
        self,
        access_key_id: str = "AKIDEXAMPLE",
        secret_access_key: str = "dummy",
        session_token: str | None = None,
        expiration: datetime | None = None,
    ) -> None:
        self._identity = AWSCredentialsIdentity(
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            expiration=expiration,
        )

    def load(self) -> AWSCredentialsIdentity:
        """Return the fixed identity (does not block)."""
        return self._identity


@final
class BotocoreCredentials:
    """The standard AWS credential chain, resolved by botocore.

    Args:
        profile: a shared-config profile name; None follows ``AWS_PROFILE`` / the default chain.
        session_factory: builds the botocore session (tests pass a stub-free factory); defaults
            to ``botocore.session.Session``.
    """

    def __init__(
        self, profile: str | None = None, *, session_factory: Callable[[], Any] | None = None
    ) -> None:
        self._profile = profile
        self._session_factory = session_factory
        self._credentials: Any = None  # botocore Credentials / RefreshableCredentials

    def load(self) -> AWSCredentialsIdentity:
        """Resolve (first call) or refresh (botocore decides) and freeze the credentials. BLOCKS."""
        if self._credentials is None:
            session = self._new_session()
            credentials = session.get_credentials()
            if credentials is None:
                raise SonicFatalError(
                    "badCredentials", "no AWS credentials found in the standard chain"
                )
            self._credentials = credentials
        frozen = self._credentials.get_frozen_credentials()  # refreshes refreshable credentials
        # botocore exposes no public expiry accessor; RefreshableCredentials keeps it here.
        expiry = getattr(self._credentials, "_expiry_time", None)
        expiration = expiry.astimezone(UTC) if isinstance(expiry, datetime) else None
        return AWSCredentialsIdentity(
            access_key_id=frozen.access_key,
            secret_access_key=frozen.secret_key,
            session_token=frozen.token,
            expiration=expiration,
        )

    def _new_session(self) -> Any:
        if self._session_factory is not None:
            return self._session_factory()
        import botocore.session

        return botocore.session.Session(profile=self._profile)


def seconds_left(identity: AWSCredentialsIdentity) -> float | None:
    """Seconds until ``identity`` expires (negative if expired), or None if it never does."""
    if identity.expiration is None:
        return None
    # AWS states expiry as a wall-clock instant: the one place the wall clock is read. Callers turn
    # the remaining seconds into an anyio deadline at once.
    return (identity.expiration - datetime.now(tz=UTC)).total_seconds()


@final
class CredentialCache:
    """Caches a provider's credentials; reloads them in a worker thread when close to expiry.

    Args:
        provider: where credentials come from.
        refresh_margin_s: the conversation's handover margin; the cache reloads once fewer than
            twice this remain, so a freshly opened stream always outlives its own handover point.
    """

    def __init__(self, provider: CredentialsProvider, *, refresh_margin_s: float) -> None:
        self._provider = provider
        self._margin = refresh_margin_s
        self._identity: AWSCredentialsIdentity | None = None
        self._lock = anyio.Lock()
        self._loads = 0

    async def get(self) -> AWSCredentialsIdentity:
        """Return cached credentials, loading them in a worker thread when missing or expiring.

        Blocks (asynchronously) only on a load; concurrent callers share one load.
        """
        if self._fresh(self._identity):
            assert self._identity is not None
            return self._identity
        async with self._lock:
            if not self._fresh(self._identity):
                self._identity = await anyio.to_thread.run_sync(self._provider.load)
                self._loads += 1
            assert self._identity is not None
            return self._identity

    def statistics(self) -> dict[str, int]:
        """How many times the provider was asked."""
        return {"loads": self._loads}

    def _fresh(self, identity: AWSCredentialsIdentity | None) -> bool:
        if identity is None:
            return False
        left = seconds_left(identity)
        return left is None or left > 2 * self._margin


@final
class PinnedIdentityResolver(IdentityResolver[AWSCredentialsIdentity, AWSIdentityProperties]):
    """The SDK identity resolver of ONE stream: always the identity the stream was opened with."""

    def __init__(self, identity: AWSCredentialsIdentity) -> None:
        self._identity = identity

    async def get_identity(self, *, properties: AWSIdentityProperties) -> AWSCredentialsIdentity:
        """Return the pinned identity (never blocks; called by the SDK for every signed event)."""
        return self._identity

    async def invalidate(self) -> None:
        """Nothing to discard: a stream never changes keys (it is handed over instead)."""
