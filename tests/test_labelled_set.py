"""The shipped labelled set: its calls and human scores, the CSV checks, and
`callqa eval scoring` on it with the offline rules scorer."""

import argparse
import json
import shutil
from collections import Counter

import pytest

from callqa.calls.backends import ScorerBackends
from callqa.cli_eval import add_parsers, evaluate_scoring, format_report
from callqa.evaluation.labelled import (
    CATEGORY_PRESETS,
    LABELLED_SET_DIR,
    SCORES_FILE,
    GradesError,
    load_labelled_set,
    read_grades_csv,
)


@pytest.fixture(scope="module")
def labelled():
    return load_labelled_set()


def _grades(labelled, grader="lead_a"):
    return {
        (g.external_id, g.criterion): g.score for g in labelled.grade_list if g.grader == grader
    }


def test_the_set_covers_every_category_with_realistic_calls(labelled):
    calls = labelled.calls.values()
    assert 18 <= len(labelled.calls) <= 24
    assert set(Counter(c.category for c in calls)) == set(CATEGORY_PRESETS)
    for call in calls:
        lines = call.transcript.segments
        assert 8 <= len(lines) <= 20, call.call_id
        assert {s.speaker for s in lines} == {"operator", "customer"}
        assert all(s.end > s.start >= 0 for s in lines)
        assert call.transcript.method == "stereo-channel-map"
        assert call.transcript.metrics.turns >= 8
        assert call.notes
    # The designed interruption in sales-03 shows up in the conversation metrics.
    assert labelled.calls["sales-03"].transcript.metrics.roles["operator"].interruptions == 1


def test_designed_defects_and_good_calls(labelled):
    defects = Counter(d for c in labelled.calls.values() for d in c.designed_defects)
    for required in (
        "no_greeting",
        "no_questions",
        "objection_ignored",
        "rude_tone",
        "no_next_step",
    ):
        assert defects[required] >= 1, required
    good = {c.category for c in labelled.calls.values() if not c.designed_defects}
    assert good == set(CATEGORY_PRESETS)


def test_lead_a_grades_every_criterion_of_every_call(labelled):
    grades = _grades(labelled)
    for call in labelled.calls.values():
        preset = labelled.presets[call.category]
        for criterion in preset.criteria:
            assert (call.call_id, criterion.id) in grades, (call.call_id, criterion.id)
            if not criterion.may_be_na:
                assert grades[call.call_id, criterion.id] is not None


def test_conditional_and_na_cases_are_graded_as_designed(labelled):
    a = _grades(labelled)
    # Support: the customer asks to cancel and gets a retention offer / does not.
    assert a["support-02", "retention_offer"] == 5
    assert a["support-03", "retention_offer"] == 1
    assert a["support-01", "retention_offer"] is None  # nobody wanted to cancel
    # Complaints: with a refund request (granted, refused) and without one.
    assert a["complaints-01", "compensation"] == 5
    assert a["complaints-03", "compensation"] == 2
    assert a["complaints-02", "compensation"] is None
    # Sales: no objection raised -> objection handling N/A; ignored objection -> 1.
    assert a["sales-07", "objection_handling"] is None
    assert a["sales-04", "objection_handling"] == 1
    # The designed defects are where the graders put the low scores.
    assert a["sales-02", "greeting"] == 1
    assert a["sales-03", "needs_discovery"] == 1
    assert a["sales-05", "tone"] == 1
    assert a["sales-06", "closing"] == 1
    assert a["support-04", "problem_discovery"] == 1


def test_two_graders_on_enough_calls_disagreeing_a_little(labelled):
    a, b = _grades(labelled, "lead_a"), _grades(labelled, "lead_b")
    assert len({call for call, _ in b}) >= 8
    shared = [(a[k], b[k]) for k in b if a[k] is not None and b[k] is not None]
    differences = Counter(abs(x - y) for x, y in shared)
    assert differences[1] >= 3  # humans disagree now and then ...
    assert set(differences) <= {0, 1}  # ... by one point
    assert all((a[k] is None) == (b[k] is None) for k in b)  # and agree on what applies


def test_grades_frame(labelled):
    frame = labelled.grades
    assert list(frame.columns) == ["call_id", "criterion", "score", "grader"]
    assert str(frame["score"].dtype) == "Int64"
    assert len(frame) == len(labelled.grade_list)
    na = frame[(frame.call_id == "sales-02") & (frame.criterion == "objection_handling")]
    assert na["score"].isna().all()


