"""One small JSON-over-HTTP client for CRM APIs, so every adapter reports errors alike.

The API host comes from the tenant's config (reviewed like code), unlike recording URLs,
which come from CRM payloads and go through `callqa.crm.fetch`. Answers map to the
`CrmError` family: 401/403 -> CrmAuthError, 429 -> CrmRateLimited with the Retry-After
the CRM asked for, 5xx / timeouts / lost connections -> CrmUnavailable. The sensor retries
all of them on a later tick. No message carries the token, a query string or a body
longer than a short excerpt.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

from callqa.config.secrets import Secret
from callqa.errors import CrmAuthError, CrmError, CrmPayloadError, CrmRateLimited, CrmUnavailable

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 30
DEFAULT_RETRY_AFTER_S = 10.0
MAX_RETRY_AFTER_S = 3600.0


def retry_after_seconds(value: str | None, default: float = DEFAULT_RETRY_AFTER_S) -> float:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110), bounded."""
    if not value:
        return default
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class CrmHttp:
    def __init__(
        self,
        source: str,
        base_url: str,
        token: Secret | None = None,
        *,
        read_timeout_s: float = READ_TIMEOUT_S,
    ):
        import requests

        self.source = source  # how errors name the CRM, e.g. "amocrm acme"
        self.base_url = base_url.rstrip("/")
        self.timeout = (CONNECT_TIMEOUT_S, read_timeout_s)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "callqa"
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token.reveal()}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        expect_json: bool = True,
    ) -> Any:
        """The decoded JSON answer (None for 204 No Content, AmoCRM's empty page)."""
        import requests

        where = f"{self.source}: {method} {path}"
        try:
            response = self.session.request(
                method, self.base_url + path, params=params, json=json, timeout=self.timeout
            )
        except requests.Timeout:
            raise CrmUnavailable(f"{where}: no answer within {self.timeout[1]:g} s") from None
        except requests.RequestException as exc:
            raise CrmUnavailable(f"{where}: cannot connect ({exc.__class__.__name__})") from None
        status = response.status_code
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            raise CrmRateLimited(f"{where}: rate limited (HTTP 429), retry after {wait:g} s", wait)
        if status in (401, 403):
            raise CrmAuthError(
                f"{where}: credentials refused (HTTP {status}); the token may have expired "
                "or lack the scope"
            )
        if status >= 500:
            raise CrmUnavailable(f"{where}: server error (HTTP {status})")
        if status >= 400:
            raise CrmError(f"{where}: HTTP {status}: {_excerpt(response.text)}")
        if status == 204 or not response.content:
            return None
        if not expect_json:
            return response.content
        try:
            return response.json()
        except ValueError:
            raise CrmPayloadError(
                f"{where}: answer is not JSON: {_excerpt(response.text)}"
            ) from None


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
