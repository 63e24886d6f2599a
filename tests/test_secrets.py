"""Secrets in tenant config: environment references and Fernet values, always masked."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from callqa.config.models import Tenant
from callqa.config.secrets import SECRET_KEY_ENV, EnvSecret, FernetSecret, Secret, mask
from callqa.errors import ConfigError
from tests.paths import ROOT

TOKEN = "amo-long-lived-token-0123456789abcd"


def test_secret_prints_masked_everywhere():
    secret = Secret(TOKEN)
    for text in (str(secret), repr(secret), f"{secret}", f"{secret!r}", str([secret])):
        assert TOKEN not in text
        assert text.endswith("abcd]") or text.endswith("abcd")
    assert secret.reveal() == TOKEN
    assert mask("short") == "****"  # too short to show any of it


def test_env_reference_resolves_and_names_a_missing_variable(monkeypatch):
    monkeypatch.setenv("ACME_AMO_TOKEN", TOKEN)
    assert EnvSecret(env="ACME_AMO_TOKEN").resolve("tenant acme crm.token").reveal() == TOKEN
    monkeypatch.delenv("ACME_AMO_TOKEN")
    with pytest.raises(
        ConfigError, match="tenant acme crm.token: environment variable ACME_AMO_TOKEN"
    ):
        EnvSecret(env="ACME_AMO_TOKEN").resolve("tenant acme crm.token")


def test_fernet_value_round_trips_through_the_cli(monkeypatch):
    key = Fernet.generate_key().decode()
    env = {"PATH": "", SECRET_KEY_ENV: key, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run(
        [sys.executable, "-m", "callqa.cli", "secret", "encrypt"],
        input=TOKEN + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    ).stdout.strip()
    assert out.startswith("{fernet: ") and TOKEN not in out
    value = out.removeprefix("{fernet: ").removesuffix("}")
    monkeypatch.setenv(SECRET_KEY_ENV, key)
    tenant = Tenant.model_validate(
        {
            "id": "acme",
            "name": "Acme",
            "crm": {"adapter": "amocrm", "subdomain": "acme", "token": {"fernet": value}},
        }
    )
    assert tenant.crm.token.resolve("t").reveal() == TOKEN
    # The config as stored or shown (model dump, JSON) holds the ciphertext, never the value.
    assert TOKEN not in tenant.model_dump_json()


def test_fernet_with_the_wrong_key_names_the_problem_not_the_value(monkeypatch):
    monkeypatch.setenv(SECRET_KEY_ENV, Fernet.generate_key().decode())
    token = Fernet(Fernet.generate_key()).encrypt(TOKEN.encode()).decode()
    with pytest.raises(ConfigError) as err:
        FernetSecret(fernet=token).resolve("tenant acme crm.token")
    assert "cannot be decrypted" in str(err.value) and token not in str(err.value)
    monkeypatch.setenv(SECRET_KEY_ENV, "not-a-key")
    with pytest.raises(ConfigError, match="not a Fernet key"):
        FernetSecret(fernet=token).resolve("x")
    monkeypatch.delenv(SECRET_KEY_ENV)
    with pytest.raises(ConfigError, match=f"{SECRET_KEY_ENV} is not set"):
        FernetSecret(fernet=token).resolve("x")


def test_plain_text_token_in_config_is_refused():
    with pytest.raises(ValueError):
        Tenant.model_validate(
            {
                "id": "acme",
                "name": "Acme",
                "crm": {"adapter": "amocrm", "subdomain": "acme", "token": TOKEN},
            }
        )
