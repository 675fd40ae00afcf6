"""``prompts render``: Polly through botocore's Stubber on a real client (no network)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from actors.call import PROMPT_NAMES, load_prompt_cache
from audiocodec import tone, ulaw_decode, ulaw_encode
from gateway.cli import _cmd_prompts, build_parser
from gateway.config import PromptsConfig
from gateway.prompt_render import render_prompts

if TYPE_CHECKING:
    from pathlib import Path


def _client() -> Any:
    return boto3.client(
        "polly", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def _pcm(index: int) -> bytes:
    return tone(8000, 300.0 + 100 * index, 400 + 20 * index)  # distinct per prompt


def _stub_synthesis(stubber: Stubber, engine: str, voice: str, texts: dict[str, str]) -> None:
    for index, name in enumerate(PROMPT_NAMES):
        audio = _pcm(index)
        stubber.add_response(
            "synthesize_speech",
            {
                "AudioStream": StreamingBody(io.BytesIO(audio), len(audio)),
                "ContentType": "audio/pcm",
                "RequestCharacters": len(texts[name]),
            },
            expected_params={
                "Engine": engine,
                "OutputFormat": "pcm",
                "SampleRate": "8000",
                "Text": texts[name],
                "TextType": "text",
                "VoiceId": voice,
            },
        )


def test_render_writes_ulaw_clips_the_cache_loads(tmp_path: Path) -> None:
    client = _client()
    texts = {name: PromptsConfig().text(name) for name in PROMPT_NAMES}
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_voices",
            {"Voices": [{"Id": "Ruth"}], "NextToken": "page2"},
            expected_params={"Engine": "neural"},
        )
        stubber.add_response(
            "describe_voices",
            {"Voices": [{"Id": "Joanna", "SupportedEngines": ["neural", "standard"]}]},
            expected_params={"Engine": "neural", "NextToken": "page2"},
        )
        _stub_synthesis(stubber, "neural", "Joanna", texts)
        written = render_prompts(client, voice_id="Joanna", texts=texts, out_dir=tmp_path / "out")
        stubber.assert_no_pending_responses()
    assert sorted(written) == sorted(PROMPT_NAMES)
    cache = load_prompt_cache(cache_dir=tmp_path / "out")
    assert set(cache.sources.values()) == {"cache_dir"}
    for index, name in enumerate(PROMPT_NAMES):
        assert cache.get(name) == ulaw_encode(_pcm(index))
        decoded = np.frombuffer(ulaw_decode(cache.get(name)), dtype="<i2")
        assert len(decoded) == len(_pcm(index)) // 2
    assert not list((tmp_path / "out").glob(".*partial"))


def test_cli_falls_back_to_standard_and_reads_texts_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "g.toml"
    config.write_text('[prompts]\nhold_text = "One moment please."\n')
    texts = {name: PromptsConfig().text(name) for name in PROMPT_NAMES}
    texts["hold"] = "One moment please."
    args = build_parser().parse_args(
        ["prompts", "render", "--voice", "Ivy", "--out", str(tmp_path), "--config", str(config)]
    )
    client = _client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_voices", {"Voices": [{"Id": "Joanna"}]}, expected_params={"Engine": "neural"}
        )
        _stub_synthesis(stubber, "standard", "Ivy", texts)
        assert _cmd_prompts(args, client) == 0
        stubber.assert_no_pending_responses()
    out = capsys.readouterr().out
    assert "hold:" in out
    assert (tmp_path / "hold.ulaw").read_bytes() == ulaw_encode(_pcm(1))


def test_cli_reports_polly_errors_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(
        ["prompts", "render", "--voice", "Nobody", "--out", str(tmp_path), "--engine", "neural"]
    )
    client = _client()
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "synthesize_speech",
            service_error_code="InvalidParameterValue",
            service_message="bad voice",
        )
        assert _cmd_prompts(args, client) == 1
    err = capsys.readouterr().err
    assert err.startswith("sonic-gateway: prompts render:")
    assert "bad voice" in err
    assert "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_empty_audio_is_an_error_not_an_empty_clip(tmp_path: Path) -> None:
    client = _client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "synthesize_speech", {"AudioStream": StreamingBody(io.BytesIO(b""), 0)}
        )
        with pytest.raises(Exception, match="greeting: Polly's audio is unusable"):
            render_prompts(
                client,
                voice_id="Joanna",
                texts=dict.fromkeys(PROMPT_NAMES, "x"),
                out_dir=tmp_path,
                engine="standard",
            )
