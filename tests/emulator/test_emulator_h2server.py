"""The emulator's HTTP/2 + TLS layer: h2 as copied, flow-control settings, ALPN."""

from __future__ import annotations

import ast
import inspect
import ssl
import textwrap

import anyio
import h2.connection
import pytest

from gateway.emulator import run_emulator
from gateway.emulator.h2server import H2ServerSettings, _QuietH2Connection


def body_statements(function: object) -> list[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef)
    statements = [s for s in node.body if not isinstance(s, ast.Expr) or not _is_doc(s)]
    return [ast.dump(s) for s in statements]


def _is_doc(statement: ast.Expr) -> bool:
    return isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str)


def _is_trace(statement: str) -> bool:
    return "attr='trace'" in statement


def test_quiet_receive_frame_is_h2s_minus_the_trace_line() -> None:
    # An h2 upgrade that changes _receive_frame fails here: re-copy it (minus the trace call).
    theirs = body_statements(h2.connection.H2Connection._receive_frame)
    ours = body_statements(_QuietH2Connection._receive_frame)
    assert [s for s in theirs if not _is_trace(s)] == ours
    assert any(_is_trace(s) for s in theirs)


def test_ack_batch_must_fit_the_window() -> None:
    with pytest.raises(ValueError, match="ack_batch_bytes"):
        H2ServerSettings(receive_window=1 << 20, ack_batch_bytes=1 << 20)
    assert H2ServerSettings().receive_window == 2**31 - 1


@pytest.mark.anyio
async def test_a_client_without_h2_is_turned_away() -> None:
    async with run_emulator() as emu:
        context = ssl.create_default_context(cafile=str(emu.ca_path))
        context.set_alpn_protocols(["http/1.1"])
        with anyio.fail_after(5):
            stream = await anyio.connect_tcp(
                "127.0.0.1", emu.port, tls=True, ssl_context=context, tls_standard_compatible=False
            )
            async with stream:
                await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, OSError)):
                    await stream.receive()
        assert emu.statistics()["connections_opened"] == 1
        assert emu.sessions == []
