"""How run state becomes bytes: strict JSON with a serializer hook, optionally encrypted.

The kernel serialises (and, with a key, encrypts) every state file and checkpoint payload
itself, so stores only ever see opaque bytes.

Policy for values that JSON cannot hold: they are never dropped or silently converted.
``str``, ``int``, ``float``, ``bool``, ``None``, lists and dicts with string keys are JSON
as they are. Tuples, dicts with other keys, sets, ``bytes``, ``datetime``/``date``,
``Decimal`` and ``UUID`` are written as tagged objects and come back as the same type.
Anything else raises :class:`~pyagent.errors.StateError` at save time, naming the task (or
state key) and the path inside the value, unless a serializer is registered for its type
with :func:`register_serializer`.

Encryption: when ``PYAGENT_STATE_KEY`` holds a Fernet key (several comma-separated keys
allow rotation: the first encrypts, any decrypts) payloads are encrypted with the
``cryptography`` package (``pip install 'pyagent-kernel[encryption]'``). Make a key with::

    python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pyagent.errors import ConfigurationError, StateError
from pyagent.model.events import EventPayload

KEY_ENV = "PYAGENT_STATE_KEY"
TAG = "__pyagent__"

# Store payloads start with one byte saying how the rest is encoded.
_PLAIN = b"J"
_SEALED = b"F"


@dataclass(frozen=True)
class Serializer:
    """Turns values of ``type`` into JSON-able data (``encode``) and back (``decode``)."""

    type: type
    name: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


_by_type: dict[type, Serializer] = {}
_by_name: dict[str, Serializer] = {}


def register_serializer(
    type_: type,
    encode: Callable[[Any], Any],
    decode: Callable[[Any], Any],
    *,
    name: str | None = None,
) -> None:
    """Let values of ``type_`` (and its subclasses) be saved in state files and checkpoints.

    ``encode(value)`` returns JSON-able data (it may itself contain registered types);
    ``decode(data)`` rebuilds the value. ``name`` identifies the type in saved files
    (default ``module.QualName``): keep it stable, or old files cannot be read.

    Example, for a pydantic model::

        register_serializer(Report, lambda r: r.model_dump(mode="json"), Report.model_validate)
    """
    if not isinstance(type_, type):
        raise ConfigurationError(f"register_serializer() needs a type, got {type_!r}")
    tag = name or f"{type_.__module__}.{type_.__qualname__}"
    ser = Serializer(type_, tag, encode, decode)
    _by_type[type_] = ser
    _by_name[tag] = ser


def unregister_serializer(type_: type) -> None:
    """Forget the serializer of ``type_`` (tests)."""
    ser = _by_type.pop(type_, None)
    if ser is not None:
        _by_name.pop(ser.name, None)


def _find_serializer(t: type) -> Serializer | None:
    ser = _by_type.get(t)
    if ser is not None:
        return ser
    for base in t.__mro__[1:]:
        ser = _by_type.get(base)
        if ser is not None:
            return ser
    return None


def _type_name(t: type) -> str:
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def to_jsonable(value: Any, where: str) -> Any:
    """``value`` as JSON-able data; ``where`` names it in the error if it cannot be saved."""
    t = type(value)
    if t is str or t is int or t is bool or t is float or value is None:
        return value
    if t is list:
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if t is dict:
        if TAG not in value and all(type(k) is str for k in value):
            return {k: to_jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
        return {TAG: "dict", "items": [
            [to_jsonable(k, f"{where} key {k!r}"), to_jsonable(v, f"{where}[{k!r}]")]
            for k, v in value.items()
        ]}
    if t is tuple:
        return {TAG: "tuple", "value": [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    ser = _find_serializer(t)
    if ser is None:
        raise StateError(
            f"{where} is a {_type_name(t)}, which cannot be saved as JSON: return JSON-friendly "
            "data (dict, list, str, number, bool, None) from the agent, or register a "
            f"serializer: pyagent.codec.register_serializer({t.__qualname__}, encode, decode)"
        )
    try:
        data = ser.encode(value)
    except Exception as exc:
        raise StateError(f"{where}: the serializer for {_type_name(t)} failed: {exc}") from exc
    return {TAG: ser.name, "value": to_jsonable(data, where)}


def _revive(obj: dict[str, Any]) -> Any:
    tag = obj.get(TAG)
    if tag is None:
        return obj
    if tag == "tuple":
        return tuple(obj["value"])
    if tag == "dict":
        return {_hashable(k): v for k, v in obj["items"]}
    ser = _by_name.get(tag)
    if ser is None:
        raise StateError(
            f"saved data contains a value of type {tag!r} but no serializer is registered for it: "
            "call pyagent.codec.register_serializer(...) for that type before loading"
        )
    try:
        return ser.decode(obj["value"])
    except Exception as exc:  # e.g. decimal.InvalidOperation, which is no ValueError
        raise StateError(f"a saved {tag} value cannot be read back ({type(exc).__name__}: {exc}): "
                         "the data is damaged") from None


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def dumps(data: Any) -> bytes:
    """Compact JSON bytes of already JSON-able data."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode()


