"""Nova Sonic over the real AWS SDK: settings, credentials, streams, handover, warm pool.

Public surface (import only from here)::

    async with SonicConnector(settings, credentials=StaticCredentials()) as connector:
        async with connector.conversation() as conv:
            await conv.send_audio(pcm)            # caller PCM at settings.input_rate
            async for event in conv.events: ...   # SonicEvent union

See docs/sonic.md for sessions, errors, handover and the pool.
"""

from __future__ import annotations

from actors.sonic.classify import classify_error
from actors.sonic.connector import ConnectorStatistics, SonicConnector
from actors.sonic.conversation import SonicConversation
from actors.sonic.credentials import (
    BotocoreCredentials,
    CredentialCache,
    CredentialsProvider,
    PinnedIdentityResolver,
    StaticCredentials,
)
from actors.sonic.event_writer import (
    ChunkSigner,
    InputWriter,
    LeanInputWriter,
    SdkInputWriter,
    open_input_writer,
)
from actors.sonic.events import (
    AssistantText,
    BargeInSource,
    CompletionEnded,
    HandedOver,
    SessionClosed,
    SessionLost,
    SonicAudio,
    SonicAudioEnded,
    SonicAudioStarted,
    SonicBargeIn,
    SonicEvent,
    ToolUseRequested,
    Usage,
    UserTranscript,
)
from actors.sonic.handover import PREPARE_BACKOFF_MAX_S, HandoverAction, HandoverPlanner
from actors.sonic.history import CallerAudioRing, ConversationHistory, HistoryTurn
from actors.sonic.protocol import InputState, SonicProtocol
from actors.sonic.settings import PoolSettings, SonicSettings, SonicTool
from actors.sonic.stream import SonicStream
from actors.sonic.transport import BedrockTransport, ConnectionStatistics, endpoint_of

__all__ = [
    "PREPARE_BACKOFF_MAX_S",
    "AssistantText",
    "BargeInSource",
    "BedrockTransport",
    "BotocoreCredentials",
    "CallerAudioRing",
    "ChunkSigner",
    "CompletionEnded",
    "ConnectionStatistics",
    "ConnectorStatistics",
    "ConversationHistory",
    "CredentialCache",
    "CredentialsProvider",
    "HandedOver",
    "HandoverAction",
    "HandoverPlanner",
    "HistoryTurn",
    "InputState",
    "InputWriter",
    "LeanInputWriter",
    "PinnedIdentityResolver",
    "PoolSettings",
    "SdkInputWriter",
    "SessionClosed",
    "SessionLost",
    "SonicAudio",
    "SonicAudioEnded",
    "SonicAudioStarted",
    "SonicBargeIn",
    "SonicConnector",
    "SonicConversation",
    "SonicEvent",
    "SonicProtocol",
    "SonicSettings",
    "SonicStream",
    "SonicTool",
    "StaticCredentials",
    "ToolUseRequested",
    "Usage",
    "UserTranscript",
    "classify_error",
    "endpoint_of",
    "open_input_writer",
]
