"""Provider credentials: the ``--auth`` TOML file, read by the controller only.

Why it looks like this: credentials must never reach a worker (environment,
arguments, frames), a log, the report or an output file, and must never be
sent to an origin other than the one they were issued for. So they are held
in a :class:`Credentials` object bound to one *origin* (scheme, host, port,
from the provider's ``base_url``); the downloader attaches them only to
requests for that origin and drops them for good on a redirect elsewhere.
``repr`` never shows a value, and error messages name keys, never values.

File format, one table per provider::

    [chatgpt]
    base_url = "https://chatgpt.com"
    headers = { Authorization = "Bearer ..." }
    [claude]
    cookies = { sessionKey = "..." }
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from zexport.errors import UsageError

Origin = tuple[str, str, int]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Origin | None:
    """``(scheme, host, port)`` of an absolute http(s) URL, or None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def host_label(url: str) -> str:
    """``host[:port]`` of a URL for messages: never a path or query (they may be signed)."""
    origin = origin_of(url)
    if origin is None:
        return "an invalid URL"
    scheme, host, port = origin
    return host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (where plain http is harmless)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Credentials:
    """One provider's secrets, bound to the origin of its ``base_url``."""

    provider: str
    base_url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    cookies: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def origin(self) -> Origin | None:
        """Where these credentials may be sent (None: nowhere)."""
        return origin_of(self.base_url) if self.base_url else None

    @property
    def has_secrets(self) -> bool:
        """True when there is anything to authenticate with."""
        return bool(self.headers or self.cookies)

    def request_headers(self) -> dict[str, str]:
        """The headers to add to a request for :attr:`origin` (``Cookie`` built by hand)."""
        out = dict(self.headers)
        if self.cookies:
            out["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return out

    def secret_values(self) -> list[str]:
        """Every secret string (for tests and redaction checks)."""
        return [*self.headers.values(), *self.cookies.values()]


def _str_table(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"auth file: {where} must be a table of strings")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise UsageError(f"auth file: {where}.{key} must be a string")
        if any(c in item for c in "\r\n\x00") or any(c in key for c in "\r\n\x00:; ="):
            raise UsageError(f"auth file: {where}.{key} contains characters not allowed in "
                             "an HTTP header")
        out[str(key)] = item
    return out


def parse_auth(text: str, source: str = "auth file") -> dict[str, Credentials]:
    """Parse auth TOML text into ``{provider: Credentials}`` (UsageError if malformed)."""
    # Imported here: every controller imports this module, few runs have an auth file.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The decoder's message names a line and column, never the text of a value.
        raise UsageError(f"{source} is not valid TOML: {exc}") from None
    creds: dict[str, Credentials] = {}
    for provider, table in doc.items():
        if not isinstance(table, dict):
            raise UsageError(f"{source}: [{provider}] must be a table")
        unknown = sorted(set(table) - {"base_url", "headers", "cookies"})
        if unknown:
            raise UsageError(f"{source}: [{provider}] has unknown keys: {', '.join(unknown)}")
        base_url = table.get("base_url")
        if base_url is not None and (not isinstance(base_url, str)
                                     or origin_of(base_url) is None):
            raise UsageError(f"{source}: [{provider}] base_url must be an http(s) URL")
        creds[provider] = Credentials(
            provider=provider, base_url=base_url,
            headers=_str_table(table.get("headers"), f"[{provider}] headers"),
            cookies=_str_table(table.get("cookies"), f"[{provider}] cookies"),
        )
    return creds


def load_auth(path: str | None) -> dict[str, Credentials]:
    """Read ``--auth FILE`` (or nothing); errors are usage errors naming the file."""
    if not path:
        return {}
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read auth file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"auth file {path} is not UTF-8") from None
    return parse_auth(text, f"auth file {os.path.basename(path)}")


def auth_file_warning(path: str | None) -> str | None:
    """A warning when others may read the credentials file (as ssh warns about keys).

    Not an error: the run goes on (the file may sit on a file system without
    POSIX modes), but the user hears that a token is exposed. None when the
    file is private, or on a system without POSIX permissions.
    """
    if not path or os.name != "posix":
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & 0o077:
        return (f"auth file {path} can be read by other users (mode {mode & 0o777:03o});"
                f" run: chmod 600 {path}")
    return None

