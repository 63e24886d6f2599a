"""Low-score alerts: one message per call whose total is below the tenant's threshold.

Two destinations (`callqa.config.crm.TelegramAlert`, `WebhookAlert`):

- Telegram: the Bot API's sendMessage, `POST {api_base}/bot<token>/sendMessage` with JSON
  `{"chat_id", "text"}` (plain text, no parse_mode, so nothing in a summary is read as
  markup). Every answer is `{"ok": true, "result": Message}` or `{"ok": false,
  "error_code": N, "description": "...", "parameters": {"retry_after": S}}`; 429 carries
  `parameters.retry_after`, a bad token answers 401 Unauthorized (404 Not Found when it
  is malformed). Docs: https://core.telegram.org/bots/api#making-requests,
  https://core.telegram.org/bots/api#sendmessage (text: 1-4096 characters) and
  https://core.telegram.org/bots/api#responseparameters.
- Webhook: `POST <url>` with the alert as JSON (`LowScoreAlert`); any 2xx is delivered.

Errors are `CrmError` subclasses, like a CRM's: 429 -> CrmRateLimited(retry_after),
5xx / timeouts / lost connections -> CrmUnavailable, refused credentials -> CrmAuthError.
The bot token sits in the URL path, so no message is built from the URL: it names the
host only, and a webhook URL given as a secret reference is shown masked (`****abcd`).
Exceptions are raised outside the `except` blocks, so the requests exception (whose text
holds the URL) is not chained onto ours. The destination comes from tenant config,
reviewed like code, so it is not SSRF-guarded like CRM payload URLs; redirects are not
followed all the same (a POST has nowhere legitimate to be redirected to).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from callqa.config.crm import TelegramAlert, WebhookAlert
from callqa.config.secrets import mask
from callqa.crm.http import retry_after_seconds
from callqa.errors import CrmAuthError, CrmError, CrmPayloadError, CrmRateLimited, CrmUnavailable

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 10
TELEGRAM_TEXT_LIMIT = 4096  # sendMessage: 1-4096 characters
SUMMARY_LIMIT = 1500  # of the summary in a Telegram message; the report has the rest
_BOT_PATH = re.compile(r"/bot[^/\s\"']+/")


class LowScoreAlert(BaseModel):
    """What an alert says; also the JSON body a webhook receives."""

    kind: Literal["low_score"] = "low_score"
    tenant: str
    partition_key: str
    total: float = Field(ge=0, le=100)
    threshold: float = Field(ge=0, le=100)
    summary: str
    report_url: str
    operator: str | None = None

    def text(self) -> str:
        """The Telegram message: plain text, within sendMessage's 4096 characters."""
        summary = self.summary.strip()
        if len(summary) > SUMMARY_LIMIT:
            summary = summary[: SUMMARY_LIMIT - 1] + "…"
        lines = [
            f"Low call score: {self.total:.1f}/100 (threshold {self.threshold:g})",
            f"Tenant: {self.tenant}",
            f"Call: {self.partition_key}",
            f"Operator: {self.operator or 'unknown'}",
            summary,
            f"Report: {self.report_url}",
        ]
        return "\n".join(lines)[:TELEGRAM_TEXT_LIMIT]


class _RedactBotTokens(logging.Filter):
    """urllib3 logs each request's path at DEBUG; the Bot API path holds the token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/bot" in message:
            record.msg, record.args = _BOT_PATH.sub("/bot****/", message), ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactBotTokens())


def _host(url: str) -> str:
    """Host (and port) of a URL: all an error message may show of it."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.hostname or 'invalid URL'}{port}"


def _post(url: str, body: dict, where: str) -> Any:
    """POST JSON; the `requests` response, or CrmUnavailable naming `where` (never `url`)."""
    import requests

    failure = None
    try:
        response = requests.post(
            url,
            json=body,
            headers={"User-Agent": "callqa"},
            timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            allow_redirects=False,
        )
    except requests.Timeout:
        failure = f"no answer within {CONNECT_TIMEOUT_S} s (connect) / {READ_TIMEOUT_S} s (read)"
    except requests.RequestException as exc:
        failure = f"cannot connect ({exc.__class__.__name__})"
    # Raised here, not in the except block: the requests exception's text holds the URL.
    if failure is not None:
        raise CrmUnavailable(f"{where}: {failure}")
    return response


def _json(response) -> dict | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _send_telegram(destination: TelegramAlert, alert: LowScoreAlert, where: str) -> None:
    token = destination.token.resolve(f"{where} telegram token").reveal()
    name = f"{where}: telegram ({_host(destination.api_base)})"
    url = f"{destination.api_base.rstrip('/')}/bot{token}/sendMessage"
    response = _post(url, {"chat_id": destination.chat_id, "text": alert.text()}, name)
    answer = _json(response)
    status = response.status_code
    if status == 200 and answer is not None and answer.get("ok") is True:
        return
    code = answer.get("error_code", status) if answer else status
    # Telegram's descriptions name the problem ("Bad Request: chat not found"); scrub the
    # token anyway, in case a proxy in between echoes the path.
    description = str((answer or {}).get("description") or f"HTTP {status}").replace(token, "****")
    description = description[:200]
    if code == 429 or status == 429:
        params = (answer or {}).get("parameters") or {}
        raw = params.get("retry_after") if isinstance(params, dict) else None
        wait = retry_after_seconds(
            str(raw) if raw is not None else response.headers.get("Retry-After")
        )
        raise CrmRateLimited(f"{name}: rate limited ({description}), retry after {wait:g} s", wait)
    if status in (401, 403, 404) or code in (401, 403, 404):
        raise CrmAuthError(
            f"{name}: the bot was refused (HTTP {status}: {description}); check the bot token "
            f"and that the bot may post to chat {destination.chat_id}"
        )
    if status >= 500:
        raise CrmUnavailable(f"{name}: server error (HTTP {status})")
    if answer is None:
        raise CrmPayloadError(f"{name}: answer (HTTP {status}) is not a Bot API JSON object")
    raise CrmError(f"{name}: message not sent (HTTP {status}: {description})")


def _send_webhook(destination: WebhookAlert, alert: LowScoreAlert, where: str) -> None:
    if isinstance(destination.url, str):
        url = destination.url
        name = f"{where}: webhook {_host(url)}"
    else:  # a secret reference: the URL holds a key, show none of it
        url = destination.url.resolve(f"{where} webhook url").reveal()
        name = f"{where}: webhook {mask(url)}"
    response = _post(url, alert.model_dump(mode="json"), name)
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        raise CrmRateLimited(f"{name}: rate limited (HTTP 429), retry after {wait:g} s", wait)
    if status in (401, 403):
        raise CrmAuthError(f"{name}: refused (HTTP {status}); check the webhook's URL or key")
    if status >= 500:
        raise CrmUnavailable(f"{name}: server error (HTTP {status})")
    if 300 <= status < 400:
        raise CrmError(
            f"{name}: answered a redirect (HTTP {status}), which is not followed; "
            "configure the final URL"
        )
    raise CrmError(f"{name}: alert refused (HTTP {status})")


def send_alert(
    destination: TelegramAlert | WebhookAlert, alert: LowScoreAlert, *, where: str
) -> None:
    """Send one alert; `where` names it in errors and secret look-ups ("tenant acme alerts").
    Returns when the destination accepted it; raises a CrmError subclass otherwise."""
    if isinstance(destination, TelegramAlert):
        _send_telegram(destination, alert, where)
    else:
        _send_webhook(destination, alert, where)
