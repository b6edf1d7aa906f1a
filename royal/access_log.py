"""Hypercorn's logger, with access-log atoms worked out only when the format names them.

Hypercorn builds every atom of its access-log format for every request, copying each request
and response header and the whole process environment into a dict, to fill in the five or six
that a format uses: about 6% of a small JSON request's CPU in the benchmark. ``royal serve``
installs this logger; the format (``access_log_format`` in hypercorn.toml) is Hypercorn's, with
two differences for safety: credentials (``?ticket=``, Authorization, cookies) are redacted, and
control characters are escaped, so a request cannot forge or break a log line.

``ROYAL_ACCESS_LOG_FORMAT=json`` installs ``JSONAccessLogger`` instead: one JSON object per line
(docs/logging.md). Hypercorn hands ``access()`` the same ASGI scope it gave the app, so Royal's
hooks leave the request id, the user and the resolved client address in it (the ``*_KEY``
names below) for the log line.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_plus

import orjson
from hypercorn.config import Config as HypercornConfig
from hypercorn.logging import Logger
from hypercorn.typing import ResponseSummary, WWWScope

from royal.config import ConfigError

# Scope keys set by Royal's hooks (royal.request_id, royal.auth) for the access log.
REQUEST_ID_KEY = "royal.request_id"
USER_ID_KEY = "royal.user_id"
CLIENT_KEY = "royal.client"  # the client address after trusted-proxy resolution
STATUS_KEY = "royal.status"  # the status sent, for a stream whose client hung up first

REDACTED = "[redacted]"
# Query parameters that carry credentials; Royal itself accepts only ``ticket``.
SECRET_PARAMETERS = frozenset(
    {"ticket", "token", "key", "auth", "authorization", "jwt", "sig", "signature", "password"}
)
_SECRET_SUFFIXES = ("token", "secret", "password", "_key", "apikey")
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


class AccessLogger(Logger):
    def atoms(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> Mapping[str, str]:
        return LazyAtoms(request, response, request_time)


class JSONAccessLogger(AccessLogger):
    """One JSON object per request line, with a fixed set of fields (``access_log_format``
    does not apply). Hypercorn's ``[time] [pid] [INFO]`` prefix is dropped so that each line
    parses as it is, unless a ``logconfig`` sets the formatters."""

    def __init__(self, config: HypercornConfig) -> None:
        super().__init__(config)
        own_handlers = config.logconfig is None and config.logconfig_dict is None
        if self.access_logger is not None and isinstance(config.accesslog, str) and own_handlers:
            for handler in self.access_logger.handlers:
                handler.setFormatter(logging.Formatter("%(message)s"))

    async def access(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> None:
        logger = self.access_logger
        if logger is not None and logger.isEnabledFor(logging.INFO):
            logger.info(json_line(request, response, request_time))


FORMATS: dict[str, type[Logger]] = {"text": AccessLogger, "json": JSONAccessLogger}


def logger_class(access_log_format: str) -> type[Logger]:
    """The logger for ``ROYAL_ACCESS_LOG_FORMAT``: ``text`` (hypercorn.toml's format) or
    ``json``."""
    try:
        return FORMATS[str(access_log_format).lower()]
    except KeyError:
        raise ConfigError(
            f"ROYAL_ACCESS_LOG_FORMAT={access_log_format!r}: use one of {', '.join(FORMATS)}."
        ) from None


def json_line(request: WWWScope, response: ResponseSummary | None, request_time: float) -> str:
    """The JSON access-log line for one request (or WebSocket handshake)."""
    scope: Mapping[str, Any] = request
    length = None
    request_id = scope.get(REQUEST_ID_KEY)
    if response is None:
        status = scope.get(STATUS_KEY)  # the client left before the response ended
    else:
        status = response["status"]
        for name, value in response.get("headers", ()):
            name = name.lower()
            if name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"x-request-id" and request_id is None:
                request_id = value.decode("latin1")
    user_agent = None
    for name, value in request["headers"]:
        if name.lower() == b"user-agent":
            user_agent = value.decode("latin1")
            break
    client = scope.get(CLIENT_KEY)
    if client is None:
        peer = request.get("client")
        client = peer[0] if peer else None
    query = request["query_string"]
    line = orjson.dumps(
        {
            "time": _utc_now(),
            "type": request["type"],
            "method": request["method"] if request["type"] == "http" else "GET",
            "path": request["path"],
            "query": redact_query(query.decode(errors="backslashreplace")) if query else None,
            "status": status,
            "bytes": length,
            "duration_ms": round(request_time * 1000, 3),
            "client": client,
            "request_id": request_id,
            "user_id": scope.get(USER_ID_KEY),
            "user_agent": user_agent,
            "protocol": request.get("http_version"),
        }
    )
    # orjson escapes what JSON requires (C0, quote, backslash); terminals and line splitters
    # also act on DEL, C1 (NEL, CSI), U+2028/9 and the bidi overrides: escape those too.
    if not line.isascii() or b"\x7f" in line:
        line = _UNSAFE_JSON.sub(_json_escaped, line)
    return line.decode()


def redact_query(query: str) -> str:
    """``query`` with the values of credential parameters replaced by ``[redacted]``."""
    if "=" not in query:
        return query
    parts = query.split("&")
    redacted = False
    for index, part in enumerate(parts):
        name, equals, value = part.partition("=")
        if equals and value and _is_secret(name):
            parts[index] = f"{name}={REDACTED}"
            redacted = True
    return "&".join(parts) if redacted else query


def _is_secret(name: str) -> bool:
    if "%" in name or "+" in name:  # tick%65t= is ticket= to the app
        name = unquote_plus(name)
    name = name.strip().lower()
    return name in SECRET_PARAMETERS or name.endswith(_SECRET_SUFFIXES)


def _redact_url(url: str) -> str:
    path, question, query = url.partition("?")
    return path + question + redact_query(query) if question else url


def escape(text: str) -> str:
    """``text`` made safe inside one (quoted) field of a text log line: control characters
    (C0, DEL, C1, the Unicode line and paragraph separators, bidi overrides) become ``\\xhh``
    or ``\\uhhhh``, and ``"`` and ``\\`` are backslashed, as Apache's and nginx's logs do."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return _UNSAFE_TEXT.sub(_text_escaped, text)


_UNSAFE_TEXT = re.compile(r'[\x00-\x1f\x7f-\x9f"\\\u200e\u200f\u2028-\u202e\u2066-\u2069]')
_UNSAFE_JSON = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]")