def _copy_set(tmp_path, csv_text: str):
    target = tmp_path / "set"
    shutil.copytree(LABELLED_SET_DIR, target)
    (target / SCORES_FILE).write_text(csv_text)
    return target


HEADER = "call_id,criterion,score,grader\n"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "sales-01,greeting,5,lead_a\nsales-99,greeting,5,lead_a\n",
            "line 3: unknown call 'sales-99'",
        ),
        (
            "sales-01,empathy,4,lead_a\n",
            "line 2: unknown criterion 'empathy' for call sales-01 (preset sales-default has: "
            "greeting, needs_discovery",
        ),
        (
            "support-01,greeting,1,lead_a\nsupport-01,tone,7,lead_a\n",
            "line 3: score 7 for tone of call support-01 is outside the scale 1-5 of preset "
            "support-default",
        ),
        (
            "sales-01,greeting,,lead_a\n",
            "line 2: greeting of call sales-01 is marked N/A, but in preset sales-default it "
            "always applies",
        ),
    ],
)
def test_grades_that_do_not_fit_the_rubric_name_the_line(tmp_path, rows, message):
    with pytest.raises(GradesError) as raised:
        load_labelled_set(_copy_set(tmp_path, HEADER + rows))
    assert message in str(raised.value)
    assert SCORES_FILE in str(raised.value)


def test_csv_structure_errors_name_every_line():
    text = (
        HEADER
        + "sales-01,greeting,five,lead_a\n"
        + "sales-01,tone,,\n"
        + "\n"
        + "sales-01,closing,4,lead_a\n"
        + "sales-01,closing,3,lead_a\n"
        + "sales-01,presentation,4.5,lead_a\n"
    )
    with pytest.raises(GradesError) as raised:
        read_grades_csv(text, "grades.csv")
    message = str(raised.value)
    assert message.startswith("grades.csv: 4 problem(s)")
    assert "line 2: score 'five' is not a whole number" in message
    assert "line 3: empty grader" in message
    assert "line 6: lead_a already graded closing of call sales-01 on line 5" in message
    assert "line 7: score '4.5' is not a whole number" in message
    with pytest.raises(GradesError, match="line 1: missing column"):
        read_grades_csv("call_id,criterion,points,grader\n", "grades.csv")


def test_csv_accepts_na_spellings_a_bom_and_extra_columns():
    text = "\ufeffgrader,call_id,criterion,score,comment\nlead_a,c-1,tone,N/A,x\nlead_a,c-1,greeting, 4 ,\n"
    grades = read_grades_csv(text, "grades.csv")
    assert [(g.criterion, g.score, g.line) for g in grades] == [
        ("tone", None, 2),
        ("greeting", 4, 3),
    ]


@pytest.fixture(scope="module")
def rules_report(labelled):
    return evaluate_scoring(labelled, ScorerBackends(scorer="rules"))


def test_rules_scorer_scores_every_call_validly_with_grounded_evidence(rules_report, labelled):
    assert rules_report["scorer"] == "rules"
    assert rules_report["calls"] == len(labelled.calls)
    assert rules_report["valid_rate"] == 1.0
    evidence = rules_report["evidence"]
    assert evidence["quotes"] >= 6 * len(labelled.calls)  # at least one per scored criterion
    assert evidence["rate"] == 1.0


def test_model_human_pairs_cover_every_human_grade(rules_report, labelled):
    """Each category's pooled row pairs each human grade with the model's score; a pair
    where either side is N/A is counted as excluded."""
    for category, figures in rules_report["categories"].items():
        ids = {c.call_id for c in labelled.calls.values() if c.category == category}
        grades = [g for g in labelled.grade_list if g.external_id in ids]
        pooled = next(f for f in figures["model_human"] if f["criterion"] == "*")
        assert pooled["pairs"] + pooled["excluded"] == len(grades)
        by_criterion = [f for f in figures["model_human"] if f["criterion"] != "*"]
        assert [f["criterion"] for f in by_criterion] == labelled.presets[category].criterion_ids
        assert sum(f["pairs"] for f in by_criterion) == pooled["pairs"]
        for f in figures["model_human"]:
            assert 0 <= f["exact"] <= f["within_one"] <= 1
            assert f["qwk"] is None or -1 <= f["qwk"] <= 1
    overall = rules_report["overall"]["model_human"]
    assert overall["pairs"] + overall["excluded"] == len(labelled.grade_list)


