"""The `calls` partition key `<tenant>__<external id>`."""

from __future__ import annotations

import hashlib

import pytest

from callqa.calls.keys import CallKey, external_id_from_name, make_key, parse_key
from callqa.errors import PartitionKeyError


@pytest.mark.parametrize(
    ("tenant", "external_id"),
    [("demo", "call-001"), ("acme-eu", "2024.05.01-17.30"), ("a", "X"), ("t9", "a" * 128)],
)
def test_make_and_parse_round_trip(tenant, external_id):
    key = make_key(tenant, external_id)
    assert key == CallKey(tenant, external_id)
    assert key.partition_key == f"{tenant}__{external_id}"
    assert parse_key(key.partition_key) == key


@pytest.mark.parametrize("tenant", ["Demo", "-demo", "demo-", "de_mo", "", "a" * 65, "démo"])
def test_invalid_tenant_is_named_in_the_error(tenant):
    with pytest.raises(PartitionKeyError) as excinfo:
        make_key(tenant, "call-1")
    assert repr(tenant) in str(excinfo.value)
    assert "tenant" in str(excinfo.value)


@pytest.mark.parametrize(
    "external_id", ["", "-starts-with-dash", "has space", "has/slash", "a__b", "x" * 129, "ü"]
)
def test_invalid_external_id_is_named_in_the_error(external_id):
    with pytest.raises(PartitionKeyError) as excinfo:
        make_key("demo", external_id)
    assert repr(external_id) in str(excinfo.value)
    assert "external call id" in str(excinfo.value)


def test_parse_key_without_separator():
    with pytest.raises(PartitionKeyError) as excinfo:
        parse_key("demo-call-1")
    assert "'demo-call-1' must look like '<tenant>__<call id>'" in str(excinfo.value)


def test_parse_key_validates_both_halves():
    with pytest.raises(PartitionKeyError, match="'Demo'"):
        parse_key("Demo__call-1")
    with pytest.raises(PartitionKeyError, match="'call 1'"):
        parse_key("demo__call 1")
    # Only the first separator splits; the rest must then be a valid id (it is not).
    with pytest.raises(PartitionKeyError, match="'a__b'"):
        parse_key("demo__a__b")


@pytest.mark.parametrize(("tenant", "external_id"), [("demo\n", "call-1"), ("demo", "call-1\n")])
def test_trailing_newline_is_rejected(tenant, external_id):
    with pytest.raises(PartitionKeyError):
        make_key(tenant, external_id)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("call-001", "call-001"),
        ("call-001.wav", "call-001.wav"),
        ("2024.05.01-17.30", "2024.05.01-17.30"),
        ("Call 2024/05/01 (final).wav", "Call-2024-05-01-final-.wav-<hash>"),
        ("  --..weird name..--  ", "weird-name-<hash>"),
        ("__init__", "init-<hash>"),
        ("a__b", "a-b-<hash>"),
        ("Grüße.mp3", "Gr-e.mp3-<hash>"),
        ("", "call-<hash>"),
        ("...", "call-<hash>"),
        ("///", "call-<hash>"),
    ],
)
def test_external_id_from_name_sanitizes(name, expected):
    """Valid ids are kept; cleaned names get 8 hex digits of sha256(name) appended, so two
    names that clean alike (`call 1`, `call_1`) keep different ids."""
    cleaned = external_id_from_name(name)
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    assert cleaned == expected.replace("<hash>", digest)
    assert make_key("demo", cleaned).external_id == cleaned


def test_external_id_from_name_truncates_to_a_valid_id():
    name = "-" + "x" * 300 + ".wav"
    cleaned = external_id_from_name(name)
    assert cleaned == "x" * 119 + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    assert make_key("demo", cleaned).external_id == cleaned
