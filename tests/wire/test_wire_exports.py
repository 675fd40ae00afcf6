"""The wire package's public surface, and its promise to import no I/O framework."""

from __future__ import annotations

import subprocess
import sys

import actors.wire
import actors.wire.nova_sonic
import actors.wire.twilio_media
import actors.wire.twilio_stream


def test_every_exported_name_exists_and_is_listed_once() -> None:
    names = actors.wire.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(actors.wire, name) is not None


def test_package_exports_every_module_export() -> None:
    modules = (actors.wire.nova_sonic, actors.wire.twilio_media, actors.wire.twilio_stream)
    exported = set(actors.wire.__all__)
    for module in modules:
        assert set(module.__all__) <= exported, module.__name__


def test_importing_the_wire_models_pulls_in_no_anyio_and_no_sdk() -> None:
    code = (
        "import sys, actors.wire; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('anyio', 'asyncio', 'aws_sdk_bedrock_runtime', 'smithy_core', 'awscrt', 'boto3')]; "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
