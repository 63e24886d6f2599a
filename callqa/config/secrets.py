"""Secrets in tenant config: a reference to an environment variable, or a Fernet token.

Tenant files are reviewed like code and live in git, so a CRM token or webhook secret is
never written there in plain text. It is either `{env: NAME}` (the value comes from the
environment of the process that needs it) or `{fernet: TOKEN}` (encrypted with the key in
CALLQA_SECRET_KEY; `callqa secret encrypt` prints a TOKEN to paste). A resolved value is a
`Secret`, whose str/repr is masked (`****abcd`), so a log line, an exception or Dagster
metadata that formats it shows the mask, never the value.
"""

from __future__ import annotations

import os

from pydantic import Field

from callqa.config.base import Strict
from callqa.errors import ConfigError

SECRET_KEY_ENV = "CALLQA_SECRET_KEY"


def mask(value: str) -> str:
    """How a secret is shown anywhere at all: its last four characters, and only those of
    a value long enough that four characters give nothing away."""
    return f"****{value[-4:]}" if len(value) >= 12 else "****"


class Secret:
    """A secret value that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """The value, for the one place that sends it (an Authorization header)."""
        return self._value

    def __str__(self) -> str:
        return mask(self._value)

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class EnvSecret(Strict):
    env: str = Field(
        pattern=r"^[A-Z_][A-Z0-9_]*$", description="environment variable holding the value"
    )

    def resolve(self, where: str) -> Secret:
        value = os.environ.get(self.env, "").strip()
        if not value:
            raise ConfigError(f"{where}: environment variable {self.env} is not set")
        return Secret(value)


class FernetSecret(Strict):
    fernet: str = Field(
        min_length=20,
        description=f"value encrypted with the Fernet key in {SECRET_KEY_ENV} (callqa secret encrypt)",
    )

    def resolve(self, where: str) -> Secret:
        from cryptography.fernet import InvalidToken

        try:
            return Secret(_fernet(where).decrypt(self.fernet.encode()).decode())
        except InvalidToken:
            # Never echo the token: with the key it is the secret.
            raise ConfigError(
                f"{where}: the fernet value cannot be decrypted with {SECRET_KEY_ENV} "
                "(encrypted with another key, or truncated)"
            ) from None


SecretRef = EnvSecret | FernetSecret


def _fernet(where: str):
    from cryptography.fernet import Fernet

    key = os.environ.get(SECRET_KEY_ENV, "").strip()
    if not key:
        raise ConfigError(f"{where}: {SECRET_KEY_ENV} is not set (the key that decrypts it)")
    try:
        return Fernet(key.encode())
    except ValueError:
        raise ConfigError(
            f"{SECRET_KEY_ENV} is not a Fernet key (32 url-safe base64-encoded bytes; "
            "`callqa secret new-key` prints one)"
        ) from None


def encrypt(value: str) -> str:
    """The token `callqa secret encrypt` prints: paste it as `{fernet: TOKEN}`."""
    return _fernet("callqa secret encrypt").encrypt(value.encode()).decode()


def new_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
