"""Data-quality expectations (great-expectations) guarding the aggregate tables."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from callqa.config.models import Scale


@dataclass
class ExpectationReport:
    evaluated: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.failures


def _validate(gx, context, name: str, frame, expectations) -> ExpectationReport:
    source = context.data_sources.add_pandas(f"callqa_{name}")
    batch = (
        source.add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite = gx.ExpectationSuite(name=name)
    for expectation in expectations:
        suite.add_expectation(expectation)
    result = batch.validate(suite)
    report = ExpectationReport(evaluated=len(result.results))
    for r in result.results:
        if not r.success:
            config = r.expectation_config
            kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
            unexpected = r.result.get("unexpected_count")
            report.failures.append(
                f"{name}: {config.type} {kwargs}"
                + (f" ({unexpected} unexpected)" if unexpected is not None else "")
            )
    return report


def validate_aggregates(
    call_rows: list[dict],
    criterion_rows: list[dict],
    scale: Scale,
    pattern_rows: Sequence[dict] = (),
) -> ExpectationReport:
    """Run the suites of the three aggregate tables over the rows about to be published."""
    # Keep great-expectations offline (no usage statistics) and out of the run logs.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    e = gx.expectations
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    report = ExpectationReport()
    if call_rows:
        calls = _validate(
            gx,
            context,
            "daily_aggregates",
            pd.DataFrame(call_rows),
            [
                e.ExpectCompoundColumnsToBeUnique(column_list=["day", "operator"]),
                *[e.ExpectColumnValuesToNotBeNull(column=c) for c in ("day", "operator", "calls")],
                e.ExpectColumnValuesToBeBetween(column="calls", min_value=1),
                *[
                    e.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=100)
                    for c in ("mean_total", "min_total", "max_total")
                ],
                e.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="mean_total", column_B="min_total", or_equal=True
                ),
                e.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="max_total", column_B="mean_total", or_equal=True
                ),
                *[
                    e.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1)
                    for c in ("mean_operator_talk_share", "mean_silence_ratio")
                ],
                *[
                    e.ExpectColumnValuesToBeBetween(column=c, min_value=0)
                    for c in ("cost_usd", "llm_cost_usd", "speech_cost_usd")
                ],
                e.ExpectColumnValuesToBeBetween(column="unpriced_calls", min_value=0),
                e.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="calls", column_B="unpriced_calls", or_equal=True
                ),
                # NULL (no quotes cited that day) is allowed: the expectation skips it.
                e.ExpectColumnValuesToBeBetween(
                    column="mean_evidence_rate", min_value=0, max_value=1
                ),
            ],
        )
        report.evaluated += calls.evaluated
        report.failures += calls.failures
    if criterion_rows:
        criteria = _validate(
            gx,
            context,
            "daily_criterion_aggregates",
            pd.DataFrame(criterion_rows),
            [
                e.ExpectCompoundColumnsToBeUnique(column_list=["day", "operator", "criterion"]),
                e.ExpectColumnValuesToBeBetween(
                    column="mean_score", min_value=scale.min, max_value=scale.max
                ),
                e.ExpectColumnValuesToBeBetween(column="calls", min_value=1),
            ],
        )
        report.evaluated += criteria.evaluated
        report.failures += criteria.failures
    if pattern_rows:
        patterns = _validate(
            gx,
            context,
            "daily_pattern_aggregates",
            pd.DataFrame(list(pattern_rows)),
            [
                e.ExpectCompoundColumnsToBeUnique(column_list=["day", "operator", "pattern"]),
                *[
                    e.ExpectColumnValuesToNotBeNull(column=c)
                    for c in ("day", "operator", "pattern", "kind")
                ],
                e.ExpectColumnValuesToBeBetween(column="calls", min_value=1),
                e.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="mentions", column_B="calls", or_equal=True
                ),
                e.ExpectColumnValuesToBeBetween(column="share_of_calls", min_value=0, max_value=1),
            ],
        )
        report.evaluated += patterns.evaluated
        report.failures += patterns.failures
    return report
