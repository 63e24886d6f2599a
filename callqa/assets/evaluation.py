"""The `grader_agreement` asset: how well the scorer agrees with a tenant's human graders
(and the graders with each other), per preset, prompt version, variant and criterion."""

import dagster as dg

from callqa.assets.aggregates import table_schema, tenant_table_asset
from callqa.config.registry import default_registry
from callqa.evaluation.agreement import HUMAN_HUMAN, MODEL_HUMAN, agreement_rows
from callqa.resources import WarehouseResource
from callqa.storage import tables as t
from callqa.storage.grades import AGREEMENT_FIELDS

GRADER_AGREEMENT = "grader_agreement"
# The agreement table's figures, in the order the warehouse stores them.
MARKDOWN_COLUMNS = AGREEMENT_FIELDS

COLUMN_DESCRIPTIONS = {
    "id": "surrogate key",
    "tenant": "tenant id (the asset's partition)",
    "comparison": "model-human: the scorer against each human grade; human-human: two graders",
    "preset": "preset the calls were scored with",
    "prompt_version": "prompt version (content hash) of the model's scores; '*' for human-human",
    "variant": "A/B variant of the model's scores; '*' for human-human",
    "criterion": "rubric criterion id; '*' = all criteria pooled",
    "pairs": "score pairs compared (pairs where either side is N/A are left out)",
    "exact": "share of pairs with equal scores, 0-1",
    "within_one": "share of pairs at most one point apart, 0-1",
    "qwk": "quadratic-weighted Cohen's kappa (1 perfect, 0 chance); NULL when undefined",
    "spearman": "Spearman rank correlation; NULL when a side is constant",
    "bias": "mean model (or first grader's) score minus mean human (second grader's) score",
    "computed_at": "when the agreement was last computed (UTC)",
}


def build_grader_agreement(tenant_ids: list[str]) -> dg.AssetsDefinition:
    """The agreement asset, partitioned by the tenants configured when the code loads."""
    return tenant_table_asset(
        grader_agreement,
        name=GRADER_AGREEMENT,
        tenant_ids=tenant_ids,
        kinds={"sql", "pandas"},
        metadata={
            "dagster/table_name": "grader_agreement",
            "dagster/column_schema": table_schema(t.grader_agreement, COLUMN_DESCRIPTIONS),
        },
        description=(
            "How far to trust a tenant's scores: the model's criterion scores against the "
            "human scores analysts loaded (`callqa grades load`), per preset, prompt version, "
            "variant and criterion (and all criteria pooled, '*'): pairs, exact agreement, "
            "agreement within ±1, quadratic-weighted Cohen's kappa, Spearman correlation and "
            "bias (mean model - mean human); and between two graders where both graded a "
            "call. N/A pairs are left out. Written to the `grader_agreement` table in one "
            "transaction; re-run it after loading grades or re-scoring."
        ),
    )


def _call_presets(registry, tenant_id: str, known: dict[str, dict]) -> dict[str, str]:
    """The preset of each call: the one it was scored with if still configured, else the
    one its category maps to now."""
    tenant = registry.tenant(tenant_id)
    return {
        external_id: info["preset"]
        if info["preset"] in registry.presets
        else tenant.preset_id_for(info["category"])
        for external_id, info in known.items()
    }


def _scales(registry, versions: list[dict], presets: set[str]) -> dict[str, tuple[int, int]]:
    """Each preset's scale: from the config, else as stored with its scores."""
    scales = {
        v["preset"]: (v["scale_min"], v["scale_max"])
        for v in versions
        if v["scale_min"] is not None and v["scale_max"] is not None
    }
    for preset_id in presets | set(scales):
        if preset_id in registry.presets:
            scale = registry.presets[preset_id].scale
            scales[preset_id] = (scale.min, scale.max)
    return scales


def agreement_markdown(rows: list[dict]) -> str:
    if not rows:
        return "_no graded call has a valid score yet: load human scores with `callqa grades load`_"
    header = "| " + " | ".join(MARKDOWN_COLUMNS) + " |\n|" + "---|" * len(MARKDOWN_COLUMNS)
    lines = [
        "| " + " | ".join(_cell(row[c]) for c in MARKDOWN_COLUMNS) + " |"
        for row in rows
        if row["criterion"] == "*"
    ]
    return "\n".join([header, *lines]) + "\n\n_all criteria pooled; per criterion in the table_"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|")


def grader_agreement(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    tenant = context.partition_key
    wh = warehouse.get()
    registry = default_registry()
    grades = wh.human_grades(tenant)
    versions = wh.scored_versions(tenant)
    known = wh.known_calls(tenant)
    call_presets = _call_presets(registry, tenant, known)
    graded = {g["external_id"] for g in grades}
    presets = {call_presets[c] for c in graded if c in call_presets}
    rows = agreement_rows(versions, grades, call_presets, _scales(registry, versions, presets))
    wh.replace_grader_agreement(tenant, rows)
    pooled = [r for r in rows if r["criterion"] == "*"]
    model_human = [r for r in pooled if r["comparison"] == MODEL_HUMAN]
    human_human = [r for r in pooled if r["comparison"] == HUMAN_HUMAN]
    if not rows and grades:
        context.log.warning(
            f"tenant {tenant!r} has {len(grades)} human grade(s) but none of their calls has "
            "a valid score yet"
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "agreement": dg.MetadataValue.md(agreement_markdown(rows)),
            "grades": len(grades),
            "graded_calls": len(graded),
            "graders": len({g["grader"] for g in grades}),
            "model_human_pairs": sum(r["pairs"] for r in model_human),
            "human_human_pairs": sum(r["pairs"] for r in human_human),
        }
    )
