"""The gateway app over real loopback sockets: uvicorn via serve_gateway, websockets as Twilio."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import httpx
import msgspec
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.config import DebugConfig, GatewayConfig, LimitsConfig, ServerConfig, TwilioConfig
from gateway.server import serve_gateway
from gateway.signature import compute_signature

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

TOKEN = "test-auth-token-123"
PUBLIC = "https://voice.example.com"


def make_config(**sections: Any) -> GatewayConfig:
    sections.setdefault("server", ServerConfig(host="127.0.0.1", port=0))
    return GatewayConfig(**sections)


async def open_call(ws: Any, frames: Any, call_sid: str, stream_sid: str) -> None:
    await ws.send(frames.connected())
    await ws.send(frames.start(call_sid, stream_sid, callSid=call_sid))


async def wait_close_code(ws: Any) -> int | None:
    with anyio.fail_after(10):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    return ws.close_code  # type: ignore[no-any-return]


async def debug_calls(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.get("/debug/actors", headers=headers)


async def test_healthz_reports_status_and_version(call_log: Any) -> None:
    async with (
        serve_gateway(make_config(), call_log) as running,
        httpx.AsyncClient(base_url=running.base_url) as client,
    ):
        response = await client.get("/healthz")
    assert response.status_code == 200
    body = msgspec.json.decode(response.content)
    assert body["status"] == "ok"
    assert body["live_calls"] == 0
    assert body["version"]


async def test_voice_webhook_answers_stream_twiml(call_log: Any) -> None:
    config = make_config(
        twilio=TwilioConfig(auth_token=TOKEN),
        server=ServerConfig(host="127.0.0.1", port=0, public_url=PUBLIC),
    )
    form = {"CallSid": "CA1", "AccountSid": "AC1", "From": "+15550001111", "To": "+15550002222"}
    signature = compute_signature(TOKEN, PUBLIC + "/twilio/voice", form)
    async with (
        serve_gateway(config, call_log) as running,
        httpx.AsyncClient(base_url=running.base_url) as client,
    ):
        ok = await client.post(
            "/twilio/voice", data=form, headers={"X-Twilio-Signature": signature}
        )
        forged = await client.post(
            "/twilio/voice", data={**form, "From": "+1"}, headers={"X-Twilio-Signature": signature}
        )
        missing = await client.post("/twilio/voice", data=form)
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("application/xml")
    assert b'<Stream url="wss://voice.example.com/twilio/media"' in ok.content
    assert b'<Parameter name="callSid" value="CA1" />' in ok.content
    assert forged.status_code == 403
    assert missing.status_code == 403


async def test_media_happy_path_echoes_and_ends_on_stop(call_log: Any, frames: Any) -> None:
    async with (
        serve_gateway(make_config(debug=DebugConfig(enabled=True)), call_log) as running,
        httpx.AsyncClient(base_url=running.base_url) as client,
    ):
        async with websockets.connect(running.ws_url + "/twilio/media") as ws:
            await open_call(ws, frames, "CA100", "MZ100")
            for seq in range(2, 7):
                await ws.send(frames.media("MZ100", seq, bytes([seq]) * 160))
                with anyio.fail_after(10):
                    reply = msgspec.json.decode(await ws.recv())
                assert reply["event"] == "media"
                assert reply["streamSid"] == "MZ100"
                assert base64.b64decode(reply["media"]["payload"]) == bytes([seq]) * 160
            live = msgspec.json.decode((await debug_calls(client)).content)
            assert live["count"] == 1
            assert live["calls"][0] == {"call_sid": "CA100", "frames_in": 5, "frames_out": 5}
            await ws.send(frames.stop("CA100", "MZ100", 7))
            assert await wait_close_code(ws) == 1000
        # The slot is released before the socket closes: no wait needed.
        assert running.app.state.gateway.registry.live_count == 0
        after = msgspec.json.decode((await debug_calls(client)).content)
    assert after == {"calls": [], "count": 0, "recent": [], "sonic": None}
    assert len(call_log.calls) == 1
    identity = call_log.calls[0].identity
    assert (identity.call_sid, identity.stream_sid) == ("CA100", "MZ100")
    assert identity.custom_parameters == {"callSid": "CA100"}


async def test_duplicate_call_sid_refused_while_first_is_live(call_log: Any, frames: Any) -> None:
    async with serve_gateway(make_config(), call_log) as running:
        url = running.ws_url + "/twilio/media"
        async with websockets.connect(url) as first:
            await open_call(first, frames, "CA200", "MZ200")
            await call_log.wait_for_calls(1)
            async with websockets.connect(url) as second:
                await open_call(second, frames, "CA200", "MZ201")
                assert await wait_close_code(second) == 1008
            # The first call is untouched.
            await first.send(frames.media("MZ200", 2, b"\x7f" * 160))
            with anyio.fail_after(10):
                assert msgspec.json.decode(await first.recv())["event"] == "media"
            await first.send(frames.stop("CA200", "MZ200", 3))
            assert await wait_close_code(first) == 1000
    assert len(call_log.calls) == 1


async def test_concurrency_limit_rejects_webhook_and_refuses_socket(
    call_log: Any, frames: Any
) -> None:
    config = make_config(limits=LimitsConfig(max_concurrent_calls=1))
    async with (
        serve_gateway(config, call_log) as running,
        httpx.AsyncClient(base_url=running.base_url) as client,
    ):
        url = running.ws_url + "/twilio/media"
        async with websockets.connect(url) as first:
            await open_call(first, frames, "CA300", "MZ300")
            await call_log.wait_for_calls(1)
            busy = await client.post("/twilio/voice", data={"CallSid": "CA301"})
            assert busy.status_code == 200
            assert b'<Reject reason="busy" />' in busy.content
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(url)
            assert refused.value.response.status_code == 403
            await first.send(frames.stop("CA300", "MZ300", 2))
            assert await wait_close_code(first) == 1000
        # The slot is released before the socket closes: no wait needed.
        assert running.app.state.gateway.registry.live_count == 0
        free = await client.post("/twilio/voice", data={"CallSid": "CA302"})
        assert b"<Connect>" in free.content
    assert len(call_log.calls) == 1


async def test_oversized_message_ends_only_that_call(call_log: Any, frames: Any) -> None:
    async with serve_gateway(make_config(), call_log) as running:
        url = running.ws_url + "/twilio/media"
        async with websockets.connect(url) as calm, websockets.connect(url, max_size=None) as big:
            await open_call(calm, frames, "CA400", "MZ400")
            await open_call(big, frames, "CA401", "MZ401")
            await call_log.wait_for_calls(2)
            await big.send(frames.media("MZ401", 2, b"\x00" * 60_000))  # > 64 KiB as base64 JSON
            assert await wait_close_code(big) == 1009
            await calm.send(frames.media("MZ400", 2, b"\x01" * 160))
            with anyio.fail_after(10):
                assert msgspec.json.decode(await calm.recv())["event"] == "media"
            await calm.send(frames.stop("CA400", "MZ400", 3))
            assert await wait_close_code(calm) == 1000


async def test_malformed_json_ends_only_that_call(call_log: Any, frames: Any) -> None:
    async with serve_gateway(make_config(), call_log) as running:
        url = running.ws_url + "/twilio/media"
        async with websockets.connect(url) as calm, websockets.connect(url) as broken:
            await open_call(calm, frames, "CA500", "MZ500")
            await open_call(broken, frames, "CA501", "MZ501")
            await call_log.wait_for_calls(2)
            await broken.send("{not json")
            assert await wait_close_code(broken) == 1007  # invalid payload
            await calm.send(frames.media("MZ500", 2, b"\x01" * 160))
            with anyio.fail_after(10):
                assert msgspec.json.decode(await calm.recv())["event"] == "media"
            await calm.send(frames.stop("CA500", "MZ500", 3))
            assert await wait_close_code(calm) == 1000


async def test_hang_up_without_stop_releases_the_call(call_log: Any, frames: Any) -> None:
    async with serve_gateway(make_config(), call_log) as running:
        async with websockets.connect(running.ws_url + "/twilio/media") as ws:
            await open_call(ws, frames, "CA550", "MZ550")
            await call_log.wait_for_calls(1)
        # The socket is gone without a stop: the call ends, its slot is released.
        with anyio.fail_after(10):
            await call_log.calls[0].ended.wait()
        stats = running.app.state.gateway.registry.statistics()
        assert (stats.live_calls, stats.calls_started) == (0, 1)


async def test_out_of_order_handshake_closes_without_a_call(call_log: Any, frames: Any) -> None:
    async with (
        serve_gateway(make_config(), call_log) as running,
        websockets.connect(running.ws_url + "/twilio/media") as ws,
    ):
        await ws.send(frames.start("CA600", "MZ600"))  # start before connected
        assert await wait_close_code(ws) == 1008
    assert call_log.calls == []


async def test_handshake_timeout_closes_without_a_call(call_log: Any, frames: Any) -> None:
    config = make_config(limits=LimitsConfig(handshake_timeout_s=0.2))
    async with (
        serve_gateway(config, call_log) as running,
        websockets.connect(running.ws_url + "/twilio/media") as ws,
    ):
        await ws.send(frames.connected())
        assert await wait_close_code(ws) == 1008
    assert call_log.calls == []


class TestSignedUpgrade:
    @pytest.fixture
    async def running(self, call_log: Any) -> AsyncIterator[Any]:
        config = make_config(
            twilio=TwilioConfig(auth_token=TOKEN),
            server=ServerConfig(host="127.0.0.1", port=0, public_url=PUBLIC),
        )
        async with serve_gateway(config, call_log) as running:
            yield running

    @pytest.mark.parametrize("signed_url", [PUBLIC, PUBLIC + "/"])
    async def test_valid_signature_on_public_wss_url_accepted(
        self, running: Any, call_log: Any, frames: Any, signed_url: str
    ) -> None:
        wss = signed_url.replace("https://", "wss://").rstrip("/") + "/twilio/media"
        if signed_url.endswith("/"):
            wss += "/"
        signature = compute_signature(TOKEN, wss)
        token = running.app.state.gateway.stream_tokens.mint("CA700", "AC" + "0" * 32)
        async with websockets.connect(
            running.ws_url + "/twilio/media", additional_headers={"X-Twilio-Signature": signature}
        ) as ws:
            await ws.send(frames.connected())
            await ws.send(frames.start("CA700", "MZ700", callSid="CA700", streamToken=token))
            await ws.send(frames.stop("CA700", "MZ700", 2))
            assert await wait_close_code(ws) == 1000
        assert len(call_log.calls) == 1

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {
                "X-Twilio-Signature": compute_signature(
                    "wrong-token-456", PUBLIC.replace("https", "wss") + "/twilio/media"
                )
            },
            {"X-Twilio-Signature": compute_signature(TOKEN, PUBLIC + "/twilio/media")},  # https://
        ],
    )
    async def test_bad_signature_refused_with_403_and_no_call(
        self, running: Any, call_log: Any, headers: dict[str, str]
    ) -> None:
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(running.ws_url + "/twilio/media", additional_headers=headers)
        assert refused.value.response.status_code == 403
        assert call_log.calls == []
        stats = running.app.state.gateway.registry.statistics()
        assert stats.calls_started == 0
        assert stats.refused_bad_signature == 1


class TestDebugEndpoint:
    async def test_off_by_default(self, call_log: Any) -> None:
        async with (
            serve_gateway(make_config(), call_log) as running,
            httpx.AsyncClient(base_url=running.base_url) as client,
        ):
            assert (await debug_calls(client)).status_code == 404

    async def test_on_without_token(self, call_log: Any) -> None:
        config = make_config(debug=DebugConfig(enabled=True))
        async with (
            serve_gateway(config, call_log) as running,
            httpx.AsyncClient(base_url=running.base_url) as client,
        ):
            response = await debug_calls(client)
        assert response.status_code == 200
        body = msgspec.json.decode(response.content)
        assert body == {"calls": [], "count": 0, "recent": [], "sonic": None}

    async def test_page_is_served_from_the_package_only_when_debug_is_on(
        self, call_log: Any
    ) -> None:
        on = make_config(debug=DebugConfig(enabled=True, bearer_token="debug-secret-1"))
        async with (
            serve_gateway(make_config(), call_log) as off_gateway,
            serve_gateway(on, call_log) as on_gateway,
            httpx.AsyncClient() as client,
        ):
            off = await client.get(off_gateway.base_url + "/debug")
            page = await client.get(on_gateway.base_url + "/debug")  # no token: it holds no data
        assert off.status_code == 404
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "connect-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert b"<script" in page.content
        assert b"http://" not in page.content  # nothing from elsewhere (no CDN)
        assert b"https://" not in page.content

    async def test_bearer_token_required(self, call_log: Any) -> None:
        config = make_config(debug=DebugConfig(enabled=True, bearer_token="debug-secret-1"))
        async with (
            serve_gateway(config, call_log) as running,
            httpx.AsyncClient(base_url=running.base_url) as client,
        ):
            missing = await debug_calls(client)
            wrong = await debug_calls(client, Authorization="Bearer nope-nope")
            right = await debug_calls(client, Authorization="Bearer debug-secret-1")
        assert missing.status_code == 401
        assert wrong.status_code == 401
        assert right.status_code == 200


def test_config_is_frozen() -> None:
    config = make_config()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.backend = "bedrock"  # type: ignore[misc]


class TestLoad:
    async def test_debug_load_reports_counters_and_loop_lag(self, call_log: Any) -> None:
        # Admission by lag off: a busy test machine must not make this test about its own load.
        config = make_config(
            debug=DebugConfig(enabled=True), limits=LimitsConfig(admission_loop_lag_ms=None)
        )
        async with (
            serve_gateway(config, call_log) as running,
            httpx.AsyncClient(base_url=running.base_url) as client,
        ):
            await anyio.sleep(0.1)  # a few lag samples
            response = await client.get("/debug/load")
        assert response.status_code == 200
        body = msgspec.json.decode(response.content)
        assert body["live_calls"] == 0
        assert body["refused_overloaded"] == 0
        assert body["caller_audio_dropped_ms"] == 0
        assert body["overloaded"] is False
        lag = body["loop_lag"]
        assert lag["count"] >= 1
        assert len(lag["counts"]) == len(lag["bounds_ms"]) + 1
        assert sum(lag["counts"]) == lag["count"]

    async def test_debug_load_is_guarded_like_debug_actors(self, call_log: Any) -> None:
        async with (
            serve_gateway(make_config(), call_log) as running,
            httpx.AsyncClient(base_url=running.base_url) as client,
        ):
            assert (await client.get("/debug/load")).status_code == 404
        config = make_config(debug=DebugConfig(enabled=True, bearer_token="s3cret"))
        async with (
            serve_gateway(config, call_log) as running,
            httpx.AsyncClient(base_url=running.base_url) as client,
        ):
            assert (await client.get("/debug/load")).status_code == 401
            ok = await client.get("/debug/load", headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200

    async def test_a_lagging_loop_refuses_new_calls_and_keeps_live_ones(
        self, call_log: Any, frames: Any
    ) -> None:
        config = make_config(debug=DebugConfig(enabled=True))
        async with (
            serve_gateway(config, call_log) as running,
            httpx.AsyncClient(base_url=running.base_url) as client,
            websockets.connect(running.ws_url + "/twilio/media") as live,
        ):
            await open_call(live, frames, "CA-live", "MZ-live")
            await call_log.wait_for_calls(1)
            monitor = running.app.state.gateway.loop_monitor
            for _ in range(500):
                monitor.record(500.0)  # as if the loop had been half a second behind for a while
            webhook = await client.post("/twilio/voice", data={"CallSid": "CA-new"})
            assert 'reason="busy"' in webhook.text
            with pytest.raises(InvalidStatus) as refused:
                async with websockets.connect(running.ws_url + "/twilio/media"):
                    pass
            assert refused.value.response.status_code == 403
            load = msgspec.json.decode((await client.get("/debug/load")).content)
            assert load["overloaded"] is True
            assert load["refused_overloaded"] == 2
            # The live call is untouched: it still echoes.
            await live.send(frames.media("MZ-live", 2, b"\xff" * 160))
            with anyio.fail_after(5):
                echoed = msgspec.json.decode(await live.recv())
            assert echoed["event"] == "media"
