"""Classifying a call without a category by the `category_cues` of the tenant's presets."""

from __future__ import annotations

import pytest

from callqa.config.models import Preset, Tenant
from callqa.config.registry import Registry, load_registry
from callqa.scoring.classify import MIN_CUES, category_cue_hits, classify_category
from tests.builders import diarized, timed
from tests.test_presets import ALL_CALLS

CATEGORIES = {
    "default": "sales-default",
    "sales": "sales-default",
    "support": "support-default",
    "complaints": "complaints-default",
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def tenant(presets: dict[str, str]) -> Tenant:
    return Tenant(id="acme", name="Acme", presets=presets)


def call(*turns: tuple[str, str]):
    return diarized(timed(list(turns)))


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("good_sales", "sales"),
        ("bad_sales", "sales"),
        ("good_support", "support"),
        ("bad_support", "support"),
        ("retention_support", "support"),
        ("good_complaint", "complaints"),
        ("bad_complaint", "complaints"),
    ],
)
def test_designed_calls_are_classified_to_their_category(registry, name, category):
    transcript = diarized(ALL_CALLS[name])
    found, hits = classify_category(transcript, tenant(CATEGORIES), registry)
    assert found == category
    # The count is the distinct cues of the winning category's preset said in the call.
    cues = category_cue_hits(transcript, registry.preset(CATEGORIES[category]).category_cues)
    assert hits == len(cues) >= MIN_CUES


def test_cues_count_once_each_and_as_whole_words(registry):
    preset = registry.preset("complaints-default")
    transcript = call(
        ("customer", "I want a refund. A refund! Refund, now."),
        ("operator", "The refunds team will call."),
    )
    assert category_cue_hits(transcript, preset.category_cues) == ["refund"]
    # One cue is not enough to decide.
    assert classify_category(transcript, tenant(CATEGORIES), registry) == (None, 0)


def test_no_cues_gives_no_category(registry):
    transcript = call(("operator", "Hello."), ("customer", "Hi, wrong number, sorry."))
    assert classify_category(transcript, tenant(CATEGORIES), registry) == (None, 0)


def test_a_tie_gives_no_category(registry):
    # Two sales cues (price, discount) and two support cues (error, password).
    transcript = call(
        ("customer", "The price is fine and I like the discount."),
        ("customer", "But I get an error with my password."),
    )
    assert category_cue_hits(transcript, registry.preset("sales-default").category_cues) == [
        "price",
        "discount",
    ]
    assert classify_category(transcript, tenant(CATEGORIES), registry) == (None, 0)
    # With one more support cue the tie is broken.
    transcript = call(
        ("customer", "The price is fine and I like the discount."),
        ("customer", "But I get an error with my password, and the router is slow."),
    )
    assert classify_category(transcript, tenant(CATEGORIES), registry) == ("support", 4)


def test_only_the_tenants_categories_compete_and_default_is_not_one(registry):
    transcript = diarized(ALL_CALLS["good_complaint"])
    # A tenant without a complaints category: complaint cues cannot win.
    found, _ = classify_category(
        transcript,
        tenant({"default": "sales-default", "support": "support-default"}),
        registry,
    )
    assert found is None
    # 'default' maps to a preset whose cues match, but it is the fallback, not a category.
    assert classify_category(transcript, tenant({"default": "complaints-default"}), registry) == (
        None,
        0,
    )


def test_a_new_category_is_classified_by_its_preset_cues_alone(registry):
    sales = registry.preset("sales-default")
    collections = Preset.model_validate(
        {
            **sales.model_dump(),
            "id": "collections",
            "category_cues": ["overdue", "outstanding balance", "payment plan", "invoice"],
        }
    )
    custom = Registry(tenants={}, presets={**registry.presets, "collections": collections})
    transcript = call(
        ("operator", "Hello, I am calling about an overdue invoice."),
        ("customer", "Yes, I know about the outstanding balance."),
    )
    found = classify_category(
        transcript, tenant({**CATEGORIES, "collections": "collections"}), custom
    )
    assert found == ("collections", 3)
