"""Fetching recordings from URLs handed to us by CRMs: bounded and SSRF-safe.

A CRM payload is untrusted input: its URL may point at an internal service. Only
http(s) is allowed; every hop of a redirect is resolved once, checked, and connected to
at exactly the address that was checked (no second DNS lookup a rebinding name could
answer differently). Non-public addresses are refused unless listed in
CALLQA_ALLOW_PRIVATE_URLS (tests, on-prem CRMs); link-local and cloud metadata addresses
always are. Time (per socket operation and for the whole download) and size are bounded.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import socket
import threading
import time
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from callqa.errors import AudioError
from callqa.settings import (
    ALLOW_PRIVATE_URLS_ENV,
    IPAddress,
    UrlAllowList,
    never_fetched,
    plain_address,
    private_url_allow_list,
)

MAX_BYTES = 200 * 1024 * 1024  # ~3.5 h of 16-bit 8 kHz stereo WAV
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
DEADLINE_S = 300  # the whole download: connects, redirects, headers and body
MAX_REDIRECTS = 3
_DEFAULT_PORTS = {"http": 80, "https": 443}


def safe_url(url: str) -> str:
    """The URL without query string or credentials (CRMs put tokens there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 literal
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # an invalid port; the error message says so
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal is its own answer)."""
    if (literal := _literal(host)) is not None:
        return [literal]
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def _pinned_request(url: str, allow: UrlAllowList) -> tuple[str, str, str | None]:
    """Check `url` and resolve its host once: (the URL with the host replaced by the checked
    address, the Host header, the TLS server name). Sending to that URL means the HTTP
    client does no DNS lookup of its own, so a rebinding name cannot swap the address."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise AudioError(f"{safe_url(url)}: only http and https URLs are fetched")
    host = parts.hostname
    if not host:
        raise AudioError(f"{safe_url(url)}: URL has no host")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise AudioError(f"{safe_url(url)}: invalid URL ({exc})") from None
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise AudioError(f"{safe_url(url)}: cannot resolve host ({exc})") from exc
    if not addresses:
        raise AudioError(f"{safe_url(url)}: cannot resolve host (no address)")
    # Every answer is checked, not only the one connected to: a name that mixes public
    # and internal answers is refused outright.
    for address in addresses:
        address = plain_address(address)  # ::ffff:127.0.0.1 is 127.0.0.1, and listed as that
        if never_fetched(address):
            raise AudioError(
                f"{safe_url(url)}: refusing to fetch from non-public address {address} "
                f"(link-local and cloud metadata addresses are never fetched, "
                f"whatever {ALLOW_PRIVATE_URLS_ENV} lists)"
            )
        if not address.is_global and not allow.allows(host, address):
            raise AudioError(
                f"{safe_url(url)}: refusing to fetch from non-public address {address} "
                f"(to allow it, list it or the host in {ALLOW_PRIVATE_URLS_ENV}, "
                f"e.g. {ALLOW_PRIVATE_URLS_ENV}={address})"
            )
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    userinfo = parts.netloc.rpartition("@")[0]  # requests turns it into basic auth
    netloc = f"{userinfo}@{literal}:{port}" if userinfo else f"{literal}:{port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    name = f"[{host}]" if ":" in host else host
    host_header = name if port == _DEFAULT_PORTS[parts.scheme] else f"{name}:{port}"
    # TLS (SNI, certificate check) is for the name; an IP literal is its own name.
    server_hostname = host if parts.scheme == "https" and _literal(host) is None else None
    return pinned, host_header, server_hostname


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class _Deadline:
    """The whole download's deadline. Socket timeouts bound each read, not the download: a
    server dripping a byte every few seconds (headers or body) never trips them. So a timer
    shuts the download's connections down when time is up, which ends any blocked read at
    once; `expired` tells that apart from the server closing."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return self.ends - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        # A duplicate descriptor of the connection: TLS wrapping detaches `sock` itself,
        # and shutdown() acts on the connection whichever descriptor it is called on.
        with self._lock:
            self._sockets.append(sock.dup())
            if self.expired:
                self._shut()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:  # under the lock, so no descriptor is closed meanwhile
        for sock in self._sockets:
            with contextlib.suppress(OSError):  # the connection is gone already
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


# The deadline of the fetch running in this thread/context, for the connections it opens.
_current_deadline: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "callqa_fetch_deadline", default=None
)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:  # connected, not yet wrapped in TLS
        sock = super()._new_conn()
        if (deadline := _current_deadline.get()) is not None:
            deadline.watch(sock)
        return sock


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _PinnedAdapter(HTTPAdapter):
    """Sends to the checked IP address (it is in the URL) with TLS SNI and certificate
    verification against the original host name, and watches its sockets' deadline."""

    def __init__(self, server_hostname: str | None) -> None:
        self.server_hostname = server_hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPConnectionPool,
            "https": _WatchedHTTPSConnectionPool,
        }

    def build_connection_pool_key_attributes(
        self, request: Any, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        if self.server_hostname:
            pool_kwargs["server_hostname"] = self.server_hostname
        return host_params, pool_kwargs


def fetch_url(
    url: str,
    *,
    max_bytes: int = MAX_BYTES,
    allow: UrlAllowList | None = None,
    headers: dict[str, str] | None = None,
    deadline_s: float = DEADLINE_S,
) -> bytes:
    """The body of `url` (http or https), following up to MAX_REDIRECTS redirects;
    `headers` are sent until a redirect leaves the URL's origin (scheme, host, port).

    `allow` lists the non-public hosts and networks that may be fetched from (None: read
    CALLQA_ALLOW_PRIVATE_URLS); `deadline_s` bounds the whole download.
    """
    allow = private_url_allow_list() if allow is None else allow
    origin = _origin(url)
    with _Deadline(deadline_s) as deadline:
        token = _current_deadline.set(deadline)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                if _origin(url) != origin:
                    headers = None  # a CRM's Authorization is for its own host only
                result = _fetch_hop(url, allow, headers, max_bytes, deadline)
                if isinstance(result, bytes):
                    return result
                url = urljoin(url, result)
        finally:
            _current_deadline.reset(token)
    raise AudioError(f"{safe_url(url)}: more than {MAX_REDIRECTS} redirects")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.rpartition("@")[2].lower()


def _fetch_hop(
    url: str,
    allow: UrlAllowList,
    headers: dict[str, str] | None,
    max_bytes: int,
    deadline: _Deadline,
) -> bytes | str:
    """One request: the body, or the Location of a redirect (not followed here)."""
    import requests

    def late() -> AudioError:
        return AudioError(
            f"{safe_url(url)}: download not finished within the {deadline.seconds:g}-second "
            "deadline; stopped"
        )

    pinned, host_header, server_hostname = _pinned_request(url, allow)
    remaining = deadline.remaining()
    if remaining <= 0:
        raise late()
    with requests.Session() as session:
        # No environment proxies (they would connect to the host, not to the checked
        # address, and TLS through them would not verify the name) and no ~/.netrc
        # credentials for a host a CRM payload chose.
        session.trust_env = False
        adapter = _PinnedAdapter(server_hostname)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            response = session.get(
                pinned,
                stream=True,
                allow_redirects=False,
                headers={**(headers or {}), "Host": host_header},
                timeout=(min(CONNECT_TIMEOUT_S, remaining), min(READ_TIMEOUT_S, remaining)),
            )
        except requests.RequestException as exc:
            if deadline.expired:
                raise late() from exc
            raise AudioError(
                f"{safe_url(url)}: download failed ({exc.__class__.__name__})"
            ) from exc
        with response:
            if response.is_redirect:
                return response.headers.get("location", "")
            if response.status_code != 200:
                raise AudioError(
                    f"{safe_url(url)}: download failed with HTTP {response.status_code}"
                )
            try:
                declared = int(response.headers.get("content-length") or 0)
            except ValueError:  # malformed header: the streamed size is still bounded
                declared = 0
            if declared > max_bytes:
                raise AudioError(
                    f"{safe_url(url)}: {declared} bytes exceeds the {max_bytes}-byte limit"
                )
            chunks, size = [], 0
            try:
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise AudioError(
                            f"{safe_url(url)}: more than {max_bytes} bytes; download stopped"
                        )
                    chunks.append(chunk)
            except requests.RequestException as exc:
                if deadline.expired:
                    raise late() from exc
                raise AudioError(
                    f"{safe_url(url)}: download interrupted ({exc.__class__.__name__})"
                ) from exc
            if deadline.expired:  # the shutdown ends a body without a length like EOF does
                raise late()
            return b"".join(chunks)
