"""The prompt cache: five named 8 kHz μ-law clips, loaded once at start and shared by every call.

Theory of operation:

* :data:`PROMPT_NAMES` are ``greeting``, ``hold``, ``transferring``, ``goodbye`` and ``sorry``.
  :class:`PromptCache` holds each as raw 8 kHz μ-law bytes (what Twilio plays), never empty.
* Each clip comes from, in order: a WAV file named in the configuration (any sample rate, any
  channel count, 8/16/24/32-bit integer PCM: mixed down to mono and resampled to 8 kHz with
  :func:`audiocodec.resample_clip`), else ``<cache_dir>/<name>.ulaw`` when a cache directory is
  configured and holds that file (``sonic-gateway prompts render`` writes them), else the clip
  bundled in the package (``assets/<name>.ulaw``, rendered with espeak-ng + sox by
  ``scripts/make_prompt_clips.sh``).
* The conversions (:func:`ulaw_from_wav`, :func:`check_ulaw`) are sans-I/O and raise
  :class:`PromptFormatError`; :func:`load_prompt_cache` does the file reads and turns every
  failure into a :class:`~actors.errors.ConfigError` naming the configuration key, so a bad file
  stops the start with one line, never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, final

import attrs

from actors.errors import ConfigError
from audiocodec import AudioFormatError, read_wav_mono, resample_clip, ulaw_encode

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "MAX_PROMPT_SECONDS",
    "PROMPT_NAMES",
    "PromptCache",
    "PromptFile",
    "PromptFormatError",
    "PromptName",
    "bundled_prompt",
    "check_ulaw",
    "greeting_system_note",
    "load_prompt_cache",
    "ulaw_from_wav",
]

PromptName = Literal["greeting", "hold", "transferring", "goodbye", "sorry"]
PROMPT_NAMES: Final[tuple[PromptName, ...]] = (
    "greeting",
    "hold",
    "transferring",
    "goodbye",
    "sorry",
)
MAX_PROMPT_SECONDS: Final = 60
"""Longest clip accepted (a prompt is a sentence; this bounds the memory a typo can take)."""

_RATE: Final = 8000
_MAX_BYTES: Final = MAX_PROMPT_SECONDS * _RATE  # μ-law: one byte per sample


@final
class PromptFormatError(ValueError):
    """A prompt's audio cannot be used (the message says why)."""


def bundled_prompt(name: PromptName) -> bytes:
    """The clip of ``name`` shipped in the package, raw 8 kHz μ-law."""
    return (resources.files("actors.call") / "assets" / f"{name}.ulaw").read_bytes()


def greeting_system_note(text: str) -> str:
    """What the system prompt says about the greeting the gateway played before the model spoke.

    Nova Sonic's conversation history must start with a USER turn (an ASSISTANT turn first is
    refused), and at the call's start the caller has said nothing: the greeting cannot be an
    ASSISTANT history turn. The system prompt says it instead, in every session of the call.
    """
    return (
        "When the call connected, the phone system played this greeting to the caller, "
        f'as if you had said it: "{text}". Do not greet the caller again; continue from it.'
    )


def ulaw_from_wav(data: bytes) -> bytes:
    """Convert a WAV file's bytes (any rate and channel count, integer PCM) to 8 kHz μ-law.

    Raises:
        PromptFormatError: not a readable integer PCM WAV, an unsupported rate, no samples,
            or longer than :data:`MAX_PROMPT_SECONDS`.
    """
    try:
        pcm, rate = read_wav_mono(data)
    except AudioFormatError as exc:
        raise PromptFormatError(str(exc)) from exc
    if not pcm:
        raise PromptFormatError("the WAV file holds no samples")
    if len(pcm) // 2 > MAX_PROMPT_SECONDS * rate:
        raise PromptFormatError(f"longer than {MAX_PROMPT_SECONDS} s")
    try:
        pcm8k = resample_clip(pcm, rate, _RATE)
    except ValueError as exc:
        raise PromptFormatError(f"cannot resample {rate} Hz to 8 kHz: {exc}") from exc
    return ulaw_encode(pcm8k)


