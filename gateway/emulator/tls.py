"""Per-start TLS material for the emulator: a throw-away CA and a server certificate.

Theory of operation. Each emulator start makes a fresh CA with ``trustme`` and issues a server
certificate for ``127.0.0.1``, ``::1`` and ``localhost``. hypercorn reads its certificate and key
from files, and clients trust the emulator through the CA's PEM file, so all three are written into a
private temporary directory that lives exactly as long as the emulator (the caller owns it through
:func:`make_tls_material`'s context manager). Nothing touches the process-wide trust store: a client
trusts the emulator by loading ``ca_path`` for that one endpoint.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, final

import attrs
import trustme

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["TlsMaterial", "make_tls_material"]


@final
@attrs.frozen
class TlsMaterial:
    """Paths of the PEM files one emulator run uses."""

    ca_path: Path
    cert_path: Path
    key_path: Path


@contextlib.contextmanager
def make_tls_material() -> Iterator[TlsMaterial]:
    """Create a CA and a server certificate in a temporary directory; remove them on exit.

    Blocks for a few milliseconds (key generation); call it before serving, not per request.
    """
    ca = trustme.CA(organization_name="sonic-gateway emulator")
    leaf = ca.issue_cert("127.0.0.1", "::1", "localhost", common_name="localhost")
    with tempfile.TemporaryDirectory(prefix="sonic-emulator-") as directory:
        root = Path(directory)
        material = TlsMaterial(
            ca_path=root / "ca.pem", cert_path=root / "server.pem", key_path=root / "server.key"
        )
        ca.cert_pem.write_to_path(str(material.ca_path))
        # The chain: leaf first, then intermediates (trustme issues straight from the root).
        with material.cert_path.open("wb") as out:
            for blob in leaf.cert_chain_pems:
                out.write(blob.bytes())
        leaf.private_key_pem.write_to_path(str(material.key_path))
        yield material
