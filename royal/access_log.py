"""Hypercorn's logger, with access-log atoms worked out only when the format names them.

Hypercorn builds every atom of its access-log format for every request, copying each request
and response header and the whole process environment into a dict, to fill in the five or six
that a format uses: about 6% of a small JSON request's CPU in the benchmark. ``royal serve``
installs this logger; the format (``access_log_format`` in hypercorn.toml) and its output are
unchanged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus

from hypercorn.logging import Logger
from hypercorn.typing import ResponseSummary, WWWScope


class AccessLogger(Logger):
    def atoms(
        self, request: WWWScope, response: ResponseSummary | None, request_time: float
    ) -> Mapping[str, str]:
        return LazyAtoms(request, response, request_time)


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
            return _header(self.request["headers"], name)
        if kind == "o":
            return _header(self.response.get("headers", []) if self.response else [], name)
        if kind == "e":
            return next((v for k, v in os.environ.items() if k.lower() == name), "-")
        return "-"

    @property
    def method(self) -> str:
        return self.request["method"] if self.request["type"] == "http" else "GET"

    @property
    def protocol(self) -> str:
        return self.request.get("http_version", "ws")

    @property
    def path_with_query(self) -> str:
        query = self.request["query_string"].decode()
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
    "r": lambda a: f"{a.method} {a.request['path']} {a.protocol}",
    "R": lambda a: f"{a.method} {a.path_with_query} {a.protocol}",
    "s": LazyAtoms.status,
    "st": LazyAtoms.status_phrase,
    "S": lambda a: a.request["scheme"],
    "m": lambda a: a.method,
    "U": lambda a: a.request["path"],
    "Uq": lambda a: a.path_with_query,
    "q": lambda a: a.request["query_string"].decode(),
    "H": lambda a: a.protocol,
    "b": lambda a: a["{content-length}o"],
    "B": lambda a: a["{content-length}o"],
    "f": lambda a: a["{referer}i"],
    "a": lambda a: a["{user-agent}i"],
    "T": lambda a: str(int(a.request_time)),
    "D": lambda a: str(int(a.request_time * 1_000_000)),
    "L": lambda a: f"{a.request_time:.6f}",
    "p": lambda a: f"<{os.getpid()}>",
}
