"""How well two sets of scores for the same calls agree: a scorer and human graders, or two
graders.

Scores are integers on a known scale (the preset's). A pair where either side is N/A
(None) is left out of every figure and counted in `excluded`: N/A is not a score, and
whether a criterion applied is a different question from how well it was met.

- `exact`: share of pairs with equal scores; `within_one`: share with |difference| <= 1.
- `qwk`: Cohen's kappa with quadratic weights over the scale's categories: 1 for perfect
  agreement, 0 for what chance gives, below 0 for worse; None when undefined (no pairs,
  or both sides give one and the same score throughout, so chance explains everything).
- `spearman`: rank correlation with average ranks for ties; None when a side is constant.
- `bias`: mean of the first side minus mean of the second (model minus human): > 0 means
  the model is more lenient than the graders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

POOLED = "*"
Score = int | None


@dataclass(frozen=True)
class Agreement:
    pairs: int  # pairs with both sides scored
    excluded: int  # pairs left out because a side was N/A
    exact: float | None
    within_one: float | None
    qwk: float | None
    spearman: float | None
    bias: float | None

    def as_dict(self, digits: int = 4) -> dict:
        return {k: round(v, digits) if isinstance(v, float) else v for k, v in asdict(self).items()}


def scored_pairs(first: Sequence[Score], second: Sequence[Score]) -> tuple[list, list, int]:
    """The pairs where both sides are scored, and how many were left out as N/A."""
    if len(first) != len(second):
        raise ValueError(f"unpaired scores: {len(first)} against {len(second)}")
    kept = [(a, b) for a, b in zip(first, second, strict=True) if a is not None and b is not None]
    return [a for a, _ in kept], [b for _, b in kept], len(first) - len(kept)


def exact_agreement(first: Sequence[int], second: Sequence[int]) -> float | None:
    if not first:
        return None
    return sum(a == b for a, b in zip(first, second, strict=True)) / len(first)


def within_one(first: Sequence[int], second: Sequence[int]) -> float | None:
    if not first:
        return None
    return sum(abs(a - b) <= 1 for a, b in zip(first, second, strict=True)) / len(first)


def quadratic_weighted_kappa(
    first: Sequence[int], second: Sequence[int], scale_min: int, scale_max: int
) -> float | None:
    """1 - sum(w * observed) / sum(w * expected), w = (i - j)^2 / (k - 1)^2 over the k
    categories of the scale; expected = outer product of the two sides' histograms / n."""
    import numpy as np

    if not first:
        return None
    if scale_max <= scale_min:
        raise ValueError(f"scale {scale_min}-{scale_max}: max must be greater than min")
    outside = sorted({s for s in [*first, *second] if not scale_min <= s <= scale_max})
    if outside:
        raise ValueError(f"scores {outside} outside the scale {scale_min}-{scale_max}")
    k = scale_max - scale_min + 1
    observed = np.zeros((k, k))
    for a, b in zip(first, second, strict=True):
        observed[a - scale_min, b - scale_min] += 1
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / len(first)
    levels = np.arange(k)
    weights = (levels[:, None] - levels[None, :]) ** 2 / (k - 1) ** 2
    chance = float((weights * expected).sum())
    if chance == 0:
        return None
    return 1.0 - float((weights * observed).sum()) / chance


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for position in range(i, j + 1):
            ranks[order[position]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(first: Sequence[int], second: Sequence[int]) -> float | None:
    """Pearson correlation of the average ranks; None for fewer than 2 pairs or a
    constant side (a correlation with a constant is undefined, not zero)."""
    if len(first) < 2 or len(set(first)) < 2 or len(set(second)) < 2:
        return None
    ra, rb = average_ranks(first), average_ranks(second)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((a - ma) * (b - mb) for a, b in zip(ra, rb, strict=True))
    var_a = sum((a - ma) ** 2 for a in ra)
    var_b = sum((b - mb) ** 2 for b in rb)
    return cov / (var_a * var_b) ** 0.5


def bias(first: Sequence[int], second: Sequence[int]) -> float | None:
    if not first:
        return None
    return sum(first) / len(first) - sum(second) / len(second)


def agreement(
    first: Sequence[Score], second: Sequence[Score], scale_min: int, scale_max: int
) -> Agreement:
    """Every figure for paired scores (first = model or one grader, second = human)."""
    a, b, excluded = scored_pairs(first, second)
    return Agreement(
        pairs=len(a),
        excluded=excluded,
        exact=exact_agreement(a, b),
        within_one=within_one(a, b),
        qwk=quadratic_weighted_kappa(a, b, scale_min, scale_max),
        spearman=spearman(a, b),
        bias=bias(a, b),
    )


def agreement_table(
    pairs_frame: pd.DataFrame,
    scale_min: int = 1,
    scale_max: int = 5,
    first: str = "model",
    second: str = "human",
) -> pd.DataFrame:
    """One row per criterion (in order of first appearance) and one pooled row ('*').

    `pairs_frame` has a `criterion` column and the two score columns (`first`, `second`;
    missing values = N/A). The result has `criterion` and the `Agreement` fields
    (undefined figures are NaN)."""
    import pandas as pd

    def _scores(series) -> list[Score]:
        return [None if pd.isna(v) else int(v) for v in series]

    rows = []
    groups = [(c, g) for c, g in pairs_frame.groupby("criterion", sort=False)]
    for criterion, group in [*groups, (POOLED, pairs_frame)]:
        result = agreement(_scores(group[first]), _scores(group[second]), scale_min, scale_max)
        rows.append({"criterion": criterion, **result.as_dict()})
    columns = ["criterion", *Agreement.__dataclass_fields__]
    return pd.DataFrame(rows, columns=columns)


MODEL_HUMAN = "model-human"
HUMAN_HUMAN = "human-human"
ANY = "*"  # prompt version and variant of human-human rows


def grader_pairs(grades: Iterable[Mapping]) -> list[dict]:
    """Every two graders of the same call and criterion, as one pair (first grader by
    name): `external_id`, `criterion`, `first`, `second`, `graders`."""
    by_item: dict[tuple[str, str], dict[str, Score]] = {}
    for g in grades:
        by_item.setdefault((g["external_id"], g["criterion"]), {})[g["grader"]] = g["score"]
    pairs = []
    for (external_id, criterion), scores in by_item.items():
        for a, b in combinations(sorted(scores), 2):
            pairs.append(
                {
                    "external_id": external_id,
                    "criterion": criterion,
                    "first": scores[a],
                    "second": scores[b],
                    "graders": f"{a}/{b}",
                }
            )
    return pairs


def model_pairs(model_scores: Mapping[str, Mapping[str, Score]], grades: Iterable[Mapping]):
    """Each human grade of a call the model scored, against the model's score for the
    criterion (a call graded by two people gives two pairs): `external_id`, `criterion`,
    `model`, `human`, `grader`."""
    return [
        {
            "external_id": g["external_id"],
            "criterion": g["criterion"],
            "model": model_scores[g["external_id"]][g["criterion"]],
            "human": g["score"],
            "grader": g["grader"],
        }
        for g in grades
        if g["criterion"] in model_scores.get(g["external_id"], {})
    ]


def _table_rows(pairs: list[dict], scale: tuple[int, int], first: str, second: str, **key):
    import pandas as pd

    frame = pd.DataFrame(pairs, columns=["criterion", first, second])
    table = agreement_table(frame, scale[0], scale[1], first=first, second=second)
    # The frame holds undefined figures as NaN; rows for the warehouse hold None.
    return [
        {**key, **{k: None if pd.isna(v) else v for k, v in row.items()}}
        for row in table.to_dict("records")
    ]


def agreement_rows(
    versions: Sequence[Mapping],
    grades: Sequence[Mapping],
    call_presets: Mapping[str, str],
    scales: Mapping[str, tuple[int, int]],
) -> list[dict]:
    """The rows of `grader_agreement` for one tenant.

    model-human: per preset, prompt version and variant, each criterion and pooled ('*'),
    from `versions` (`external_id`, `preset`, `prompt_version`, `variant`, `scores`:
    criterion -> score) against the human `grades` (`external_id`, `criterion`, `grader`,
    `score`). human-human: per preset (of the call, from `call_presets`), every two graders
    of a call. `scales`: preset -> (min, max). Groups without a graded call give no rows."""
    rows: list[dict] = []
    groups: dict[tuple[str, str, str], dict[str, Mapping]] = {}
    for v in versions:
        key = (v["preset"], v["prompt_version"], v["variant"])
        groups.setdefault(key, {})[v["external_id"]] = v["scores"]
    for (preset, prompt_version, variant), model_scores in sorted(groups.items()):
        pairs = model_pairs(model_scores, grades)
        if pairs:
            rows += _table_rows(
                pairs,
                scales[preset],
                "model",
                "human",
                comparison=MODEL_HUMAN,
                preset=preset,
                prompt_version=prompt_version,
                variant=variant,
            )
    by_preset: dict[str, list[dict]] = {}
    for pair in grader_pairs(grades):
        preset = call_presets.get(pair["external_id"])
        if preset is not None:
            by_preset.setdefault(preset, []).append(pair)
    for preset, pairs in sorted(by_preset.items()):
        rows += _table_rows(
            pairs,
            scales[preset],
            "first",
            "second",
            comparison=HUMAN_HUMAN,
            preset=preset,
            prompt_version=ANY,
            variant=ANY,
        )
    return rows
