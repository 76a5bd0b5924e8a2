"""Store URLs -> connection targets, without importing SQLAlchemy.

Accepted forms (the scheme picks the driver through the ``pyagent.stores`` entry points):

- ``sqlite://checkpoints.db``: the seed's form, a file relative to the working directory;
  ``sqlite://data/cp.db`` and ``sqlite://~/cp.db`` work the same way.
- ``sqlite:///relative.db`` and ``sqlite:////abs/path.db``: SQLAlchemy's forms.
- ``postgresql://user:password@host:5432/db`` (or ``postgres://``), run on asyncpg. Extra query
  parameters: ``schema`` (tables live in that schema, created if missing), ``sslmode``
  (libpq-style, passed to asyncpg as ``ssl``), ``connect_timeout`` (seconds, default 10).

Relative SQLite paths are made absolute when the store is created, so a later ``chdir`` does
not move the database.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from .errors import StoreURLError

SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite")
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
DEFAULT_CONNECT_TIMEOUT = 10.0
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Query parameters SQLAlchemy's asyncpg dialect hands to asyncpg.connect() as they are.
_ASYNCPG_PARAMS = ("host", "port", "user", "password", "passfile", "database", "command_timeout",
                   "statement_cache_size", "prepared_statement_cache_size", "target_session_attrs")
# libpq run-time parameters that asyncpg takes as server settings instead.
_SERVER_SETTINGS = ("application_name", "search_path", "timezone", "statement_timeout")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for error messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@dataclass(frozen=True)
class SQLiteTarget:
    """An SQLite database file, by absolute path."""

    url: str
    path: str

    @property
    def sqlalchemy_url(self) -> str:
        return "sqlite+aiosqlite:///" + self.path

    @property
    def sync_sqlalchemy_url(self) -> str:
        return "sqlite+pysqlite:///" + self.path


@dataclass(frozen=True)
class PostgresTarget:
    """A PostgreSQL database reached over asyncpg, plus the schema the tables live in."""

    url: str
    sqlalchemy_url: str  # postgresql+asyncpg://..., password included (never log it)
    schema: str | None
    connect_args: dict[str, object] = field(default_factory=dict)

    @property
    def display(self) -> str:
        return redact(self.url)


def _scheme(url: str) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise StoreURLError(
            f"store URL {url!r} has no scheme: use 'sqlite://checkpoints.db', "
            "'sqlite:////absolute/path.db' or 'postgresql://user@host:5432/db'"
        )
    return url.split("://", 1)[0].lower()


def parse_sqlite(url: str) -> SQLiteTarget:
    """The database file a ``sqlite://`` URL names, made absolute against the working directory."""
    scheme = _scheme(url)
    if scheme not in SQLITE_SCHEMES:
        raise StoreURLError(f"{url!r} is not an SQLite URL: it must start with 'sqlite://'")
    rest = url.split("://", 1)[1]
    rest, _, query = rest.partition("?")
    if query:
        raise StoreURLError(
            f"SQLite store URL {url!r} has query parameters ({query!r}); none are supported: "
            "remove them (WAL mode, synchronous=NORMAL and a busy timeout are always set)"
        )
    # sqlite:///rel.db and sqlite:////abs.db are SQLAlchemy's forms; sqlite://rel.db is the seed's.
    path = rest[1:] if rest.startswith("/") else rest
    if path in ("", ":memory:") or path.startswith("file:"):
        raise StoreURLError(
            f"SQLite store URL {url!r} names no database file: give a file, e.g. "
            "'sqlite://checkpoints.db' (relative to the working directory) or "
            "'sqlite:////var/lib/app/checkpoints.db'; for checkpoints that live only in this "
            "process use 'memory://'"
        )
    path = os.path.abspath(os.path.expanduser(path))
    return SQLiteTarget(url=url, path=path)


def parse_postgres(url: str) -> PostgresTarget:
    """The asyncpg URL, schema and connect arguments a ``postgresql://`` URL names."""
    scheme = _scheme(url)
    if scheme not in POSTGRES_SCHEMES:
        raise StoreURLError(
            f"{redact(url)!r} is not a PostgreSQL URL: it must start with 'postgresql://'"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise StoreURLError(f"PostgreSQL store URL {redact(url)!r} is malformed: {exc}") from None
    schema: str | None = None
    connect_args: dict[str, object] = {"timeout": DEFAULT_CONNECT_TIMEOUT}
    passthrough: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "schema":
            if not _IDENTIFIER.match(value):
                raise StoreURLError(
                    f"schema {value!r} in {redact(url)!r} is not a plain SQL identifier: "
                    "use letters, digits and underscores (at most 63, not starting with a digit)"
                )
            schema = value
        elif key == "sslmode":
            if value not in _SSLMODES:
                raise StoreURLError(
                    f"sslmode {value!r} in {redact(url)!r} is not valid: use one of "
                    + ", ".join(_SSLMODES)
                )
            connect_args["ssl"] = value
        elif key == "connect_timeout":
            try:
                timeout = float(value)
            except ValueError:
                timeout = -1.0
            if timeout <= 0:
                raise StoreURLError(
                    f"connect_timeout {value!r} in {redact(url)!r} must be a positive number of seconds"
                )
            connect_args["timeout"] = timeout
        elif key in _SERVER_SETTINGS:
            settings = connect_args.setdefault("server_settings", {})
            assert isinstance(settings, dict)
            settings[key] = value
        elif key in _ASYNCPG_PARAMS:
            passthrough.append((key, value))
        else:
            known = ", ".join(("schema", "sslmode", "connect_timeout", *_SERVER_SETTINGS, *_ASYNCPG_PARAMS))
            raise StoreURLError(
                f"query parameter {key!r} in PostgreSQL store URL {redact(url)!r} is not supported: "
                f"use one of {known}"
            )
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in passthrough)
    # Built by hand: urlunsplit drops the "//" of a URL without a host (libpq's
    # postgresql:///db, a local socket), which SQLAlchemy then cannot parse.
    sa_url = f"postgresql+asyncpg://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
    return PostgresTarget(url=url, sqlalchemy_url=sa_url, schema=schema, connect_args=connect_args)


def describe_postgres(target: PostgresTarget) -> str:
    """Where a PostgreSQL URL points, for "what to check" in error messages."""
    parts = urlsplit(target.url)
    host = parts.hostname or "the local socket"
    port = parts.port or 5432
    db = unquote(parts.path.lstrip("/")) or (parts.username or "(default)")
    user = unquote(parts.username) if parts.username else "(current OS user)"
    return f"host {host} port {port}, database {db!r}, user {user!r}"
