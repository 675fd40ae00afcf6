"""The sonic-gateway command line: help for every command, config errors name the flag or key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.cli import build_parser, main


@pytest.mark.parametrize("command", ["serve", "emulator", "replay", "demo"])
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