def loads(raw: bytes | str, what: str) -> Any:
    """Parse JSON written by :func:`dumps`, reviving tagged values; StateError if it is not valid."""
    try:
        return json.loads(raw, object_hook=_revive)
    except StateError as exc:
        raise StateError(f"{what}: {exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise StateError(f"{what} is corrupt or truncated (not valid JSON: {exc})") from None


# -- built-in serializers for common non-JSON types --------------------------------------------

register_serializer(set, lambda s: list(s), lambda v: set(map(_hashable, v)), name="set")
register_serializer(frozenset, lambda s: list(s), lambda v: frozenset(map(_hashable, v)), name="frozenset")
register_serializer(bytes, lambda b: base64.b64encode(b).decode(), base64.b64decode, name="bytes")
register_serializer(_dt.datetime, lambda d: d.isoformat(), _dt.datetime.fromisoformat, name="datetime")
register_serializer(_dt.date, lambda d: d.isoformat(), _dt.date.fromisoformat, name="date")
register_serializer(Decimal, str, Decimal, name="decimal")
register_serializer(uuid.UUID, str, uuid.UUID, name="uuid")
register_serializer(EventPayload, dict, EventPayload, name="event")  # an emitted event as run input


# -- encryption ---------------------------------------------------------------------------------

_cipher_cache: tuple[str, Any] | None = None


def _cipher() -> Any:
    """The Fernet (MultiFernet) for PYAGENT_STATE_KEY, or None when no key is set."""
    global _cipher_cache
    raw = os.environ.get(KEY_ENV, "").strip()
    if not raw:
        return None
    if _cipher_cache is not None and _cipher_cache[0] == raw:
        return _cipher_cache[1]
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError:
        raise ConfigurationError(
            f"{KEY_ENV} is set, so state is to be encrypted, but the 'cryptography' package is "
            "not installed: pip install 'pyagent-kernel[encryption]' (or unset the variable)"
        ) from None
    try:
        keys = [Fernet(k.strip().encode()) for k in raw.split(",") if k.strip()]
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"{KEY_ENV} is not a valid Fernet key (32 url-safe base64-encoded bytes): make one with "
            "python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\""
        ) from None
    cipher = MultiFernet(keys)
    _cipher_cache = (raw, cipher)
    return cipher


def encryption_enabled() -> bool:
    """True when PYAGENT_STATE_KEY is set (and usable)."""
    return _cipher() is not None


def encrypt_text(data: bytes) -> str | None:
    """Fernet token for ``data`` when a key is configured, else None."""
    cipher = _cipher()
    if cipher is None:
        return None
    token: bytes = cipher.encrypt(data)
    return token.decode()


def decrypt_text(token: str, what: str) -> bytes:
    """Decrypt a Fernet token; StateError when no key is set or the key is wrong."""
    cipher = _cipher()
    if cipher is None:
        raise StateError(f"{what} is encrypted: set {KEY_ENV} to the key it was saved with")
    from cryptography.fernet import InvalidToken

    try:
        plain: bytes = cipher.decrypt(token.encode())
    except InvalidToken:
        raise StateError(
            f"{what} could not be decrypted: {KEY_ENV} is not the key it was saved with "
            "(or the data was altered)"
        ) from None
    return plain


def seal(data: bytes) -> bytes:
    """A store payload: encrypted when a key is configured, tagged either way."""
    token = encrypt_text(data)
    return _PLAIN + data if token is None else _SEALED + token.encode()


def unseal(blob: bytes, what: str) -> bytes:
    """The plain bytes of a store payload written by :func:`seal`."""
    head, body = blob[:1], blob[1:]
    if head == _PLAIN:
        return body
    if head == _SEALED:
        return decrypt_text(body.decode("ascii", "replace"), what)
    raise StateError(f"{what} is not a pyagent payload (unknown encoding {head!r}): corrupt data?")
