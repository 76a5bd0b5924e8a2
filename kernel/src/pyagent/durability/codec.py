"""How run state becomes bytes: strict JSON with a serializer hook, optionally encrypted.

The kernel serialises (and, with a key, encrypts) every state file and checkpoint payload
itself, so stores only ever see opaque bytes.

Policy for values that JSON cannot hold: they are never dropped or silently converted.
``str``, ``int``, ``float``, ``bool``, ``None``, lists and dicts with string keys are JSON
as they are. Tuples, dicts with other keys, sets, ``bytes``, ``datetime``/``date``,
``Decimal`` and ``UUID`` are written as tagged objects and come back as the same type.
Anything else raises :class:`~pyagent.errors.StateError` at save time, naming the task (or
state key) and the path inside the value, unless a serializer is registered for its type
with :func:`register_serializer`. So do values JSON cannot carry back: integers longer than
Python's int-to-text limit (4,300 digits), and values nested more than ``MAX_DEPTH`` levels
deep or containing themselves. Strings with lone surrogates (``os.fsdecode`` makes them from
file names that are not UTF-8) are written as ``\\udcxx`` escapes and come back unchanged.

Store payloads start with one byte saying how they are encoded: ``S`` plain JSON after its
SHA-256 checksum (an edited or damaged row is detected), ``R`` a Fernet token under a key
derived for one run (checkpoints: a row copied into another run does not decrypt there),
``F`` a Fernet token under the key itself (run headers, and checkpoints written by earlier
versions), and ``J`` plain JSON without a checksum (written by earlier versions; still read).

Encryption: when ``PYAGENT_STATE_KEY`` holds a Fernet key (several comma-separated keys
allow rotation: the first encrypts, any decrypts) payloads are encrypted with the
``cryptography`` package (``pip install 'pyagent-kernel[encryption]'``). With a key set,
data that is *not* encrypted is refused when read, since anyone with write access to the
store (but no key) could have put it there; to read data saved before the key was set, opt
in with ``allow_plaintext=True`` or ``PYAGENT_STATE_ALLOW_PLAINTEXT=1``. Make a key with::

    python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
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
ALLOW_PLAINTEXT_ENV = "PYAGENT_STATE_ALLOW_PLAINTEXT"
TAG = "__pyagent__"
#: Containers nested deeper than this are refused when saved: reading them back would hit
#: the interpreter's recursion limit, leaving a run that cannot be resumed.
MAX_DEPTH = 400
# Bits of the longest integer Python turns into text by default (4,300 decimal digits).
_MAX_INT_BITS = 14_280

# Store payloads start with one byte saying how the rest is encoded.
_PLAIN = b"J"  # JSON, no checksum (written by earlier versions)
_SUMMED = b"S"  # the SHA-256 digest of the JSON (32 bytes), then the JSON
_SEALED = b"F"  # a Fernet token
_BOUND = b"R"  # a Fernet token under a key derived for one run


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
    try:
        return _fast(value, 0)
    except Exception:
        pass  # something to refuse: encoded again, naming the path to it
    try:
        return _to_jsonable(value, where, 0)
    except RecursionError:  # a serializer that recursed on its own, or a very deep stack
        raise _too_deep(where) from None


class _Refused(Exception):
    """Raised by :func:`_fast` at anything :func:`_to_jsonable` would refuse."""


def _fast(value: Any, depth: int) -> Any:
    # _to_jsonable without naming where each value is: the common case, where nothing is
    # refused, builds no path strings. Anything it would refuse raises, and the caller
    # encodes the value again with _to_jsonable, whose error names the path.
    t = type(value)
    if t is str or t is bool or t is float or value is None:
        return value
    if t is int:
        if value.bit_length() > _MAX_INT_BITS:
            raise _Refused
        return value
    if depth >= MAX_DEPTH:
        raise _Refused
    if t is list:
        depth += 1
        return [_fast(v, depth) for v in value]
    if t is dict:
        if TAG not in value and all(type(k) is str for k in value):
            depth += 1
            return {k: _fast(v, depth) for k, v in value.items()}
        depth += 3
        return {TAG: "dict", "items": [[_fast(k, depth), _fast(v, depth)] for k, v in value.items()]}
    if t is tuple:
        depth += 2
        return {TAG: "tuple", "value": [_fast(v, depth) for v in value]}
    ser = _find_serializer(t)
    if ser is None:
        raise _Refused
    return {TAG: ser.name, "value": _fast(ser.encode(value), depth + 1)}


def _too_deep(where: str) -> StateError:
    if len(where) > 100:  # the path down a deep value is as long as the value is deep
        where = where[:80] + "[...]"
    return StateError(
        f"{where} is nested more than {MAX_DEPTH} levels deep, or contains itself (a circular "
        "reference): it cannot be saved as JSON; return flatter data from the agent"
    )


def _to_jsonable(value: Any, where: str, depth: int) -> Any:
    # ``depth`` counts the JSON nesting written so far: tagged values nest deeper than the
    # value itself (a tuple is an object holding an array).
    t = type(value)
    if t is str or t is bool or t is float or value is None:
        return value
    if t is int:
        if value.bit_length() > _MAX_INT_BITS:
            raise StateError(
                f"{where} is an integer of {value.bit_length()} bits, too long to save as JSON "
                "(Python converts at most 4,300 digits to text): return it as a string, "
                "e.g. str(n) after sys.set_int_max_str_digits(0), or hex(n)"
            )
        return value
    if depth >= MAX_DEPTH:
        raise _too_deep(where)
    if t is list:
        depth += 1
        return [_to_jsonable(v, f"{where}[{i}]", depth) for i, v in enumerate(value)]
    if t is dict:
        if TAG not in value and all(type(k) is str for k in value):
            depth += 1
            return {k: _to_jsonable(v, f"{where}[{k!r}]", depth) for k, v in value.items()}
        depth += 3
        return {TAG: "dict", "items": [
            [_to_jsonable(k, f"{where} key {k!r}", depth), _to_jsonable(v, f"{where}[{k!r}]", depth)]
            for k, v in value.items()
        ]}
    if t is tuple:
        depth += 2
        return {TAG: "tuple", "value": [_to_jsonable(v, f"{where}[{i}]", depth) for i, v in enumerate(value)]}
    ser = _find_serializer(t)
    if ser is None:
        raise StateError(
            f"{where} is a {_type_name(t)}, which cannot be saved as JSON: return JSON-friendly "
            "data (dict, list, str, number, bool, None) from the agent, or register a "
            f"serializer: pyagent.register_serializer({t.__qualname__}, encode, decode)"
        )
    try:
        data = ser.encode(value)
    except RecursionError:
        raise _too_deep(where) from None
    except Exception as exc:
        raise StateError(f"{where}: the serializer for {_type_name(t)} failed: {exc}") from exc
    return {TAG: ser.name, "value": _to_jsonable(data, where, depth + 1)}


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
            "call pyagent.register_serializer(...) for that type before loading"
        )
    try:
        return ser.decode(obj["value"])
    except Exception as exc:  # e.g. decimal.InvalidOperation, which is no ValueError
        raise StateError(f"a saved {tag} value cannot be read back ({type(exc).__name__}: {exc}): "
                         "the data is damaged") from None


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode


def dumps(data: Any, where: str = "the data") -> bytes:
    """Compact JSON bytes of already JSON-able data (StateError naming ``where`` if impossible)."""
    try:
        return _encode(data).encode()
    except UnicodeEncodeError:
        # Lone surrogates (os.fsdecode of a non-UTF-8 file name) have no UTF-8 form: written
        # as \udcxx escapes instead, which json.loads turns back into the same string.
        return json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=True).encode()
    except RecursionError:
        raise _too_deep(where) from None
    except ValueError as exc:  # e.g. an integer over the int-to-text limit in a serializer's output
        raise StateError(f"{where} cannot be saved as JSON: {exc}") from None


def loads(raw: bytes | str, what: str) -> Any:
    """Parse JSON written by :func:`dumps`, reviving tagged values; StateError if it is not valid."""
    try:
        return json.loads(raw, object_hook=_revive)
    except StateError as exc:
        raise StateError(f"{what}: {exc}") from None
    except RecursionError:
        raise StateError(f"{what} is nested too deeply to read (more than the interpreter's "
                         "recursion limit allows): corrupt or not written by pyagent") from None
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
_run_ciphers: dict[tuple[str, str], Any] = {}  # (PYAGENT_STATE_KEY, run id) -> MultiFernet
_RUN_CIPHERS_KEPT = 256


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


def _run_cipher(run_id: str) -> Any:
    """The MultiFernet under keys derived from each PYAGENT_STATE_KEY key for ``run_id``
    (HMAC-SHA256 of the run id), or None when no key is set.

    A Fernet token says nothing about where it belongs, so one run's encrypted checkpoint,
    copied into another run's rows by someone with write access but no key, would decrypt
    there and its outputs flow into that run. Under a key of its run's own it does not.
    """
    if _cipher() is None:
        return None
    raw = os.environ.get(KEY_ENV, "").strip()
    cached = _run_ciphers.get((raw, run_id))
    if cached is not None:
        return cached
    import hmac

    from cryptography.fernet import Fernet, MultiFernet

    label = b"pyagent checkpoint key for run\x00" + run_id.encode("utf-8", "surrogatepass")
    keys = [Fernet(base64.urlsafe_b64encode(hmac.digest(base64.urlsafe_b64decode(k.strip()), label, "sha256")))
            for k in raw.split(",") if k.strip()]
    cipher = MultiFernet(keys)
    if len(_run_ciphers) >= _RUN_CIPHERS_KEPT:
        _run_ciphers.clear()
    _run_ciphers[(raw, run_id)] = cipher
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


def plaintext_allowed(allow: bool | None = None) -> bool:
    """Whether unencrypted data may be read while a key is set (``allow``, else the environment)."""
    if allow is not None:
        return allow
    return os.environ.get(ALLOW_PLAINTEXT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def refuse_plaintext(what: str, allow: bool | None = None) -> None:
    """StateError when a key is set and unencrypted data is not explicitly allowed."""
    if encryption_enabled() and not plaintext_allowed(allow):
        raise StateError(
            f"{what} is not encrypted, but {KEY_ENV} is set: refused, because anyone who can "
            "write to the storage without the key could have put it there. If it was saved "
            "before encryption was turned on, read it with allow_plaintext=True (or "
            f"{ALLOW_PLAINTEXT_ENV}=1) once to migrate it"
        )


def seal(data: bytes, *, bind: str | None = None) -> bytes:
    """A store payload: encrypted when a key is configured, else checksummed; tagged either way.

    ``bind`` (a run id): encrypt under a key derived for that run, so the payload only
    decrypts as that run's (:func:`unseal` with the same ``bind``).
    """
    if not os.environ.get(KEY_ENV):  # no key (the common case): one look at the environment
        return _SUMMED + hashlib.sha256(data).digest() + data
    cipher = None if bind is None else _run_cipher(bind)
    if cipher is not None:
        sealed: bytes = cipher.encrypt(data)
        return _BOUND + sealed
    token = encrypt_text(data)
    if token is None:
        return _SUMMED + hashlib.sha256(data).digest() + data
    return _SEALED + token.encode()


def unseal(blob: bytes, what: str, *, allow_plaintext: bool | None = None, bind: str | None = None) -> bytes:
    """The plain bytes of a store payload written by :func:`seal`.

    StateError when it is damaged, encrypted with another key or for another run than
    ``bind``, or not encrypted while a key is set (unless ``allow_plaintext``).
    """
    head = blob[:1]
    if head == _BOUND:
        return _decrypt_bound(blob[1:], what, bind)
    if head == _SEALED:
        return decrypt_text(blob[1:].decode("ascii", "replace"), what)
    if head == _SUMMED:
        if os.environ.get(KEY_ENV):  # no key: nothing to refuse (one look at the environment)
            refuse_plaintext(what, allow_plaintext)
        digest, body = blob[1:33], blob[33:]
        if hashlib.sha256(body).digest() != digest:
            raise StateError(f"{what} failed its checksum: the stored data was altered or damaged")
        return body
    if head == _PLAIN:
        refuse_plaintext(what, allow_plaintext)
        return blob[1:]
    raise StateError(f"{what} is not a pyagent payload (unknown encoding {head!r}): corrupt data?")


def _decrypt_bound(token: bytes, what: str, bind: str | None) -> bytes:
    if bind is None:
        raise StateError(f"{what} is encrypted for one run, and was read without saying which")
    cipher = _run_cipher(bind)
    if cipher is None:
        raise StateError(f"{what} is encrypted: set {KEY_ENV} to the key it was saved with")
    from cryptography.fernet import InvalidToken

    try:
        plain: bytes = cipher.decrypt(token)
    except InvalidToken:
        raise StateError(
            f"{what} could not be decrypted: {KEY_ENV} is not the key it was saved with, or the "
            f"row was copied from another run's checkpoints (or altered)"
        ) from None
    return plain