def check_ulaw(data: bytes) -> bytes:
    """Check a raw μ-law clip is usable (not empty, not too long) and return it.

    Raises:
        PromptFormatError: empty or longer than :data:`MAX_PROMPT_SECONDS`.
    """
    if not data:
        raise PromptFormatError("the clip is empty")
    if len(data) > _MAX_BYTES:
        raise PromptFormatError(f"longer than {MAX_PROMPT_SECONDS} s")
    return data


def _clips_converter(value: Mapping[PromptName, bytes]) -> Mapping[PromptName, bytes]:
    missing = [name for name in PROMPT_NAMES if not value.get(name)]
    if missing:
        raise ValueError(f"prompt clips missing or empty: {', '.join(missing)}")
    return {name: value[name] for name in PROMPT_NAMES}


@attrs.frozen
class PromptCache:
    """The five prompts as raw 8 kHz μ-law, and where each came from.

    Attributes:
        clips: every name of :data:`PROMPT_NAMES` -> its non-empty clip.
        sources: name -> ``"bundled"``, ``"cache_dir"`` or ``"wav"`` (for the start-up log).
    """

    clips: Mapping[PromptName, bytes] = attrs.field(converter=_clips_converter, repr=False)
    sources: Mapping[PromptName, str] = attrs.field(factory=dict)

    @classmethod
    def bundled(cls) -> PromptCache:
        """The cache of the packaged clips only."""
        return cls(
            {name: bundled_prompt(name) for name in PROMPT_NAMES},
            dict.fromkeys(PROMPT_NAMES, "bundled"),
        )

    def get(self, name: PromptName) -> bytes:
        """The clip of ``name``."""
        return self.clips[name]

    @property
    def greeting(self) -> bytes:
        """Played as turn 0 when a call starts."""
        return self.clips["greeting"]

    @property
    def goodbye(self) -> bytes:
        """Played to a call the gateway ends while stopping."""
        return self.clips["goodbye"]

    def durations_ms(self) -> dict[str, int]:
        """Each clip's length in milliseconds (8 bytes per millisecond)."""
        return {name: len(clip) // 8 for name, clip in self.clips.items()}


@attrs.frozen
class PromptFile:
    """A WAV file configured for one prompt.

    Attributes:
        key: the configuration key that named it (for the error message).
        path: the file.
    """

    key: str
    path: Path


def load_prompt_cache(
    wavs: Mapping[PromptName, PromptFile] | None = None,
    *,
    cache_dir: Path | None = None,
    cache_dir_key: str = "prompts.cache_dir",
) -> PromptCache:
    """Load every prompt (module docstring for the order of sources); reads files; blocks.

    Args:
        wavs: prompt name -> the WAV file configured for it.
        cache_dir: a directory of ``<name>.ulaw`` clips; a missing file falls back to the
            bundled clip.
        cache_dir_key: the key that named ``cache_dir`` (for the error message).

    Raises:
        ConfigError: a configured file cannot be read or converted; names its key.
    """
    wavs = wavs or {}
    clips: dict[PromptName, bytes] = {}
    sources: dict[PromptName, str] = {}
    for name in PROMPT_NAMES:
        wav = wavs.get(name)
        if wav is not None:
            clips[name] = _read(
                wav.key, wav.path, ulaw_from_wav, "a 16-bit (or 8/24/32-bit) PCM WAV"
            )
            sources[name] = "wav"
            continue
        cached = None if cache_dir is None else cache_dir / f"{name}.ulaw"
        if cached is not None and cached.is_file():
            clips[name] = _read(cache_dir_key, cached, check_ulaw, f"a raw 8 kHz μ-law {name}.ulaw")
            sources[name] = "cache_dir"
            continue
        clips[name] = bundled_prompt(name)
        sources[name] = "bundled"
    return PromptCache(clips, sources)


def _read(key: str, path: Path, convert: Callable[[bytes], bytes], expected: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"{expected} (cannot read it: {exc.strerror})", str(path)) from exc
    try:
        return convert(data)
    except PromptFormatError as exc:
        raise ConfigError(key, f"{expected} ({exc})", str(path)) from exc
