"""The local servers a replayed call needs, started from its scenario and wired into the gateway.

Theory of operation. :func:`start_services` starts, on free 127.0.0.1 ports and for the block,
what the scenario asks for: the fake Twilio REST API (``[twilio_rest]``;
:class:`~gateway.replay.fake_twilio.FakeTwilioRest`) and the tool receiver (when some ``http`` tool
in ``[gateway.tools]`` has no ``url``; :class:`~gateway.replay.fake_tools.ToolReceiver`). The
runner then builds the gateway's config through :meth:`ReplayServices.configure` (which points
``twilio.api_base_url`` and those tools' URLs at the servers and fills in credentials the scenario
left out) and hands the final config to :meth:`ReplayServices.bind`, so the servers expect exactly
the credentials and keys the gateway uses. During the call the runner tells the services which
call the simulated Twilio placed and when its caller hung up; a REST request that ends the call's
media stream (a transfer or a hang-up) makes the simulated Twilio end the stream, as Twilio does.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, final

import attrs

from gateway.replay.fake_tools import TOOL_PATH_PREFIX, ReceiverTool, ToolReceiver
from gateway.replay.fake_twilio import FakeTwilioRest
from gateway.replay.scenario import Scenario
from gateway.replay.tool_report import ServiceRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from gateway.config import GatewayConfig

__all__ = [
    "REPLAY_API_KEY_SECRET",
    "REPLAY_API_KEY_SID",
    "REPLAY_TOOL_HMAC_KEY",
    "ReplayServices",
    "start_services",
]

REPLAY_API_KEY_SID: Final = "SK" + "0" * 31 + "1"
"""The API key the gateway gets for the fake REST API when the scenario sets no credentials."""
REPLAY_API_KEY_SECRET: Final = "replay-api-key-secret"
REPLAY_TOOL_HMAC_KEY: Final = "replay-tool-hmac-key"
"""The signing key of receiver tools the scenario gives none (the receiver always checks one)."""


@final
@attrs.define
class ReplayServices:
    """The servers started for one scenario (None: not asked for) and their wiring."""

    scenario: Scenario
    twilio: FakeTwilioRest | None = None
    twilio_url: str | None = None
    tools: ToolReceiver | None = None
    tools_url: str | None = None
    _stream_enders: dict[str, Callable[[str], None]] = attrs.Factory(dict)

    def configure(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The gateway's config table with the servers in it (a new table; ``raw`` is kept).

        Twilio: ``api_base_url`` is the fake; without ``account_sid`` the peer's account is used,
        and without an auth token or API key the replay API key. Receiver tools: ``url`` is the
        receiver's ``/tools/<name>``; without ``hmac_key`` the replay key.
        """
        out = copy.deepcopy(raw)
        if self.twilio_url is not None:
            twilio = out.setdefault("twilio", {})
            twilio["api_base_url"] = self.twilio_url
            twilio.setdefault("account_sid", self.scenario.peer.account_sid)
            if "auth_token" not in twilio and "api_key_sid" not in twilio:
                twilio["api_key_sid"] = REPLAY_API_KEY_SID
                twilio["api_key_secret"] = REPLAY_API_KEY_SECRET
        if self.tools_url is not None:
            received = set(self.scenario.received_tools())
            for tool in out.get("tools", []):
                if isinstance(tool, dict) and tool.get("name") in received:
                    tool["url"] = f"{self.tools_url}{TOOL_PATH_PREFIX}{tool['name']}"
                    tool.setdefault("hmac_key", REPLAY_TOOL_HMAC_KEY)
        return out

    def bind(self, config: GatewayConfig) -> None:
        """Make the servers expect what the gateway will send (credentials, keys)."""
        if self.twilio is not None:
            twilio = config.twilio
            self.twilio.account_sid = twilio.account_sid or ""
            if twilio.api_key_sid is not None and twilio.api_key_secret is not None:
                self.twilio.username, self.twilio.password = (
                    twilio.api_key_sid,
                    twilio.api_key_secret,
                )
            else:
                self.twilio.username = twilio.account_sid or ""
                self.twilio.password = twilio.auth_token or ""
        if self.tools is not None:
            received = set(self.scenario.received_tools())
            self.tools.tools = {
                t.name: ReceiverTool(
                    hmac_key=t.hmac_key,
                    bearer_token=t.bearer_token,
                    replies=[r for r in self.scenario.tool_replies if r.tool == t.name],
                )
                for t in config.tools
                if t.name in received
            }

    def call_started(self, call_sid: str, *, end_stream: Callable[[str], None]) -> None:
        """The simulated Twilio placed ``call_sid``; ``end_stream`` ends its media stream."""
        self._stream_enders[call_sid] = end_stream
        if self.twilio is not None:
            self.twilio.call_started(call_sid)

    def caller_hung_up(self, call_sid: str) -> None:
        """The call's caller hung up: the call is over for the fake REST API."""
        if self.twilio is not None:
            self.twilio.caller_hung_up(call_sid)

    def record(self) -> ServiceRecord:
        """What the servers recorded so far."""
        return ServiceRecord(
            rest_requests=None if self.twilio is None else list(self.twilio.requests),
            tool_requests=None if self.tools is None else list(self.tools.requests),
        )

    def stream_ended(self, call_sid: str) -> None:
        """The fake REST API ended the call's media stream: the simulated Twilio ends it."""
        end = self._stream_enders.get(call_sid)
        if end is not None:
            end("the call was updated through Twilio's REST API")


@contextlib.asynccontextmanager
async def start_services(scenario: Scenario) -> AsyncIterator[ReplayServices]:
    """Start the servers ``scenario`` asks for, for the block (nothing when it asks for none).

    Raises:
        OSError: no loopback port could be bound.
    """
    services = ReplayServices(scenario)
    async with contextlib.AsyncExitStack() as stack:
        if scenario.twilio_rest is not None:
            fake = FakeTwilioRest(
                account_sid="",
                username="",
                password="",
                script=list(scenario.twilio_rest.answers),
                on_stream_end=services.stream_ended,
            )
            services.twilio_url = await stack.enter_async_context(fake.serving())
            services.twilio = fake
        if scenario.received_tools():
            receiver = ToolReceiver()
            services.tools_url = await stack.enter_async_context(receiver.serving())
            services.tools = receiver
        yield services
