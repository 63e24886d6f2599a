"""The labelled set shipped with callqa (calls with designed defects and their human
scores), and the human-scores CSV that analysts load (`callqa grades load`).

The CSV has the columns `call_id, criterion, score, grader` (others are ignored); an
empty score (or `NA`, `N/A`) means the grader marked the criterion N/A. Every problem
names the file and line, so a QA lead can fix the spreadsheet.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callqa.calls.keys import EXTERNAL_ID_RE
from callqa.config.models import Preset, Role
from callqa.errors import CallqaError
from callqa.speech.diarization import DiarizedSegment, DiarizedTranscript, conversation_metrics

if TYPE_CHECKING:
    import pandas as pd

    from callqa.config.registry import Registry

LABELLED_SET_DIR = Path(__file__).parent / "labelled_set"
SCORES_FILE = "human_scores.csv"
CALLS_DIR = "calls"
# The bundled preset each category of the labelled set is scored with.
CATEGORY_PRESETS = {
    "sales": "sales-default",
    "support": "support-default",
    "complaints": "complaints-default",
}
COLUMNS = ("call_id", "criterion", "score", "grader")
NA_VALUES = {"", "na", "n/a"}
MAX_LISTED = 20  # problems listed in one error; the rest are counted


class GradesError(CallqaError):
    """A human-scores CSV (or the labelled set) is malformed or does not fit the rubric."""


class _Segment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    speaker: Role
    text: str = Field(min_length=1)


class _CallFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    call_id: str = Field(pattern=EXTERNAL_ID_RE.pattern)
    category: str
    segments: list[_Segment] = Field(min_length=1)
    designed_defects: list[str]
    notes: str


@dataclass(frozen=True)
class LabelledCall:
    call_id: str
    category: str
    designed_defects: list[str]
    notes: str
    transcript: DiarizedTranscript


@dataclass(frozen=True)
class HumanGrade:
    external_id: str
    criterion: str
    grader: str
    score: int | None  # None: the grader marked it N/A
    line: int  # in the CSV, counting the header as line 1

    def as_row(self) -> dict:
        return {
            "external_id": self.external_id,
            "criterion": self.criterion,
            "grader": self.grader,
            "score": self.score,
        }


@dataclass(frozen=True)
class LabelledSet:
    directory: Path
    calls: dict[str, LabelledCall]
    presets: dict[str, Preset]  # category -> the preset its calls are scored with
    grade_list: list[HumanGrade]

    @property
    def grades(self) -> pd.DataFrame:
        """call_id, criterion, score (nullable integer; <NA> = N/A), grader."""
        import pandas as pd

        frame = pd.DataFrame(
            [
                {
                    "call_id": g.external_id,
                    "criterion": g.criterion,
                    "score": g.score,
                    "grader": g.grader,
                }
                for g in self.grade_list
            ],
            columns=list(COLUMNS),
        )
        return frame.astype({"score": "Int64"})

    def graded_calls(self, grader: str | None = None) -> set[str]:
        return {g.external_id for g in self.grade_list if grader in (None, g.grader)}


def _fail(source: str, problems: Sequence[str]) -> GradesError:
    listed = list(problems[:MAX_LISTED])
    more = len(problems) - len(listed)
    tail = [f"... and {more} more"] if more else []
    return GradesError(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(listed + tail))


def _score(raw: str) -> tuple[int | None, str | None]:
    value = raw.strip()
    if value.lower() in NA_VALUES:
        return None, None
    try:
        return int(value), None
    except ValueError:
        return None, f"score {raw!r} is not a whole number (leave it empty for N/A)"


def read_grades_csv(text: str, source: str) -> list[HumanGrade]:
    """Parse the CSV; raise `GradesError` naming every bad line (missing columns, empty
    ids, a score that is not a whole number, a grade given twice)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))  # spreadsheets add a BOM
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise GradesError(
            f"{source} line 1: missing column(s) {', '.join(missing)} (the header must name "
            f"{', '.join(COLUMNS)}; found: {', '.join(header) or 'nothing'})"
        )
    reader.fieldnames = header
    grades: list[HumanGrade] = []
    problems: list[str] = []
    first_seen: dict[tuple[str, str, str], int] = {}
    for row in reader:
        line = reader.line_num
        values = {c: (row.get(c) or "").strip() for c in COLUMNS}
        if not any(values.values()):
            continue  # a blank line
        empty = [c for c in ("call_id", "criterion", "grader") if not values[c]]
        if empty:
            problems.append(f"line {line}: empty {', '.join(empty)}")
            continue
        score, problem = _score(values["score"])
        if problem:
            problems.append(f"line {line}: {problem}")
            continue
        key = (values["call_id"], values["criterion"], values["grader"])
        if key in first_seen:
            problems.append(
                f"line {line}: {values['grader']} already graded {values['criterion']} of call "
                f"{values['call_id']} on line {first_seen[key]}"
            )
            continue
        first_seen[key] = line
        grades.append(HumanGrade(*key, score=score, line=line))
    if problems:
        raise _fail(source, problems)
    return grades


