"""The per-call HTML report: what it shows (read back through an HTML parser), that record
text cannot become markup, that it needs nothing from a network, and where it is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from callqa.errors import PartitionKeyError
from callqa.reporting.call_report import (
    render_call_report,
    report_url,
    timestamp,
    write_call_report,
)
from tests.builders import SHORT_SALES_CALL, diarized, timed
from tests.records import sample_record

TENANT = "acme"
CALL = "call-42"
INJECT_QUOTE = '</blockquote><script>window.__pwned = 1</script>"><img src=x onerror=alert(1)>'
INJECT_OPERATOR = "<b onmouseover=alert(2)>eve</b> & co"
INJECT_SUMMARY = "Summary <script>alert(3)</script> &amp; more"


# --- a small DOM from the stdlib parser ------------------------------------------------------

VOID = {"meta", "link", "img", "br", "hr", "input", "source", "base", "col", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if (tag is None or child.tag == tag) and all(
                    attrs_match(child, k, v) for k, v in attrs.items()
                ):
                    found.append(child)
                found += child.all(tag, **attrs)
        return found

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.all(tag, **attrs)
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]


def attrs_match(node: Node, key: str, value: str) -> bool:
    key = key.rstrip("_").replace("_", "-")
    if key == "class":
        return value in (node.attrs.get("class") or "").split()
    return node.attrs.get(key) == value


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.tags.append((tag, dict(attrs)))
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(page: str) -> _Builder:
    builder = _Builder()
    builder.feed(page)
    builder.close()
    return builder


def squash(text: str) -> str:
    return " ".join(text.split())


# --- inputs ----------------------------------------------------------------------------------


def call_transcript() -> dict:
    """The short sales call from one minute in, with a customer talking over the operator."""
    lines = [*timed(SHORT_SALES_CALL, start_s=58), (80.0, 82.0, "customer", "Sorry, how much?")]
    return diarized(lines, duration_s=100).model_dump(mode="json")


def call_record(transcript: dict, **texts: str) -> dict:
    record = sample_record(
        TENANT,
        CALL,
        {"greeting": 5, "needs_discovery": 3, "objection_handling": 2},
        operator=texts.get("operator", "ann"),
        summary=texts.get("summary", "Polite call; the price objection was not answered."),
    )
    record["call"]["category"] = "sales"
    record["call"]["started_at"] = "2026-03-02T09:15:00Z"
    record["call"]["audio"]["duration_s"] = 100.0
    record["transcript"]["segments"] = [
        {k: s[k] for k in ("start", "end", "speaker", "text")} for s in transcript["segments"]
    ]
    record["metrics"] = transcript["metrics"]
    evidence = {
        "greeting": [{"quote": "thank you for calling Northwind", "start": 58.0}],
        "needs_discovery": [
            {"quote": "how many people are on your team", "start": 69.8},
            {"quote": "About twenty people", "start": 75.5},
        ],
        "objection_handling": [
            {"quote": texts.get("quote", "the price worries me"), "start": 75.5}
        ],
    }
    for criterion in record["scores"]["criteria"]:
        criterion["evidence"] = evidence[criterion["id"]]
        criterion["rationale"] = f"{criterion['name']} rationale"
    record["recommendations"] = ["Answer the price objection with the savings."]
    record["patterns"] = [{"type": "objection", "quote": "it seems expensive", "start": 64.1}]
    return record


@pytest.fixture
def transcript() -> dict:
    return call_transcript()


@pytest.fixture
def page(transcript) -> str:
    return render_call_report(call_record(transcript), transcript, tenant_name="Acme Corp")


# --- what the page shows ---------------------------------------------------------------------


def test_timestamps_are_minutes_and_seconds():
    assert [timestamp(s) for s in (0, 4.9, 65.2, 600, 3725)] == [
        "00:00",
        "00:04",
        "01:05",
        "10:00",
        "1:02:05",
    ]


def test_header_names_the_call_and_how_it_was_scored(page, transcript):
    record = call_record(transcript)
    dom = parse(page).root
    facts = {dd.attrs["data-fact"]: dd.text() for dd in dom.all("dd") if "data-fact" in dd.attrs}
    assert facts == {
        "Call id": CALL,
        "Tenant": "Acme Corp (acme)",
        "Operator": "ann",
        "Date": "2026-03-02 09:15 UTC",
        "Duration": "01:40",
        "Category": "sales",
        "Preset": "p1",
        "Prompt version": record["scoring"]["prompt_version"],
        "Scorer": "rules",
        "Language": "en",
        "Speaker roles": "stereo-channel-map",
    }
    assert dom.one("span", id="call-id").text() == CALL
    assert float(dom.one(id="total").text()) == pytest.approx(record["scores"]["total"], abs=0.05)
    assert dom.one(id="weakest").text() == "Objection_Handling"  # the lowest score (2)
    assert dom.one("title").text() == f"Call {CALL}: Acme Corp"


def test_every_criterion_with_score_weight_and_timed_evidence(page):
    dom = parse(page).root
    rows = dom.all("tr", class_="criterion-row")
    assert [r.attrs["data-criterion"] for r in rows] == [
        "greeting",
        "needs_discovery",
        "objection_handling",
    ]
    cells = {r.attrs["data-criterion"]: [squash(td.text()) for td in r.all("td")] for r in rows}
    assert cells["greeting"][:3] == ["Greeting", "5/5", "33%"]
    assert cells["objection_handling"][:3] == ["Objection_Handling", "2/5", "33%"]

    def evidence(criterion: str) -> list[tuple[str, str, str, str]]:
        row = dom.one("tr", data_criterion=criterion)
        return [
            (
                q.one("a").text(),
                q.one("a").attrs["href"],
                q.one("span", class_="role").text(),
                squash(q.text()),
            )
            for q in row.all("blockquote", class_="evidence")
        ]

    # Each quote: its mm:ss time, a link to the turn it comes from, and who said it.
    assert evidence("greeting") == [
        ("00:58", "#turn-0", "operator", "00:58operator“thank you for calling Northwind”")
    ]
    assert evidence("needs_discovery") == [
        ("01:09", "#turn-2", "operator", "01:09operator“how many people are on your team”"),
        ("01:15", "#turn-3", "customer", "01:15customer“About twenty people”"),
    ]
    assert evidence("objection_handling")[0][:3] == ("01:15", "#turn-3", "customer")
    # Every evidence link lands on a transcript turn that holds the quote.
    for a in dom.one(id="scores").all("a", class_="time"):
        turn = dom.one("tr", id=a.attrs["href"][1:])
        quote = a.parent.text().split("“", 1)[1].rstrip("”")
        assert quote.lower() in turn.text().lower()


def test_transcript_turns_by_role_with_timestamps(page, transcript):
    dom = parse(page).root
    turns = [
        (tr.all("td")[0].text(), tr.all("td")[1].text(), tr.all("td")[2].text())
        for tr in dom.one(id="transcript").all("tr", class_="turn")
    ]
    want = [(timestamp(s["start"]), s["speaker"], s["text"]) for s in transcript["segments"]]
    assert turns == want
    assert turns[0] == ("00:58", "operator", SHORT_SALES_CALL[0][1])
    assert ("01:20", "customer", "Sorry, how much?") in turns
    classes = {tr.attrs["class"] for tr in dom.one(id="transcript").all("tr", class_="turn")}
    assert classes == {"turn speaker-operator", "turn speaker-customer"}


def test_conversation_metrics(page, transcript):
    metrics = transcript["metrics"]
    assert metrics["interruption_count"] == 1  # the customer's "Sorry, how much?"
    dom = parse(page).root
    shown = {
        dd.attrs["data-metric"]: dd.text() for dd in dom.all("dd") if "data-metric" in dd.attrs
    }
    assert shown == {
        "Duration": "01:40",
        "Silence": f"{metrics['silence_ratio'] * 100:.0f}%",
        "Turns": str(metrics["turns"]),
        "Interruptions": "1",
        "Overlapping speech": f"{metrics['overlap_s']:.1f} s in {metrics['overlap_count']} overlaps",
        "Longest monologue": (
            f"{timestamp(metrics['longest_monologue_s'])} ({metrics['longest_monologue_speaker']})"
        ),
    }
    roles = {
        tr.attrs["data-role"]: [td.text() for td in tr.all("td")]
        for tr in dom.all("tr", class_="role-row")
    }
    for role in ("operator", "customer"):
        m = metrics["roles"][role]
        assert roles[role] == [
            role,
            timestamp(m["talk_time_s"]),
            f"{m['talk_share'] * 100:.0f}%",
            str(m["words"]),
            f"{m['words_per_minute']:.0f}",
            str(m["interruptions"]),
        ]
    assert roles["customer"][-1] == "1"
    bar = dom.one("div", class_="share").all("div")
    assert [b.attrs["class"] for b in bar] == ["operator", "customer"]
    assert (
        bar[0].attrs["style"] == f"width: {metrics['roles']['operator']['talk_share'] * 100:.1f}%"
    )


def test_summary_recommendations_and_patterns(page):
    dom = parse(page).root
    assert "the price objection was not answered" in dom.one(id="summary").text()
    assert [li.text() for li in dom.one(id="recommendations").all("li")] == [
        "Answer the price objection with the savings."
    ]
    (row,) = dom.one(id="patterns").all("tbody")[0].all("tr")
    assert squash(row.text()) == "objection01:04customer“it seems expensive”"


def test_without_diarized_transcript_the_records_copy_is_shown(transcript):
    record = call_record(transcript)
    record["transcript"]["segments"][0]["text"] = "Good morning from the record"
    page = render_call_report(record, None, tenant_name="Acme")
    dom = parse(page).root
    first = dom.one(id="transcript").all("tr", class_="turn")[0]
    assert first.all("td")[2].text() == "Good morning from the record"
    assert len(dom.one(id="transcript").all("tr", class_="turn")) == len(transcript["segments"])


def test_an_invalid_record_is_refused_naming_the_field(transcript):
    record = call_record(transcript)
    del record["scores"]["total"]
    with pytest.raises(ValueError, match="total"):
        render_call_report(record, transcript, tenant_name="Acme")


# --- nothing runs, nothing is fetched ----------------------------------------------------------


def test_record_text_is_escaped(transcript):
    transcript["segments"][3]["text"] = f"About twenty people {INJECT_QUOTE}"
    record = call_record(
        transcript, operator=INJECT_OPERATOR, summary=INJECT_SUMMARY, quote=INJECT_QUOTE
    )
    page = render_call_report(record, transcript, tenant_name="<i>Acme</i>")
    parsed = parse(page)
    tags = {tag for tag, _ in parsed.tags}
    assert not tags & {"script", "img", "b", "i"}, tags
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert not any(k.startswith("on") for _, attrs in parsed.tags for k in attrs)
    dom = parsed.root
    # Shown as the text it is, wherever it appears.
    quote = dom.one("tr", data_criterion="objection_handling").one("blockquote").text()
    assert INJECT_QUOTE in quote
    assert dom.one("dd", data_fact="Operator").text() == INJECT_OPERATOR
    assert INJECT_SUMMARY in dom.one(id="summary").text()
    assert INJECT_QUOTE in dom.one("tr", id="turn-3").text()
    assert dom.one("title").text() == f"Call {CALL}: <i>Acme</i>"
    # The quote still finds its turn (matched on its words, not its markup).
    assert dom.one("tr", data_criterion="objection_handling").one("a").attrs["href"] == "#turn-3"


def test_page_is_self_contained(page):
    parsed = parse(page)
    tags = [tag for tag, _ in parsed.tags]
    assert "link" not in tags and "script" not in tags and "iframe" not in tags
    for tag, attrs in parsed.tags:
        assert "src" not in attrs, (tag, attrs)
        if "href" in attrs:  # in-page anchors only
            assert attrs["href"].startswith("#"), (tag, attrs)
    style = parsed.root.one("style").text()
    assert len(style) > 500  # the stylesheet is inline
    assert "url(" not in style and "@import" not in style
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)
    csp = parsed.root.one("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert "default-src 'none'" in csp and "script-src 'none'" in csp


# --- where it is stored ------------------------------------------------------------------------


def test_write_without_link_key_uses_the_call_id(tmp_path, page):
    rel = write_call_report(page, tmp_path / "store", TENANT, CALL, None)
    assert rel == f"{TENANT}/{CALL}.html"
    assert (tmp_path / "store" / rel).read_text(encoding="utf-8") == page
    assert [p.name for p in (tmp_path / "store" / TENANT).iterdir()] == [f"{CALL}.html"]


def _token(key: str, tenant: str, external_id: str) -> str:
    """The documented token, computed independently of the code under test."""
    message = f"{tenant}/{external_id}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()[:16]


def test_link_key_adds_a_stable_unguessable_token(tmp_path, page):
    key = "report-link-key-0123456789"
    rel = write_call_report(page, str(tmp_path), TENANT, CALL, key)
    assert rel == f"{TENANT}/{CALL}-{_token(key, TENANT, CALL)}.html"
    assert re.fullmatch(rf"{TENANT}/{CALL}-[0-9a-f]{{16}}\.html", rel)
    assert (tmp_path / rel).read_text(encoding="utf-8") == page
    # Stable: writing again replaces the same file, and no temporary file is left.
    assert write_call_report("v2", tmp_path, TENANT, CALL, key) == rel
    assert (tmp_path / rel).read_text() == "v2"
    assert [p.name for p in (tmp_path / TENANT).iterdir()] == [Path(rel).name]
    # Different per tenant, per call and per key.
    tokens = {
        write_call_report(page, tmp_path, tenant, call, k).rsplit("-", 1)[1]
        for tenant, call, k in [
            (TENANT, CALL, key),
            ("globex", CALL, key),
            (TENANT, "call-43", key),
            (TENANT, CALL, key + "x"),
        ]
    }
    assert len(tokens) == 4
    assert write_call_report(page, tmp_path, "globex", CALL, key) == (
        f"globex/{CALL}-{_token(key, 'globex', CALL)}.html"
    )


@pytest.mark.parametrize(
    ("tenant", "external_id"), [("acme", "../escape"), ("../acme", "call-1"), ("acme", "a/b")]
)
def test_write_refuses_ids_that_are_not_safe_names(tmp_path, tenant, external_id):
    with pytest.raises(PartitionKeyError):
        write_call_report("x", tmp_path / "store", tenant, external_id, None)
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.html"))


def test_empty_link_key_is_refused(tmp_path):
    with pytest.raises(ValueError, match="link key is empty"):
        write_call_report("x", tmp_path, TENANT, CALL, "")


def test_report_url_joins_base_and_path(tmp_path, page):
    rel = f"{TENANT}/{CALL}-0123456789abcdef.html"
    assert report_url("https://reports.example.com/qa", rel) == (
        f"https://reports.example.com/qa/{rel}"
    )
    assert report_url("https://reports.example.com/qa/", rel) == (
        f"https://reports.example.com/qa/{rel}"
    )
    assert report_url("https://reports.example.com", "/" + rel) == (
        f"https://reports.example.com/{rel}"
    )
    # A local store as a file:// URL points at the written file.
    store = tmp_path / "store with space"
    written = write_call_report(page, store, TENANT, CALL, "k" * 20)
    url = report_url(store.as_uri() + "/", written)
    assert url.startswith("file:///") and " " not in url
    assert Path(unquote(urlsplit(url).path)).read_text(encoding="utf-8") == page
    with pytest.raises(ValueError, match="base URL is empty"):
        report_url(" ", rel)


def test_started_at_is_shown_in_utc(transcript):
    record = call_record(transcript)
    moscow = timezone(timedelta(hours=3))
    record["call"]["started_at"] = datetime(2026, 3, 2, 12, 0, tzinfo=moscow).isoformat()
    dom = parse(render_call_report(record, transcript, tenant_name="Acme")).root
    assert dom.one("dd", data_fact="Date").text() == "2026-03-02 09:00 UTC"
