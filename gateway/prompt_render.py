"""``sonic-gateway prompts render``: synthesise the five prompts with Amazon Polly into ``<name>.ulaw``.

Theory of operation: for each name of :data:`actors.call.PROMPT_NAMES` the configured text
(``prompts.<name>_text``) is sent to Polly's ``SynthesizeSpeech`` with ``OutputFormat=pcm`` and
``SampleRate=8000`` (Polly's PCM is signed 16-bit little-endian mono), encoded to G.711 μ-law
and written to ``<out>/<name>.ulaw``, the raw form the prompt cache loads from
``prompts.cache_dir``. The engine is ``neural`` when Polly lists the voice among its neural voices
(``DescribeVoices`` with ``Engine=neural``), else ``standard``; ``--engine`` forces one.
Each file is written to a temporary name and renamed, so a failed run never leaves half a clip.

The client is any boto3 Polly client (tests pass one wired to botocore's Stubber); credentials
come from the usual AWS chain. Runs synchronously: it is a command, not part of the service.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final, Literal, final

from actors.call import PROMPT_NAMES, PromptFormatError
from actors.call.prompts import check_ulaw
from audiocodec import ulaw_encode

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from actors.call import PromptName

__all__ = ["Engine", "PromptRenderError", "choose_engine", "pcm16_to_ulaw", "render_prompts"]

Engine = Literal["neural", "standard"]
_SAMPLE_RATE: Final = "8000"


@final
class PromptRenderError(Exception):
    """Polly refused or returned something unusable (the message says which prompt and why)."""


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """Polly's PCM (16-bit LE mono) to μ-law; a trailing odd byte is dropped."""
    return ulaw_encode(pcm[: len(pcm) - len(pcm) % 2])


def choose_engine(client: Any, voice_id: str) -> Engine:
    """``neural`` when Polly lists ``voice_id`` among its neural voices, else ``standard``."""
    token: str | None = None
    while True:
        kwargs: dict[str, str] = {"Engine": "neural"}
        if token is not None:
            kwargs["NextToken"] = token
        page = client.describe_voices(**kwargs)
        if any(voice.get("Id") == voice_id for voice in page.get("Voices", ())):
            return "neural"
        token = page.get("NextToken")
        if not token:
            return "standard"


def render_prompts(
    client: Any,
    *,
    voice_id: str,
    texts: Mapping[PromptName, str],
    out_dir: Path,
    engine: Engine | None = None,
) -> dict[PromptName, Path]:
    """Synthesise every prompt into ``out_dir/<name>.ulaw``; returns the files written. Blocks.

    Args:
        client: a boto3 Polly client.
        voice_id: the Polly voice (``Joanna``, ``Matthew``...).
        texts: prompt name -> text, for every name of :data:`~actors.call.PROMPT_NAMES`.
        out_dir: created when missing.
        engine: force an engine; None chooses (:func:`choose_engine`).

    Raises:
        PromptRenderError: Polly returned no audio for a prompt.
        botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError: the call failed.
    """
    chosen = engine if engine is not None else choose_engine(client, voice_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[PromptName, Path] = {}
    for name in PROMPT_NAMES:
        response = client.synthesize_speech(
            Engine=chosen,
            OutputFormat="pcm",
            SampleRate=_SAMPLE_RATE,
            Text=texts[name],
            TextType="text",
            VoiceId=voice_id,
        )
        stream = response["AudioStream"]
        try:
            pcm = stream.read()
        finally:
            stream.close()
        try:
            clip = check_ulaw(pcm16_to_ulaw(pcm))
        except PromptFormatError as exc:
            raise PromptRenderError(f"{name}: Polly's audio is unusable ({exc})") from exc
        path = out_dir / f"{name}.ulaw"
        partial = out_dir / f".{name}.ulaw.partial"
        partial.write_bytes(clip)
        os.replace(partial, path)
        written[name] = path
    return written