def test_inter_grader_agreement_by_hand(rules_report):
    # Sales, lead_a vs lead_b on sales-01, -03, -05: 18 pairs (6 criteria x 3 calls), all
    # scored. They differ by one on sales-01 needs_discovery (4 v 5), sales-03 presentation
    # (2 v 3), closing (4 v 5), tone (2 v 3), sales-05 greeting (3 v 2): exact 13/18,
    # within_one 18/18, bias (-1 -1 -1 -1 +1) / 18 = -1/6.
    sales = rules_report["categories"]["sales"]
    assert sales["graders"] == ["lead_a", "lead_b"] and sales["double_graded_calls"] == 3
    pooled = next(f for f in sales["human_human"] if f["criterion"] == "*")
    assert pooled["pairs"] == 18 and pooled["excluded"] == 0
    assert pooled["exact"] == pytest.approx(13 / 18, abs=1e-4)
    assert pooled["within_one"] == 1.0
    assert pooled["bias"] == pytest.approx(-1 / 6, abs=1e-4)
    # Complaints: complaints-04 and -05 have no refund request, so both graders left
    # compensation N/A: those two pairs are excluded.
    complaints = next(
        f for f in rules_report["categories"]["complaints"]["human_human"] if f["criterion"] == "*"
    )
    assert complaints["excluded"] == 2 and complaints["pairs"] == 19


def _cli(*argv):
    parser = argparse.ArgumentParser(prog="callqa")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_eval_scoring_cli_prints_tables_and_json(capsys, monkeypatch, rules_report):
    monkeypatch.delenv("CALLQA_SCORER", raising=False)
    assert _cli("eval", "scoring", "--scorer", "rules", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["categories"] == rules_report["categories"]
    assert report["evidence"] == rules_report["evidence"]
    assert _cli("eval", "scoring", "--scorer", "rules") == 0
    text = capsys.readouterr().out
    assert text == format_report(report) + "\n"
    for category, preset in CATEGORY_PRESETS.items():
        assert f"{category}: preset {preset}" in text
    assert "Validly scored: 22/22 (100.0%)" in text
    assert "graders (3 calls)" in text


def _small_set(tmp_path):
    target = tmp_path / "small"
    (target / "calls").mkdir(parents=True)
    for call_id in ("support-01", "support-04"):
        name = f"{call_id}.json"
        shutil.copy(LABELLED_SET_DIR / "calls" / name, target / "calls" / name)
    (target / SCORES_FILE).write_text(
        HEADER
        + "support-01,greeting,5,a\nsupport-04,greeting,1,a\n"
        + "support-01,greeting,4,b\nsupport-04,greeting,1,b\n"
    )
    return target


def test_eval_scoring_on_another_set(tmp_path, capsys):
    """--set: a folder with its own calls and scores (here: two calls of the bundled set)."""
    target = _small_set(tmp_path)
    assert _cli("eval", "scoring", "--set", str(target), "--scorer", "rules", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calls"] == 2 and list(report["categories"]) == ["support"]
    greeting = report["categories"]["support"]["model_human"][0]
    assert greeting["criterion"] == "greeting" and greeting["pairs"] == 4
    # Graders a and b: (5,4) and (1,1): exact 1/2, bias (6 - 5)/2 = +0.5.
    graders = report["categories"]["support"]["human_human"]
    assert [(f["criterion"], f["pairs"], f["exact"], f["bias"]) for f in graders] == [
        ("greeting", 2, 0.5, 0.5),
        ("*", 2, 0.5, 0.5),
    ]


def test_eval_scoring_with_an_llm_that_never_answers_validly(
    tmp_path, capsys, monkeypatch, fake_llm
):
    """--scorer llm goes through the configured endpoint; calls without a valid result
    are counted as not validly scored and give no model-human pairs."""
    fake_llm.responder = "I would rather not answer in JSON."
    monkeypatch.setenv("CALLQA_LLM_API_BASE", fake_llm.api_base)
    monkeypatch.setenv("CALLQA_LLM_API_KEY", "k-test")
    target = _small_set(tmp_path)
    assert _cli("eval", "scoring", "--set", str(target), "--scorer", "llm", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert fake_llm.requests  # every call was sent to the model
    assert (report["valid"], report["valid_rate"]) == (0, 0.0)
    assert report["evidence"] == {"quotes": 0, "verified": 0, "rate": None}
    assert all(r["error"] for r in report["results"])
    support = report["categories"]["support"]
    assert support["model_human"] == [] and support["human_human"][-1]["pairs"] == 2
    assert report["overall"]["model_human"]["pairs"] == 0
    assert "no validly scored call has human scores" in format_report(report)
