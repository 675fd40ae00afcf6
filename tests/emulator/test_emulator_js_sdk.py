"""Interoperability: the AWS SDK for JavaScript v3 holds a conversation with the emulator.

``@aws-sdk/client-bedrock-runtime`` (the version pinned in ``tests/emulator/js/package-lock.json``)
with its default request handler, NodeHttp2Handler, which sends a graceful GOAWAY right after the
response headers; ``tests/emulator/js/conversation.mjs`` is the client. The packages are installed
once with ``npm ci`` into ``.cache/js-interop/<hash of the lock file>/`` (git-ignored) and reused
while the lock file is unchanged; the first install takes a few seconds and needs the npm registry.
Skipped where Node.js >= 20 or npm is not installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import msgspec
import pytest

from gateway.emulator import Emulator, EmulatorSettings, run_emulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

JS_DIR: Final = Path(__file__).parent / "js"
CACHE: Final = Path(__file__).resolve().parents[2] / ".cache" / "js-interop"
SCRIPT: Final = "conversation.mjs"
MODEL_ID: Final = "amazon.nova-2-sonic-v1:0"
FAST = EmulatorSettings(
    answer_ms=400, think_ms=20, end_of_turn_silence_ms=300, close_grace_s=2.0, output_chunk_ms=100
)


def _node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are not installed (e.g. apt-get install nodejs npm)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < 20:
        pytest.skip(f"the AWS SDK for JavaScript v3 needs Node.js >= 20, found {version.stdout}")
    return node, npm


@pytest.fixture(scope="module")
def js_client() -> Path:
    """The directory holding the installed SDK and the client script (installed on first use)."""
    _node, npm = _node_tools()
    manifest = [(JS_DIR / name).read_bytes() for name in ("package.json", "package-lock.json")]
    key = hashlib.sha256(b"\0".join(manifest)).hexdigest()[:16]
    target = CACHE / key
    if not (target / "node_modules" / ".package-lock.json").is_file():
        staging = CACHE / f".{key}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(JS_DIR / name, staging / name)
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed ({result.returncode}): {result.stderr[-2000:]}")
        try:
            staging.rename(target)
        except OSError:  # another run installed it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    # The script lives in the repository; node resolves its imports next to where it runs.
    shutil.copyfile(JS_DIR / SCRIPT, target / SCRIPT)
    return target


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with run_emulator(FAST) as emu:
        yield emu


async def run_client(
    directory: Path,
    emulator: Emulator,
    *,
    model_id: str = MODEL_ID,
    secret: str = "dummy",
    turns: int = 2,
) -> list[dict[str, Any]]:
    """Run the JavaScript client against ``emulator``; its output lines, decoded."""
    node = shutil.which("node")
    assert node is not None
    env = {
        # Nothing else from the environment: no AWS profile or bearer token may leak in.
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "NODE_NO_WARNINGS": "1",
        "NODE_EXTRA_CA_CERTS": str(emulator.ca_path),
        "ENDPOINT": emulator.endpoint_uri,
        "REGION": "us-east-1",
        "MODEL_ID": model_id,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": secret,
        "TURNS": str(turns),
    }
    with anyio.fail_after(30):
        result = await anyio.run_process([node, SCRIPT], cwd=directory, env=env, check=False)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, stderr
    lines = [msgspec.json.decode(line) for line in result.stdout.splitlines() if line.strip()]
    assert lines[-1] == {"done": True}, stderr
    return lines[:-1]


async def test_js_sdk_holds_a_two_turn_conversation(js_client: Path, emulator: Emulator) -> None:
    lines = await run_client(js_client, emulator)
    assert [line for line in lines if "error" in line] == []
    assert lines[0] == {"response": 200}
    events = lines[1:]
    transcripts = [
        e["content"] for e in events if e["event"] == "textOutput" and e.get("role") == "USER"
    ]
    assert transcripts == ["caller turn 1", "caller turn 2"]
    audio_ends = [e for e in events if e["event"] == "contentEnd" and e.get("type") == "AUDIO"]
    assert [e["stopReason"] for e in audio_ends] == ["END_TURN", "END_TURN"]
    assert sum(1 for e in events if e["event"] == "audioOutput") >= 2
    assert events[0]["event"] == "completionStart"
    assert events[-1]["event"] == "completionEnd"
    (session,) = emulator.sessions
    assert session.end_reason == "closed"
    assert session.turns == 2
    assert session.barge_ins == 0
    assert session.input_events[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
    # The client's GOAWAY came right after the response headers; the stream lived on.
    assert emulator.statistics()["goaways_received"] == 1


async def test_js_sdk_gets_bedrocks_errors(js_client: Path, emulator: Emulator) -> None:
    (wrong_secret,) = await run_client(js_client, emulator, secret="not-the-secret", turns=1)
    assert wrong_secret["error"] == "InvalidSignatureException"
    assert wrong_secret["status"] == 403
    assert wrong_secret["message"].startswith("The request signature we calculated")
    (unknown_model,) = await run_client(
        js_client, emulator, model_id="amazon.nova-3-sonic-v9:0", turns=1
    )
    assert unknown_model == {
        "error": "ValidationException",
        "status": 400,
        "message": "The provided model identifier is invalid.",
    }
    assert emulator.sessions == []
    assert emulator.statistics()["rejected_requests"] == 2
