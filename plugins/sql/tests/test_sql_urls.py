"""Store URLs as users write them, and the ones that cannot name a database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyagent_sql import StoreURLError
from pyagent_sql.urls import parse_postgres, parse_sqlite, redact


def test_the_seed_form_is_a_file_relative_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_sqlite("sqlite://checkpoints.db").path == str(tmp_path / "checkpoints.db")
    assert parse_sqlite("sqlite://data/cp.db").path == str(tmp_path / "data" / "cp.db")


def test_sqlalchemy_forms_are_relative_with_three_slashes_and_absolute_with_four(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_sqlite("sqlite:///relative.db").path == str(tmp_path / "relative.db")
    assert parse_sqlite("sqlite:////var/lib/app/cp.db").path == "/var/lib/app/cp.db"
    assert parse_sqlite("sqlite+aiosqlite:////var/cp.db").path == "/var/cp.db"


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_sqlite("sqlite://~/cp.db").path == os.path.join(str(tmp_path), "cp.db")


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///", "sqlite://:memory:", "sqlite:///:memory:", "sqlite:///file:x"]
)
def test_urls_without_a_database_file_are_refused_with_the_alternatives(url: str) -> None:
    with pytest.raises(StoreURLError) as info:
        parse_sqlite(url)
    message = str(info.value)
    assert "sqlite://checkpoints.db" in message
    assert "memory://" in message


def test_sqlite_query_parameters_are_refused() -> None:
    with pytest.raises(StoreURLError, match="none are supported"):
        parse_sqlite("sqlite:///cp.db?timeout=5")


def test_postgres_urls_run_on_asyncpg_and_keep_their_parts() -> None:
    t = parse_postgres("postgresql://app:pw@db.internal:6543/orders")
    assert t.sqlalchemy_url == "postgresql+asyncpg://app:pw@db.internal:6543/orders"
    assert t.schema is None
    assert parse_postgres("postgres://u@h/d").sqlalchemy_url == "postgresql+asyncpg://u@h/d"


def test_postgres_query_parameters_schema_sslmode_and_timeout() -> None:
    t = parse_postgres("postgresql://u@h/d?schema=tenant_1&sslmode=require&connect_timeout=3&application_name=x")
    assert t.schema == "tenant_1"
    # application_name is a libpq run-time parameter: asyncpg takes it as a server setting
    # (passed through in the URL, asyncpg.connect() refused it).
    assert t.connect_args == {"ssl": "require", "timeout": 3.0, "server_settings": {"application_name": "x"}}
    assert t.sqlalchemy_url == "postgresql+asyncpg://u@h/d"


def test_postgres_urls_without_a_host_keep_their_double_slash() -> None:
    """libpq's local-socket forms: ``postgresql:///db`` and a socket directory in ``?host=``."""
    assert parse_postgres("postgresql:///orders").sqlalchemy_url == "postgresql+asyncpg:///orders"
    t = parse_postgres("postgresql:///orders?host=/var/run/postgresql&user=app")
    assert t.sqlalchemy_url == "postgresql+asyncpg:///orders?host=/var/run/postgresql&user=app"
    from sqlalchemy.engine import make_url

    url = make_url(t.sqlalchemy_url)
    assert url.database == "orders" and url.query == {"host": "/var/run/postgresql", "user": "app"}


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://u@h/d?schema=bad-name", "not a plain SQL identifier"),
        ("postgresql://u@h/d?sslmode=sometimes", "use one of disable"),
        ("postgresql://u@h/d?connect_timeout=-1", "positive number of seconds"),
        ("postgresql://u:pw@h:notaport/d", "malformed"),
        ("postgresql://u:pw@h/d?pool_size=5", "query parameter 'pool_size' .* is not supported: use one of schema"),
    ],
)
def test_bad_postgres_parameters_name_the_setting(url: str, words: str) -> None:
    with pytest.raises(StoreURLError, match=words) as info:
        parse_postgres(url)
    assert "pw" not in str(info.value)


def test_passwords_never_reach_messages() -> None:
    assert redact("postgresql://app:s3cret@host:5432/db") == "postgresql://app:***@host:5432/db"
    assert redact("postgresql://app@host/db") == "postgresql://app@host/db"
    assert "s3cret" not in parse_postgres("postgresql://app:s3cret@host/db").display
