"""What a call needs from the service: :class:`CallDeps`, and the greeting clip.

Rules: ``CallDeps`` is a frozen attrs object built once by the gateway from its validated config
and shared by every call (the Sonic connector and its warm pool are per process, not per call).
Actors never read the environment or files: the prompts are loaded once, at start-up, into a
:class:`~actors.call.prompts.PromptCache` (:mod:`actors.call.prompts`). The default greeting ships
in the package as raw 8 kHz μ-law (``assets/greeting.ulaw``, rendered once with espeak-ng + sox,
"Hello, how can I help?", ~1.4 s). The goodbye prompt (``assets/goodbye.ulaw``, same tools,
"Sorry, we must end the call now. Goodbye.", ~2.9 s) is what a call still live when the gateway
stops hears before its socket closes. ``greeting_ulaw`` and ``goodbye_ulaw`` are the clips a call
plays; the gateway fills them from the cache it also passes as ``prompts``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from actors.call.dtmf import DtmfSettings
from actors.call.intents import IntentBook
from actors.call.ports import CallControl
from actors.call.prompts import PromptCache, bundled_prompt, ulaw_from_wav
from actors.call.report import CallReport
from actors.call.turn_fsm import MIN_BARGE_IN_SPEECH_MS
from actors.sonic import SonicConnector, SonicSettings
from actors.tools import Toolbox, TransferCall

if TYPE_CHECKING:
    from pathlib import Path


__all__ = ["CallDeps", "load_goodbye", "load_greeting"]


def load_greeting(path: Path | None = None) -> bytes:
    """Return the greeting as raw 8 kHz μ-law.

    Args:
        path: an integer PCM WAV file (any rate and channel count) to use instead of the
            packaged clip; None for the default.

    Raises:
        actors.call.prompts.PromptFormatError: the file is not usable (the message says why).
        OSError: the file cannot be read.
    """
    if path is None:
        return bundled_prompt("greeting")
    return ulaw_from_wav(path.read_bytes())


def load_goodbye() -> bytes:
    """Return the packaged goodbye prompt as raw 8 kHz μ-law."""
    return bundled_prompt("goodbye")


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def _chunk(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0 or value % 20:
        raise ValueError(f"{attribute.name} must be a positive multiple of 20 ms, got {value}")


@attrs.frozen
class CallDeps:
    """Everything a :class:`~actors.call.Call` needs besides its socket and identity.

    Attributes:
        connector: the process's Sonic connector (entered; owns the SDK client and warm pool).
        sonic_settings: the settings the connector uses (input/output rates).
        greeting_ulaw: the greeting, raw 8 kHz μ-law (:func:`load_greeting`); empty for none.
        playback_lead_ms: most audio kept buffered at Twilio ahead of playback.
        playback_chunk_ms: media chunk size, a multiple of 20 ms (one mark per chunk).
        local_vad_barge_in: let the local VAD interrupt the assistant (besides Sonic's signals).
        min_barge_in_speech_ms: continuous caller speech needed for a local-VAD barge-in.
        goodbye_ulaw: played to a call the gateway ends while stopping (:func:`load_goodbye`);
            empty for none.
        dtmf: how the caller's keys are grouped into entries for the model.
        on_finished: called once with the call's report when the call has ended (must not block).
        prompts: every named prompt clip (hold, transferring, sorry... for call control).
        tools: the tools the model may call (their specs go to Sonic in ``sonic_settings.tools``);
            each call runs them in its SonicSession, at most ``tools.max_in_flight`` at once.
        call_control: Twilio's REST API, for the built-in ``end_call`` / ``transfer_call`` tools
            (None: their actions end the call's stream only).
        intents: the fast intents (:mod:`actors.call.intents`): keypad entries or caller words
            that play a cached prompt at once and run a tool (none by default).
        intent_tools: the tools intents run (None: ``tools``); every configured tool, even one
            the model of this call is not offered.
        hold_after_ms: a lost Sonic session silent this long plays the hold prompt (0: never).
        fallback: where a call goes when Sonic fails for good: after the sorry prompt, this
            transfer (one of the ``transfer_call`` targets) through ``call_control``; None: the
            call is ended (completed through ``call_control`` when there is one).
    """

    connector: SonicConnector
    sonic_settings: SonicSettings
    greeting_ulaw: bytes = attrs.field(factory=load_greeting, repr=False)
    playback_lead_ms: float = attrs.field(default=200.0, validator=_positive)
    playback_chunk_ms: int = attrs.field(default=100, validator=_chunk)
    local_vad_barge_in: bool = False
    min_barge_in_speech_ms: float = attrs.field(default=MIN_BARGE_IN_SPEECH_MS, validator=_positive)
    on_finished: Callable[[CallReport], None] | None = None
    goodbye_ulaw: bytes = attrs.field(factory=load_goodbye, repr=False)
    prompts: PromptCache = attrs.field(factory=PromptCache.bundled, repr=False)
    dtmf: DtmfSettings = attrs.field(factory=DtmfSettings)
    tools: Toolbox = attrs.field(factory=Toolbox, repr=False)
    call_control: CallControl | None = attrs.field(default=None, repr=False)
    intents: IntentBook = attrs.field(factory=IntentBook, repr=False)
    intent_tools: Toolbox | None = attrs.field(default=None, repr=False)
    hold_after_ms: float = attrs.field(default=1000.0, validator=attrs.validators.ge(0.0))
    fallback: TransferCall | None = attrs.field(default=None, repr=False)