def _text_escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in '"\\':
        return "\\" + char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_escaped(match: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(match.group().decode())


class _Clock:
    """ISO 8601 UTC timestamps, the date and time formatted once per second."""

    second = -1
    prefix = ""


def _utc_now() -> str:
    now = time.time()
    second = int(now)
    if second != _Clock.second:
        _Clock.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _Clock.second = second
    return f"{_Clock.prefix}.{int((now - second) * 1000):03d}Z"


class LazyAtoms(Mapping[str, str]):
    """Hypercorn's atoms (``h``, ``r``, ``s``, ``{name}i``, ...); unknown ones read ``-``."""

    def __init__(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> None:
        self.request = request
        self.response = response
        self.request_time = request_time

    def __getitem__(self, key: str) -> str:
        if key.startswith("{") and len(key) > 3 and key[-2] == "}":
            return self._variable(key[1:-2].lower(), key[-1])
        atom = _ATOMS.get(key)
        return "-" if atom is None else atom(self)

    def __iter__(self) -> Iterator[str]:
        return iter(_ATOMS)

    def __len__(self) -> int:
        return len(_ATOMS)

    def _variable(self, name: str, kind: str) -> str:
        if kind == "i":
            value = _header(self.request["headers"], name)
        elif kind == "o":
            value = _header(self.response.get("headers", []) if self.response else [], name)
        elif kind == "e":
            return next((v for k, v in os.environ.items() if k.lower() == name), "-")
        else:
            return "-"
        if name in SECRET_HEADERS and value != "-":
            return REDACTED
        return escape(value)

    @property
    def method(self) -> str:
        return self.request["method"] if self.request["type"] == "http" else "GET"

    @property
    def protocol(self) -> str:
        return self.request.get("http_version", "ws")

    @property
    def query(self) -> str:
        return redact_query(self.request["query_string"].decode(errors="backslashreplace"))

    @property
    def path_with_query(self) -> str:
        query = self.query
        return self.request["path"] + ("?" + query if query else "")

    def remote_addr(self) -> str:
        client = self.request.get("client")
        if not client:
            return "-"
        return f"{client[0]}:{client[1]}" if len(client) == 2 else str(client[0])

    def status(self) -> str:
        return "-" if self.response is None else str(self.response["status"])

    def status_phrase(self) -> str:
        try:
            return HTTPStatus(int(self.status())).phrase
        except ValueError:
            return "-"


def _header(headers: Iterable[tuple[bytes, bytes]], name: str) -> str:
    wanted = name.encode("latin1")
    for key, value in headers:
        if key.lower() == wanted:
            return value.decode("latin1")
    return "-"


_ATOMS: dict[str, Callable[[LazyAtoms], str]] = {
    "h": LazyAtoms.remote_addr,
    "l": lambda a: "-",
    "t": lambda a: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "r": lambda a: escape(f"{a.method} {a.request['path']} {a.protocol}"),
    "R": lambda a: escape(f"{a.method} {a.path_with_query} {a.protocol}"),
    "s": LazyAtoms.status,
    "st": LazyAtoms.status_phrase,
    "S": lambda a: a.request["scheme"],
    "m": lambda a: escape(a.method),
    "U": lambda a: escape(a.request["path"]),
    "Uq": lambda a: escape(a.path_with_query),
    "q": lambda a: escape(a.query),
    "H": lambda a: a.protocol,
    "b": lambda a: a["{content-length}o"],
    "B": lambda a: a["{content-length}o"],
    "f": lambda a: _redact_url(a["{referer}i"]),
    "a": lambda a: a["{user-agent}i"],
    "T": lambda a: str(int(a.request_time)),
    "D": lambda a: str(int(a.request_time * 1_000_000)),
    "L": lambda a: f"{a.request_time:.6f}",
    "p": lambda a: f"<{os.getpid()}>",
}
