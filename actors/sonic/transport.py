"""The CRT HTTP/2 transport of the Sonic client: a CA bundle for this client only, and pre-connect.

Rules (reference nova-sonic.md §9, §10):

* Bedrock's bidirectional stream needs the awscrt transport (aiohttp cannot stream both ways) over
  TLS with ALPN ``h2``; ``force_http_2`` makes a non-HTTP/2 endpoint fail fast instead of hanging.
* A CA bundle (the emulator's trustme CA, a corporate proxy's CA) is trusted by THIS client only:
  ``_tls_ctx`` is replaced by a context whose trust store is the bundle. ``SSL_CERT_FILE`` would
  replace the trust store of the whole process and is never used.
* ``__deepcopy__`` returns ``self``: the SDK deep-copies its config for every operation, and the
  base class's copy would rebuild the client with the default trust store (silently dropping the
  bundle) and with an empty connection pool (silently dropping pre-connected connections).
* :meth:`BedrockTransport.preconnect` opens (or reuses) the pooled TLS + HTTP/2 connection to an
  endpoint without opening a Bedrock stream; it goes through the base class's own
  ``_get_connection`` so the stream opened later finds that connection in the pool. Nothing is
  sent on it, so nothing is billed.
* TCP keep-alive is on for pooled connections so an idle warm connection notices a dead peer.
* awscrt exposes no TCP_NODELAY option, and Nagle's algorithm meeting delayed ACKs put 20-25 ms
  on the p90 of small events at 20 ms batching (docs/performance.md §4). With ``tcp_nodelay``
  (default on) each new connection's socket gets TCP_NODELAY from outside: the descriptors that
  appeared while the connection was built are found in ``/proc/self/fd``, and the option is set on
  a ``dup`` of each one whose peer port is the endpoint's (a socket option belongs to the socket,
  not the descriptor). Nothing in the SDK or awscrt is patched; where ``/proc`` is missing it
  does nothing.

awscrt is untyped; this module is its only importer in the package besides ``classify``.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any, Self, final
from urllib.parse import urlsplit

from awscrt import io as crt_io
from smithy_core import URI
from smithy_http.aio.crt import AWSCRTHTTPClient, AWSCRTHTTPClientConfig

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["BedrockTransport", "endpoint_of"]


def endpoint_of(region: str, endpoint_uri: str | None) -> URI:
    """The Bedrock runtime endpoint: the override if given, else the Region's public endpoint."""
    text = endpoint_uri or f"https://bedrock-runtime.{region}.amazonaws.com"
    parts = urlsplit(text)
    return URI(scheme=parts.scheme or "https", host=parts.hostname or "", port=parts.port)


@final
class BedrockTransport(AWSCRTHTTPClient):
    """``AWSCRTHTTPClient`` with an optional private CA bundle, HTTP/2 forced, and pre-connect.

    Args:
        ca_bundle: a PEM file of CA certificates trusted instead of the system store, for this
            client only; None keeps the system store.
    """

    def __init__(self, ca_bundle: Path | None = None, *, tcp_nodelay: bool = True) -> None:
        super().__init__(client_config=AWSCRTHTTPClientConfig(force_http_2=True))
        self._ca_bundle = ca_bundle
        if ca_bundle is not None:
            options = crt_io.TlsContextOptions()
            options.override_default_trust_store_from_path(None, str(ca_bundle))
            self._tls_ctx = crt_io.ClientTlsContext(options)
        socket_options = crt_io.SocketOptions()
        socket_options.connect_timeout_ms = 5000
        socket_options.keep_alive = True
        socket_options.keep_alive_timeout_secs = 30
        socket_options.keep_alive_interval_secs = 10
        socket_options.keep_alive_max_probes = 3
        self._socket_options = socket_options
        self._preconnects = 0
        self._tcp_nodelay = tcp_nodelay
        self.nodelay_sockets = 0

    async def preconnect(self, endpoint: URI) -> None:
        """Open the pooled TLS + HTTP/2 connection to ``endpoint`` if none is open; no request.

        Blocks (asynchronously) for TCP + TLS + HTTP/2 set-up on a miss; returns at once on a hit.

        Raises:
            AwsCrtError / SmithyHTTPError: connecting failed (map with ``classify_error``).
        """
        await self._get_connection(endpoint)
        self._preconnects += 1

    async def _build_new_connection(self, url: Any) -> Any:
        before = _socket_fds() if self._tcp_nodelay else set()
        connection = await super()._build_new_connection(url)
        if self._tcp_nodelay:
            port = url.port if url.port is not None else 443
            self.nodelay_sockets += _set_nodelay(_socket_fds() - before, port)
        return connection

    def open_connections(self) -> int:
        """How many pooled connections are open now."""
        return sum(1 for c in self._connections.values() if c.is_open())

    def __deepcopy__(self, memo: Any) -> Self:
        # Share, never copy: see the module docstring.
        return self


def _socket_fds() -> set[int]:
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return set()
    fds: set[int] = set()
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                fds.add(int(name))
        except OSError:
            continue
    return fds


def _set_nodelay(fds: set[int], port: int) -> int:
    """Set TCP_NODELAY on the TCP sockets among ``fds`` connected to ``port``; return the count."""
    done = 0
    for fd in fds:
        try:
            dup = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            tcp = dup.type == socket.SOCK_STREAM and dup.family in (socket.AF_INET, socket.AF_INET6)
            if tcp and dup.getpeername()[1] == port:
                dup.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                done += 1
        except OSError:
            pass  # not connected (yet), or not TCP: leave it alone
        finally:
            dup.close()
    return done
