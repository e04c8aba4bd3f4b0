"""Building clients from Settings: webhook, rate limit, Redis, timeout; bad input is one line."""

from __future__ import annotations

import dataclasses

import pytest

from b24app.config import RateLimit, Settings
from b24app.errors import ConfigError
from b24app.rest import LocalBucket, PortalClient, RedisBucket
from b24app.services import installation_client
from tests.rest.conftest import WEBHOOK


def test_webhook_client_from_env_uses_plan_and_timeout(rsps):
    settings = Settings.from_env(
        {"B24_WEBHOOK_URL": WEBHOOK, "B24APP_PLAN": "enterprise", "B24APP_TIMEOUT": "7"}
    )
    client = PortalClient.from_settings(settings)
    assert isinstance(client.bucket, LocalBucket)
    assert client.rate_limit == RateLimit(per_second=5.0, burst=250)
    assert client.timeout == 7.0
    rsps.add("POST", WEBHOOK + "profile", json={"result": {"ID": "1"}})
    assert client.call("profile").result == {"ID": "1"}
    assert repr(client) == "PortalClient(WebhookAuth(https://portal.bitrix24.com/rest/1/***/))"


def test_redis_url_selects_the_shared_bucket():
    settings = Settings(webhook_url=WEBHOOK, redis_url="redis://127.0.0.1:6379/0")
    assert isinstance(PortalClient.from_settings(settings).bucket, RedisBucket)
    with pytest.raises(ConfigError, match="B24APP_REDIS_URL"):
        PortalClient.from_settings(dataclasses.replace(settings, redis_url="nonsense://x"))


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https://portal.bitrix24.com/",
        "ftp://x/rest/1/c/",
        "https://portal.bitrix24.com/rest/crm.lead.list",
    ],
)
def test_bad_webhook_urls_are_config_errors(url):
    with pytest.raises(ConfigError):
        PortalClient.from_settings(Settings(webhook_url=url or None))


def test_oauth_client_needs_the_app_credentials(tmp_path):
    from b24app.store.crypto import Cipher
    from b24app.store.db import make_engine
    from b24app.store.installations import InstallationStore

    store = InstallationStore(
        make_engine(f"sqlite:///{tmp_path / 'x.db'}"), Cipher(Cipher.generate_key())
    )
    with pytest.raises(ConfigError, match="B24_CLIENT_ID, B24_CLIENT_SECRET"):
        installation_client(store, "m", settings=Settings())