def rubric_problems(grade: HumanGrade, preset: Preset) -> str | None:
    """Why a grade does not fit the rubric of the call's preset, or None."""
    by_id = {c.id: c for c in preset.criteria}
    criterion = by_id.get(grade.criterion)
    if criterion is None:
        return (
            f"line {grade.line}: unknown criterion {grade.criterion!r} for call "
            f"{grade.external_id} (preset {preset.id} has: {', '.join(preset.criterion_ids)})"
        )
    if grade.score is None:
        if not criterion.may_be_na:
            return (
                f"line {grade.line}: {grade.criterion} of call {grade.external_id} is marked N/A, "
                f"but in preset {preset.id} it always applies: give a score"
            )
        return None
    if not preset.scale.min <= grade.score <= preset.scale.max:
        return (
            f"line {grade.line}: score {grade.score} for {grade.criterion} of call "
            f"{grade.external_id} is outside the scale {preset.scale.min}-{preset.scale.max} "
            f"of preset {preset.id}"
        )
    return None


def check_grades(
    grades: Sequence[HumanGrade], presets: Mapping[str, Preset]
) -> tuple[list[str], list[HumanGrade]]:
    """(problems, grades of calls not in `presets`): `presets` maps each known call to the
    preset whose rubric its grades must fit."""
    problems, unknown = [], []
    for g in grades:
        preset = presets.get(g.external_id)
        if preset is None:
            unknown.append(g)
            continue
        problem = rubric_problems(g, preset)
        if problem:
            problems.append(problem)
    return problems, unknown


def _read_call(path: Path) -> _CallFile:
    try:
        call = _CallFile.model_validate(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise GradesError(f"{path}: cannot read the call: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise GradesError(f"{path}: invalid call: {problems}") from None
    if call.call_id != path.stem:
        raise GradesError(f"{path}: call_id {call.call_id!r} must match the file name")
    return call


def transcript_of(segments: Sequence[_Segment]) -> DiarizedTranscript:
    """The call as the diarization step would hand it to a scorer (a stereo recording:
    operator on channel 0, customer on channel 1), with real conversation metrics."""
    diarized = sorted(
        (
            DiarizedSegment(
                start=s.start,
                end=s.end,
                speaker=s.speaker,
                text=s.text,
                channel=0 if s.speaker == "operator" else 1,
            )
            for s in segments
        ),
        key=lambda s: (s.start, s.end),
    )
    duration = round(max(s.end for s in diarized) + 0.5, 2)
    return DiarizedTranscript(
        method="stereo-channel-map",
        language="en",
        duration_s=duration,
        segments=diarized,
        metrics=conversation_metrics(diarized, duration),
    )


def load_labelled_set(
    directory: Path | None = None, registry: Registry | None = None
) -> LabelledSet:
    """Read the calls (`calls/*.json`) and `human_scores.csv` of a labelled set (default:
    the bundled one) and check every grade against its call's preset."""
    from callqa.config.registry import default_registry

    directory = Path(directory or LABELLED_SET_DIR)
    registry = registry or default_registry()
    paths = sorted((directory / CALLS_DIR).glob("*.json"))
    if not paths:
        raise GradesError(f"{directory / CALLS_DIR}: no calls (*.json) found")
    calls: dict[str, LabelledCall] = {}
    presets: dict[str, Preset] = {}
    for path in paths:
        raw = _read_call(path)
        if raw.category not in CATEGORY_PRESETS:
            raise GradesError(
                f"{path}: category {raw.category!r} has no preset (known: "
                f"{', '.join(CATEGORY_PRESETS)})"
            )
        presets.setdefault(raw.category, registry.preset(CATEGORY_PRESETS[raw.category]))
        calls[raw.call_id] = LabelledCall(
            call_id=raw.call_id,
            category=raw.category,
            designed_defects=raw.designed_defects,
            notes=raw.notes,
            transcript=transcript_of(raw.segments),
        )
    order = list(CATEGORY_PRESETS)
    presets = dict(sorted(presets.items(), key=lambda item: order.index(item[0])))
    scores_path = directory / SCORES_FILE
    try:
        text = scores_path.read_text()
    except OSError as exc:
        raise GradesError(f"{scores_path}: cannot read the human scores: {exc}") from exc
    grades = read_grades_csv(text, str(scores_path))
    problems, unknown = check_grades(grades, {cid: presets[c.category] for cid, c in calls.items()})
    problems += [f"line {g.line}: unknown call {g.external_id!r}" for g in unknown]
    if problems:
        raise _fail(str(scores_path), sorted(problems, key=_line_number))
    return LabelledSet(directory=directory, calls=calls, presets=presets, grade_list=grades)


def _line_number(problem: str) -> int:
    return int(problem.split(":", 1)[0].removeprefix("line "))
