"""Fetching recordings from URLs handed to us by CRMs: bounded and SSRF-safe.

A CRM payload is untrusted input: its URL may point at an internal service. Only
http(s) is allowed, every hop of a redirect is re-checked, private, loopback and
link-local addresses are refused unless explicitly allowed (tests, on-prem CRMs), and
both time and size are bounded.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

from callqa.errors import AudioError
from callqa.settings import ALLOW_PRIVATE_URLS_ENV, allow_private_urls

MAX_BYTES = 200 * 1024 * 1024  # ~3.5 h of 16-bit 8 kHz stereo WAV
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
MAX_REDIRECTS = 3


def safe_url(url: str) -> str:
    """The URL without query string or credentials (CRMs put tokens there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # an invalid port; the error message says so
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _check_host(url: str, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise AudioError(f"{safe_url(url)}: only http and https URLs are fetched")
    if not parts.hostname:
        raise AudioError(f"{safe_url(url)}: URL has no host")
    try:
        _ = parts.port
    except ValueError as exc:
        raise AudioError(f"{safe_url(url)}: invalid URL ({exc})") from None
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise AudioError(f"{safe_url(url)}: cannot resolve host ({exc})") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise AudioError(
                f"{safe_url(url)}: refusing to fetch from non-public address {address} "
                f"(set {ALLOW_PRIVATE_URLS_ENV}=1 to allow)"
            )


def private_urls_allowed() -> bool:
    return allow_private_urls()


def fetch_url(
    url: str,
    *,
    max_bytes: int = MAX_BYTES,
    allow_private: bool | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    import requests

    allow = private_urls_allowed() if allow_private is None else allow_private
    for _ in range(MAX_REDIRECTS + 1):
        _check_host(url, allow)
        try:
            response = requests.get(
                url,
                stream=True,
                allow_redirects=False,
                headers=headers,
                timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            )
        except requests.RequestException as exc:
            raise AudioError(
                f"{safe_url(url)}: download failed ({exc.__class__.__name__})"
            ) from exc
        with response:
            if response.is_redirect:
                url = urljoin(url, response.headers.get("location", ""))
                continue
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
                raise AudioError(
                    f"{safe_url(url)}: download interrupted ({exc.__class__.__name__})"
                ) from exc
            return b"".join(chunks)
    raise AudioError(f"{safe_url(url)}: more than {MAX_REDIRECTS} redirects")
