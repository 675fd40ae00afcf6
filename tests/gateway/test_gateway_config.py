"""GatewayConfig: TOML, SONIC_GATEWAY_* precedence, and errors that name the key as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.errors import ConfigError
from gateway.config import GatewayConfig, load_config

EXAMPLE = Path(__file__).parents[2] / "docs" / "gateway.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    config = load_config(None, {})
    assert config == GatewayConfig()
    assert config.server.host == "127.0.0.1"
    assert config.limits.max_concurrent_calls == 60
    assert config.limits.ws_max_message_bytes == 65536
    assert config.debug.enabled is False
    assert config.server.public_media_url() is None


def test_example_file_loads() -> None:
    config = GatewayConfig.from_toml(EXAMPLE)
    assert config.server.public_media_url() == "wss://voice.example.com/twilio/media"


def test_toml_values_and_public_urls(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'backend = "bedrock"\n'
        '[server]\nport = 9000\npublic_url = "https://voice.example.com/gw/"\n'
        "[limits]\nmax_concurrent_calls = 3\n"
        '[call]\ngreeting_wav = "hello.wav"\n',
    )
    (tmp_path / "hello.wav").write_bytes(b"RIFF")
    config = GatewayConfig.from_toml(path)
    assert config.backend == "bedrock"
    assert config.server.port == 9000
    assert config.server.public_url == "https://voice.example.com/gw"
    assert config.server.public_media_url() == "wss://voice.example.com/gw/twilio/media"
    assert config.server.public_voice_url() == "https://voice.example.com/gw/twilio/voice"
    assert config.limits.max_concurrent_calls == 3
    assert config.call.greeting_wav == tmp_path / "hello.wav"  # relative to the file


def test_env_overrides_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nmax_concurrent_calls = 3\n[debug]\nenabled = false\n")
    config = load_config(
        path,
        {
            "SONIC_GATEWAY_LIMITS__MAX_CONCURRENT_CALLS": "7",
            "SONIC_GATEWAY_DEBUG__ENABLED": "true",
            "SONIC_GATEWAY_SONIC__INPUT_RATE": "8000",
            "SONIC_GATEWAY_TWILIO__AUTH_TOKEN": "0123456789abcdef",
            "SONIC_GATEWAY_SERVER__PUBLIC_URL": "https://voice.example.com",
            "SONIC_GATEWAY_DEBUG__BEARER_TOKEN": "",  # empty: not set
            "UNRELATED": "ignored",
        },
    )
    assert config.limits.max_concurrent_calls == 7
    assert config.debug.enabled is True
    assert config.debug.bearer_token is None
    assert config.sonic.input_rate == 8000
    assert config.twilio.auth_token == "0123456789abcdef"


def test_from_env_alone() -> None:
    config = GatewayConfig.from_env({"SONIC_GATEWAY_BACKEND": "bedrock"})
    assert config.backend == "bedrock"


@pytest.mark.parametrize(
    ("toml", "key", "expected_part"),
    [
        ("[server]\nport = 70000\n", "server.port", "<= 65535"),
        ('[server]\nport = "80"\n', "server.port", "int"),
        ('backend = "cloud"\n', "backend", "'emulator', 'bedrock'"),
        ('[logging]\nformat = "xml"\n', "logging.format", "'json', 'console', 'auto'"),
        ("[sonic]\ninput_rate = 44100\n", "sonic.input_rate", "8000, 16000, 24000"),
        ("[sonic]\naudio_batch_ms = 30\n", "sonic.audio_batch_ms", "multiple of 20"),
        ("[sonic]\nspeech_batch_ms = 120\n", "sonic.speech_batch_ms", "<= 100"),
        ("[call]\nmin_barge_in_speech_ms = 10\n", "call.min_barge_in_speech_ms", ">= 20"),
        ("[limits]\nmax_concurrent_calls = 0\n", "limits.max_concurrent_calls", ">= 1"),
        ("[limits]\nhandshake_timeout_s = 0\n", "limits.handshake_timeout_s", "> 0"),
        ("[limits]\nmax_pending_sockets = 0\n", "limits.max_pending_sockets", ">= 1"),
        ("[twilio]\nstream_token_ttl_s = 1\n", "twilio.stream_token_ttl_s", ">= 5.0"),
        ('[twilio]\naccount_sid = "AC1"\n', "twilio.account_sid", "regex"),
        ('[twilio]\nstream_token_key = "short"\n', "twilio.stream_token_key", "at least 8"),
        ("[server]\nhots = 1\n", "server.hots", "known key"),
        ("colour = 1\n", "colour", "known key"),
        ("server = 1\n", "server", "[server] table"),
        ('[server]\npublic_url = "ftp://x"\n', "server.public_url", "https://"),
        ('[server]\npublic_url = "https://x/?a=1"\n', "server.public_url", "without query"),
        ('[twilio]\nauth_token = "0123456789"\n', "server.public_url", "required when"),
        ('[debug]\nbearer_token = "short"\n', "debug.bearer_token", "at least 8"),
        ('[sonic]\nendpoint_uri = "http://x"\n', "sonic.endpoint_uri", "https://"),
        ('[call]\ngreeting_wav = "missing.wav"\n', "call.greeting_wav", "existing file"),
    ],
)
def test_toml_errors_name_the_key(tmp_path: Path, toml: str, key: str, expected_part: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GatewayConfig.from_toml(write(tmp_path, toml))
    assert caught.value.key == key
    assert expected_part in caught.value.expected


@pytest.mark.parametrize(
    ("environ", "key", "expected_part"),
    [
        ({"SONIC_GATEWAY_SERVER__PORT": "http"}, "SONIC_GATEWAY_SERVER__PORT", "int"),
        ({"SONIC_GATEWAY_DEBUG__ENABLED": "maybe"}, "SONIC_GATEWAY_DEBUG__ENABLED", "bool"),
        ({"SONIC_GATEWAY_SERVER_PORT": "1"}, "SONIC_GATEWAY_SERVER_PORT", "<SECTION>__<KEY>"),
        ({"SONIC_GATEWAY_SERVER__NOPE": "1"}, "SONIC_GATEWAY_SERVER__NOPE", "<SECTION>__<KEY>"),
        (
            {"SONIC_GATEWAY_TWILIO__AUTH_TOKEN": "0123456789"},
            "SONIC_GATEWAY_SERVER__PUBLIC_URL",
            "required when",
        ),
        (
            {"SONIC_GATEWAY_SERVER__PUBLIC_URL": "voice.example.com"},
            "SONIC_GATEWAY_SERVER__PUBLIC_URL",
            "https://",
        ),
    ],
)
def test_env_errors_name_the_variable(
    environ: dict[str, str], key: str, expected_part: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ)
    assert caught.value.key == key
    assert expected_part in caught.value.expected


def test_bad_toml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        GatewayConfig.from_toml(write(tmp_path, "[server\n"))
    assert caught.value.key.endswith("gateway.toml")
    with pytest.raises(ConfigError) as missing:
        GatewayConfig.from_toml(tmp_path / "nope.toml")
    assert "readable" in missing.value.expected


def test_secrets_never_echoed_in_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        GatewayConfig.from_toml(write(tmp_path, '[debug]\nbearer_token = " hunter2-value "\n'))
    assert "hunter2" not in str(caught.value)


def test_sonic_settings_conversion() -> None:
    config = load_config(None, {"SONIC_GATEWAY_SONIC__VOICE_ID": "tiffany"})
    settings = config.sonic.to_sonic_settings(endpoint_uri="https://127.0.0.1:1")
    assert settings.voice_id == "tiffany"
    assert settings.endpoint_uri == "https://127.0.0.1:1"
    assert config.sonic.to_pool_settings().size == config.sonic.pool_size


def test_playback_chunk_must_fit_in_the_lead(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        GatewayConfig.from_toml(
            write(tmp_path, "[call]\nplayback_lead_ms = 100\nplayback_chunk_ms = 200\n")
        )
    assert caught.value.key == "call.playback_chunk_ms"
    assert "playback_lead_ms" in caught.value.expected
    ok = GatewayConfig.from_toml(write(tmp_path, "[call]\nplayback_chunk_ms = 60\n"))
    assert (ok.call.playback_lead_ms, ok.call.playback_chunk_ms) == (200, 60)


def test_prompts_section_paths_resolve_and_are_checked(tmp_path: Path) -> None:
    (tmp_path / "hold.wav").write_bytes(b"RIFF")
    (tmp_path / "rendered").mkdir()
    path = write(tmp_path, '[prompts]\nhold_wav = "hold.wav"\ncache_dir = "rendered"\n')
    config = GatewayConfig.from_toml(path)
    assert config.prompts.wav("hold") == tmp_path / "hold.wav"
    assert config.prompts.cache_dir == tmp_path / "rendered"
    assert config.prompts.wav("greeting") is None
    assert config.prompts.text("greeting") == "Hello, how can I help?"
    env = load_config(None, {"SONIC_GATEWAY_PROMPTS__SORRY_TEXT": "Oops."})
    assert env.prompts.text("sorry") == "Oops."
    for toml, key, expected in [
        ('[prompts]\nsorry_wav = "missing.wav"\n', "prompts.sorry_wav", "existing file"),
        ('[prompts]\ncache_dir = "nowhere"\n', "prompts.cache_dir", "existing directory"),
        ('[prompts]\nhold_text = ""\n', "prompts.hold_text", "length"),
        (
            '[call]\ngreeting_wav = "hold.wav"\n[prompts]\ngreeting_wav = "hold.wav"\n',
            "call.greeting_wav",
            "older name",
        ),
    ]:
        with pytest.raises(ConfigError) as caught:
            GatewayConfig.from_toml(write(tmp_path, toml))
        assert caught.value.key == key
        assert expected in caught.value.expected
