"""A tenant's call source (`crm:`) and alert destination (`alerts.destination:`).

One model per adapter, told apart by `adapter:`, so a tenant file is validated against
the fields that adapter needs and the published JSON schema shows them to editors. The
adapter code lives in `callqa/crm/adapters/`; `callqa.crm.registry` maps the name to it.
Tokens and connection URLs with passwords are secret references, never plain text.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from callqa.config.base import Strict
from callqa.config.secrets import SecretRef


class _Source(Strict):
    poll_interval_s: int = Field(
        60, ge=5, description="Seconds between two polls of this tenant's source (its sensor)."
    )
    category: str | None = Field(
        None, description="Call category for calls whose record names none (selects the preset)."
    )
    webhook_secret: SecretRef | None = Field(
        None,
        description=(
            "Authenticates pushes to `callqa webhook serve` (in the URL path, or the key of "
            "the signature header); none: this tenant takes no webhooks."
        ),
    )


class AmoCrmConfig(_Source):
    adapter: Literal["amocrm"]
    subdomain: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="<subdomain>.amocrm.ru"
    )
    domain: Literal["amocrm.ru", "amocrm.com", "kommo.com"] = "amocrm.ru"
    base_url: str | None = Field(
        None, description="Overrides https://<subdomain>.<domain> (a proxy, or a test server)."
    )
    token: SecretRef = Field(description="Long-lived token of a private integration (Bearer).")
    entity_types: list[Literal["leads", "contacts", "companies"]] = Field(
        default_factory=lambda: ["leads", "contacts"],
        min_length=1,
        description="Cards whose call notes (call_in / call_out) are polled.",
    )
    page_size: int = Field(250, ge=1, le=250, description="Notes per request (AmoCRM's max: 250).")

    @property
    def api_base(self) -> str:
        return (self.base_url or f"https://{self.subdomain}.{self.domain}").rstrip("/")


class HubSpotConfig(_Source):
    adapter: Literal["hubspot"]
    base_url: str = "https://api.hubapi.com"
    token: SecretRef = Field(description="Private app access token (Bearer).")
    page_size: int = Field(100, ge=1, le=200, description="Calls per search request (max 200).")
    portal_id: str | None = Field(None, description="Account id, for links into HubSpot.")


class SqlSourceConfig(_Source):
    adapter: Literal["sql"]
    url: SecretRef = Field(
        description=(
            "SQLAlchemy URL of the database (it holds a password): postgresql+psycopg://..., "
            "mysql+pymysql://..."
        )
    )
    query: str = Field(
        description=(
            "One SELECT returning external_id, recording_url and watermark (a timestamp, "
            "date, number or text that grows whenever the row changes; never NULL), "
            "optionally started_at, operator, category, duration_s, direction, links. It "
            "must use exactly the bind parameters :watermark, :last_id and :limit, and "
            "return at most :limit rows after the position (:watermark, :last_id), ordered "
            "by watermark and then external_id compared as text (see docs/crm.md)."
        )
    )
    page_size: int = Field(500, ge=1, le=5000)


class FileDropConfig(_Source):
    adapter: Literal["file_drop"]
    url: str = Field(
        description="Folder of recordings: a local path or any fsspec URL (s3://bucket/calls)."
    )
    page_size: int = Field(500, ge=1, le=5000)


CrmConfig = Annotated[
    AmoCrmConfig | HubSpotConfig | SqlSourceConfig | FileDropConfig,
    Field(discriminator="adapter"),
]


class TelegramAlert(Strict):
    type: Literal["telegram"]
    token: SecretRef = Field(description="Bot token (sendMessage of the Bot API).")
    chat_id: str
    api_base: str = "https://api.telegram.org"


class WebhookAlert(Strict):
    type: Literal["webhook"]
    url: SecretRef | str = Field(
        description="Receives a JSON POST per alert; a secret reference when the URL holds a key."
    )


AlertDestination = Annotated[TelegramAlert | WebhookAlert, Field(discriminator="type")]
