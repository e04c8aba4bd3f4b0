"""`/healthz` answers 200 while the database answers and 503 when it does not."""

from __future__ import annotations

from b24app.config import Settings
from b24app.store.crypto import Cipher
from handlers import create_app


class _NoJobs:
    """The health check never enqueues anything."""


def _app(tmp_path):
    settings = Settings.from_env(
        {
            "B24APP_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
            "B24APP_SECRET_KEY": Cipher.generate_key(),
        }
    )
    return create_app(settings, jobs=_NoJobs())


def test_healthz_is_ok_while_the_database_answers(tmp_path) -> None:
    response = _app(tmp_path).test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_is_503_when_the_database_is_gone(tmp_path) -> None:
    app = _app(tmp_path)
    ctx = app.extensions["b24app"]
    ctx.engine.dispose()
    (tmp_path / "app.db").unlink()
    (tmp_path / "app.db").mkdir()  # a directory where the file was: SQLite cannot open it
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"
