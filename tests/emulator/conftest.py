"""Test helpers for the emulator: the REAL Bedrock SDK client, trusting the emulator's CA only.

``SonicTestClient`` is deliberately small and independent of ``actors.sonic``: it opens one
bidirectional stream with ``aws_sdk_bedrock_runtime`` over the CRT HTTP/2 transport (a subclass
whose TLS context trusts the emulator's CA file; ``__deepcopy__`` keeps it), sends Nova JSON events
built with ``actors.wire`` encoders and collects decoded output events.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import anyio
import pytest
from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_bedrock_runtime.models import (
    BidirectionalInputPayloadPart,
    InvokeModelWithBidirectionalStreamInputChunk,
    InvokeModelWithBidirectionalStreamOperationInput,
)
from awscrt import io as crt_io
from smithy_http.aio.crt import AWSCRTHTTPClient

from actors.wire import (
    AudioInput,
    AudioInputConfiguration,
    AudioOutputConfiguration,
    EndpointingSensitivity,
    InferenceConfiguration,
    InputContentEnd,
    InputContentStart,
    InputEventBody,
    PromptEnd,
    PromptStart,
    SessionEnd,
    SessionStart,
    TextConfiguration,
    TextInput,
    ToolResultInput,
    ToolResultInputConfiguration,
    TurnDetectionConfiguration,
    decode_output_event,
    encode_input_event,
)

MODEL_ID = "amazon.nova-2-sonic-v1:0"


class CaTrustingTransport(AWSCRTHTTPClient):
    """CRT HTTP client whose TLS context trusts one CA file (for this client only)."""

    def __init__(self, ca_path: str) -> None:
        super().__init__()
        self._ca_path = ca_path
        options = crt_io.TlsContextOptions()
        options.override_default_trust_store_from_path(None, ca_path)
        self._tls_ctx = crt_io.ClientTlsContext(options)

    def __deepcopy__(self, memo: Any) -> CaTrustingTransport:
        # The base class rebuilds itself with a default TLS context: keep ours.
        return CaTrustingTransport(self._ca_path)


def speech_pcm(rate: int, ms: int, seed: int = 1) -> bytes:
    """Loud noise bursts: voiced for the emulator's energy VAD."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = rate * ms // 1000
    return (rng.standard_normal(n) * 4000).clip(-32768, 32767).astype("<i2").tobytes()


