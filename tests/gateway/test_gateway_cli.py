"""The sonic-gateway command line: help for every command, config errors name the flag or key."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from actors.errors import ConfigError
from gateway.cli import build_parser, main
from gateway.config import backend_chosen, check_emulator_not_production, load_config

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("command", ["serve", "emulator", "replay", "demo", "prompts"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert f"sonic-gateway {command}" in out
    assert len(out.splitlines()) > 3


def test_serve_bad_flag_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--public-url", "voice.example.com"]) == 2
    assert "--public-url" in capsys.readouterr().err


def test_serve_bad_config_names_the_key(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "g.toml"  # type: ignore[operator]
    path.write_text("[limits]\nmax_concurrent_calls = -1\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "limits.max_concurrent_calls" in capsys.readouterr().err


def test_python_dash_m_gateway_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "serve" in done.stdout


PRODUCTION_ENV = {
    "SONIC_GATEWAY_TWILIO__AUTH_TOKEN": "test-auth-token-123",
    "SONIC_GATEWAY_SERVER__PUBLIC_URL": "https://voice.example.com",
}


@pytest.mark.parametrize(
    ("environ", "why"),
    [
        (PRODUCTION_ENV, "twilio.auth_token is set"),
        ({"SONIC_GATEWAY_SERVER__PUBLIC_URL": "https://voice.example.com"}, "public_url is https"),
    ],
)
def test_serve_refuses_the_default_emulator_when_config_looks_like_production(
    environ: dict[str, str],
    why: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "config backend:" in err
    assert why in err
    assert "--backend emulator" in err


def test_emulator_chosen_explicitly_is_allowed_under_production_config(tmp_path: Path) -> None:
    config = load_config(None, PRODUCTION_ENV)
    with pytest.raises(ConfigError):
        check_emulator_not_production(config, backend_chosen=backend_chosen(None, PRODUCTION_ENV))
    # On the command line (serve --backend lands in the environment overlay) or in env:
    chosen = {**PRODUCTION_ENV, "SONIC_GATEWAY_BACKEND": "emulator"}
    assert backend_chosen(None, chosen)
    check_emulator_not_production(load_config(None, chosen), backend_chosen=True)
    # In the config file:
    path = tmp_path / "g.toml"
    path.write_text('backend = "emulator"\n')
    assert backend_chosen(path, PRODUCTION_ENV)
    path.write_text("[limits]\ndrain_timeout_s = 5.0\n")
    assert not backend_chosen(path, PRODUCTION_ENV)


def test_bedrock_and_plain_local_configs_pass_the_production_check() -> None:
    bedrock = load_config(None, {**PRODUCTION_ENV, "SONIC_GATEWAY_BACKEND": "bedrock"})
    check_emulator_not_production(bedrock, backend_chosen=False)
    local = load_config(None, {"SONIC_GATEWAY_SERVER__PUBLIC_URL": "http://127.0.0.1:8080"})
    check_emulator_not_production(local, backend_chosen=False)


def test_drain_timeout_is_configurable() -> None:
    assert load_config(None, {}).limits.drain_timeout_s == 30.0
    env = {"SONIC_GATEWAY_LIMITS__DRAIN_TIMEOUT_S": "2.5"}
    assert load_config(None, env).limits.drain_timeout_s == 2.5
    with pytest.raises(ConfigError, match="DRAIN_TIMEOUT_S"):
        load_config(None, {"SONIC_GATEWAY_LIMITS__DRAIN_TIMEOUT_S": "0"})


def test_serve_with_an_unusable_greeting_file_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "greeting.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really")
    path = tmp_path / "g.toml"
    path.write_text('[prompts]\ngreeting_wav = "greeting.wav"\n[logging]\nlevel = "error"\n')
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "config prompts.greeting_wav: expected a 16-bit" in err
    assert "Traceback" not in err
