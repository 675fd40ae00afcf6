"""Credentials: botocore's chain off the event loop, the cache's refresh rule, per-stream pinning."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import pytest

from actors.errors import SonicFatalError
from actors.sonic import (
    BotocoreCredentials,
    CredentialCache,
    PinnedIdentityResolver,
    PoolSettings,
    SonicAudio,
    SonicConnector,
    SonicSettings,
    StaticCredentials,
)

if TYPE_CHECKING:
    from pathlib import Path

    from smithy_aws_core.identity import AWSCredentialsIdentity

pytestmark = pytest.mark.anyio


@pytest.fixture
def isolated_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real profile, no metadata service: botocore sees only what the test sets."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("isolated_aws")
async def test_botocore_chain_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    cache = CredentialCache(BotocoreCredentials(), refresh_margin_s=180)
    identity = await cache.get()
    assert (identity.access_key_id, identity.session_token) == ("AKIDFROMENV", "token")
    assert identity.expiration is None
    await cache.get()
    assert cache.statistics() == {"loads": 1}


@pytest.mark.usefixtures("isolated_aws")
async def test_botocore_chain_reads_a_profile_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "credentials").write_text(
        "[calls]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = s\n"
    )
    identity = await CredentialCache(BotocoreCredentials("calls"), refresh_margin_s=180).get()
    assert identity.access_key_id == "AKIDPROFILE"


@pytest.mark.usefixtures("isolated_aws")
async def test_no_credentials_is_fatal() -> None:
    with pytest.raises(SonicFatalError) as info:
        await CredentialCache(BotocoreCredentials(), refresh_margin_s=180).get()
    assert info.value.kind == "badCredentials"


async def test_cache_reloads_credentials_close_to_expiry() -> None:
    loads: list[datetime] = []

    class Expiring:
        def load(self) -> AWSCredentialsIdentity:
            expiry = datetime.now(tz=UTC) + timedelta(seconds=300 if not loads else 3600)
            loads.append(expiry)
            return StaticCredentials(expiration=expiry).load()

    cache = CredentialCache(Expiring(), refresh_margin_s=180)  # reload below 360 s left
    first = await cache.get()
    second = await cache.get()
    assert first.expiration is not None
    assert second.expiration is not None
    assert second.expiration > first.expiration
    assert len(loads) == 2
    assert cache.statistics() == {"loads": 2}


async def test_pinned_resolver_never_changes_keys() -> None:
    identity = StaticCredentials("AKIDPIN", "x").load()
    resolver = PinnedIdentityResolver(identity)
    assert await resolver.get_identity(properties={}) is identity
    await resolver.invalidate()
    assert await resolver.get_identity(properties={}) is identity


def _real_aws_credentials() -> bool:
    # No network: only look for configured credentials, never resolve remote ones.
    if os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"):
        return True
    import botocore.session

    session = botocore.session.Session()
    return bool(session.full_config.get("profiles", {}).get("default"))


@pytest.mark.aws
@pytest.mark.skipif(not _real_aws_credentials(), reason="needs AWS credentials")
async def test_real_bedrock_session_opens_and_closes() -> None:
    settings = SonicSettings(region=os.environ.get("AWS_REGION", "us-east-1"))
    async with (
        SonicConnector(
            settings, credentials=BotocoreCredentials(), pool=PoolSettings(size=0)
        ) as connector,
        connector.conversation() as conv,
    ):
        for _ in range(50):
            await conv.send_audio(bytes(settings.batch_bytes))
            await anyio.sleep(0.02)
        # A typed question is answered with speech: the session really talks to the model.
        assert await conv.send_user_text("Please say hello.")
        answered = False
        with anyio.move_on_after(30):
            async for event in conv.events:
                if isinstance(event, SonicAudio):
                    answered = True
                    break
        assert answered, "no assistant audio within 30 s"
        stats = conv.statistics()
        assert stats["recoveries"] == 0
        assert stats["session_index"] == 0