def silence_pcm(rate: int, ms: int) -> bytes:
    return bytes(2 * (rate * ms // 1000))


class SonicTestClient:
    """One stream through the real SDK; ``events`` collects decoded output events in order."""

    def __init__(
        self,
        endpoint: str,
        ca_path: str,
        *,
        in_rate: int = 16000,
        out_rate: int = 24000,
        transport: CaTrustingTransport | None = None,
        model_id: str = MODEL_ID,
    ) -> None:
        self.endpoint = endpoint
        self.model_id = model_id
        self.ca_path = ca_path
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.prompt = "P-" + uuid.uuid4().hex[:8]
        self.audio_name = "A-" + uuid.uuid4().hex[:8]
        self.events: list[Any] = []
        self.client: Any = None
        self.stream: Any = None
        self.output: Any = None
        self.transport: Any = transport
        # A transport handed in is shared (its connections serve several clients): not ours to close.
        self._owns_transport = transport is None

    async def open(self) -> None:
        if self.transport is None:
            self.transport = CaTrustingTransport(self.ca_path)
        config = await AsyncBedrockRuntimeConfig.resolve(
            endpoint_uri=self.endpoint,
            region="us-east-1",
            transport=self.transport,
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="dummy",
        )
        self.client = AsyncBedrockRuntimeClient(config=config)
        self.stream = await self.client.invoke_model_with_bidirectional_stream(
            InvokeModelWithBidirectionalStreamOperationInput(model_id=self.model_id)
        )

    async def await_output(self) -> None:
        _, self.output = await self.stream.await_output()

    async def send(self, body: InputEventBody) -> None:
        await self.send_raw(encode_input_event(body))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.input_stream.send(
            InvokeModelWithBidirectionalStreamInputChunk(
                value=BidirectionalInputPayloadPart(bytes_=data)
            )
        )

    async def start(
        self,
        *,
        history: list[tuple[str, str]] = (),  # type: ignore[assignment]
        sensitivity: EndpointingSensitivity | None = None,
    ) -> None:
        """sessionStart (with ``turnDetectionConfiguration`` when ``sensitivity`` is given),
        promptStart, system prompt, optional history, then the AUDIO block."""
        await self.open()
        detection = (
            None
            if sensitivity is None
            else TurnDetectionConfiguration(endpointing_sensitivity=sensitivity)
        )
        await self.send(
            SessionStart(
                inference_configuration=InferenceConfiguration(),
                turn_detection_configuration=detection,
            )
        )
        await self.send(
            PromptStart(
                prompt_name=self.prompt,
                text_output_configuration=TextConfiguration(),
                audio_output_configuration=AudioOutputConfiguration(
                    voice_id="matthew", sample_rate_hertz=self.out_rate
                ),
            )
        )
        await self.text_block("SYSTEM", "You are a test agent.")
        for role, text in history:
            await self.text_block(role, text)
        await self.await_output()
        await self.send(
            InputContentStart(
                prompt_name=self.prompt,
                content_name=self.audio_name,
                type="AUDIO",
                interactive=True,
                role="USER",
                audio_input_configuration=AudioInputConfiguration(sample_rate_hertz=self.in_rate),
            )
        )

    async def text_block(self, role: str, text: str, *, interactive: bool = False) -> None:
        name = "T-" + uuid.uuid4().hex[:8]
        await self.send(
            InputContentStart(
                prompt_name=self.prompt,
                content_name=name,
                type="TEXT",
                interactive=interactive,
                role=role,  # type: ignore[arg-type]
                text_input_configuration=TextConfiguration(),
            )
        )
        await self.send(TextInput(prompt_name=self.prompt, content_name=name, content=text))
        await self.send(InputContentEnd(prompt_name=self.prompt, content_name=name))

    async def tool_result(self, tool_use_id: str, content: str) -> None:
        name = "R-" + uuid.uuid4().hex[:8]
        await self.send(
            InputContentStart(
                prompt_name=self.prompt,
                content_name=name,
                type="TOOL",
                interactive=False,
                role="TOOL",
                tool_result_input_configuration=ToolResultInputConfiguration(
                    tool_use_id=tool_use_id
                ),
            )
        )
        await self.send(
            ToolResultInput(prompt_name=self.prompt, content_name=name, content=content)
        )
        await self.send(InputContentEnd(prompt_name=self.prompt, content_name=name))

    async def audio(self, pcm: bytes, *, chunk_ms: int = 20, realtime: float = 0.0) -> None:
        """Send caller PCM in ``chunk_ms`` events; ``realtime`` > 0 paces at that factor."""
        step = self.in_rate * chunk_ms // 1000 * 2
        for offset in range(0, len(pcm), step):
            await self.send(
                AudioInput(
                    prompt_name=self.prompt,
                    content_name=self.audio_name,
                    content=pcm[offset : offset + step],
                )
            )
            if realtime > 0:
                await anyio.sleep(chunk_ms / 1000.0 / realtime)

    async def receive(self) -> Any:
        """Next decoded output event, or None at the end; exception frames raise typed errors."""
        chunk = await self.output.receive()
        if chunk is None:
            return None
        event = decode_output_event(chunk.value.bytes_)
        self.events.append(event)
        return event

    async def receive_until(self, predicate: Any, *, limit_s: float = 10.0) -> Any:
        with anyio.fail_after(limit_s):
            while True:
                event = await self.receive()
                if event is None:
                    raise AssertionError("stream ended before the expected event")
                if predicate(event):
                    return event

    async def drain(self, *, limit_s: float = 10.0) -> None:
        """Receive until the end of the stream."""
        with anyio.fail_after(limit_s):
            while await self.receive() is not None:
                pass

    async def finish(self) -> None:
        """Orderly close: audio contentEnd, promptEnd, sessionEnd, close input."""
        await self.send(InputContentEnd(prompt_name=self.prompt, content_name=self.audio_name))
        await self.send(PromptEnd(prompt_name=self.prompt))
        await self.send(SessionEnd())
        await self.stream.input_stream.close()

    async def close(self) -> None:
        with anyio.move_on_after(5, shield=True):
            if self.stream is not None:
                with contextlib.suppress(Exception):
                    await self.stream.input_stream.close()
                await self.stream.close()
            if self.transport is not None and self._owns_transport:
                await self.transport.close()


def sigv4_headers(
    url: str, headers: dict[str, str], *, secret: str = "dummy", method: str = "POST"
) -> dict[str, str]:
    """``headers`` plus the SigV4 ones botocore signs an empty-bodied request with (the test keys,
    us-east-1, service bedrock)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=b"", headers=headers)
    SigV4Auth(Credentials("AKIDEXAMPLE", secret), "bedrock", "us-east-1").add_auth(request)
    return dict(request.headers.items())


@pytest.fixture
def sign_headers() -> Any:
    """:func:`sigv4_headers`: sign a plain HTTP request as the emulator expects."""
    return sigv4_headers


@pytest.fixture
def sonic_client_class() -> type[SonicTestClient]:
    return SonicTestClient


@pytest.fixture
def pcm_helpers() -> Any:
    class _Pcm:
        speech = staticmethod(speech_pcm)
        silence = staticmethod(silence_pcm)

    return _Pcm


@pytest.fixture
def transport_class() -> type[CaTrustingTransport]:
    """The SDK transport class trusting one CA (share one instance to share its connection)."""
    return CaTrustingTransport
