"""The per-call asset chain: raw_audio → transcript → diarized_transcript → scored_analysis.

Every input is derived from the partition key (`<tenant>__<call id>`) and the warehouse,
so any call can be re-materialized or backfilled without run config. Each asset writes
its own table through the warehouse resource and reports in-asset, blocking checks,
partitioned like the asset (a check result belongs to its call).

What the UI shows for a call: every materialization carries the call's tenant, operator,
category, date and duration; `scored_analysis` adds the evidence table (criterion, score,
quote, start time). A call that fails (bad input, provider error, failed blocking check)
fails its step with a `dg.Failure` whose description and metadata name the call, the
stage and the error, and the staged call is marked `failed` with the same message.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from callqa.assets import checks
from callqa.assets.partitions import calls_partitions
from callqa.assets.pools import SCORING_POOL, STT_POOL
from callqa.calls import service
from callqa.calls.keys import CallKey, parse_key
from callqa.calls.record import AnalysisRecord
from callqa.config.registry import default_registry
from callqa.crm.file_drop import read_source, source_label, source_suffix
from callqa.errors import CallqaError
from callqa.resources import AudioStoreResource, SpeechToTextResource, WarehouseResource
from callqa.resources.scorers import ScorerResource
from callqa.speech import audio as audio_lib
from callqa.speech.diarization import DiarizedTranscript
from callqa.speech.transcript import Transcript
from callqa.storage.warehouse import Warehouse

GROUP = "calls"
OWNERS = ["team:callqa"]
# Every per-call asset holds the call's words or voice: personal data.
CALL_TAGS = {"domain": "calls", "pii": "true"}


def _call_failure(key: CallKey, stage: str, error: str, **metadata: str) -> dg.Failure:
    """The step failure for one call: its description names the call, the stage and the
    problem, and its metadata carries them as fields (the run's event log shows both)."""
    return dg.Failure(
        description=f"call {key.partition_key}: {stage}: {error}",
        metadata={
            "call": key.partition_key,
            "tenant": key.tenant,
            "stage": stage,
            "error": error,
            **metadata,
        },
    )


@contextmanager
def _recorded_failure(warehouse: Warehouse, key: CallKey, stage: str) -> Iterator[None]:
    """Record a bad input against the staged call and fail the step with a clear message."""
    try:
        yield
    except CallqaError as exc:
        warehouse.set_staged_status(key.tenant, [key.external_id], "failed", f"{stage}: {exc}")
        # The step already retried what can be retried (transport errors inside litellm,
        # one validation round-trip); re-executing the run retries the call as a whole.
        raise _call_failure(key, stage, str(exc)) from exc


def _failed_checks(
    warehouse: Warehouse, key: CallKey, stage: str, results: list[dg.AssetCheckResult]
) -> dg.Failure | None:
    """A blocking check that fails marks the staged call `failed` with the check's message,
    and returns the `dg.Failure` the asset raises once it has reported its results.

    The asset yields its MaterializeResult (so the check evaluations, with their metadata,
    are recorded for the call's partition) and then raises the failure, so the call's
    downstream assets do not run and the step failure says which check failed and why; the
    status and error are what `callqa retry` shows.
    """
    failed = [r for r in results if not r.passed and r.severity == dg.AssetCheckSeverity.ERROR]
    if not failed:
        return None
    message = "; ".join(f"check {r.check_name} failed: {_problem(r)}" for r in failed)
    warehouse.set_staged_status(key.tenant, [key.external_id], "failed", f"{stage}: {message}")
    return _call_failure(
        key, stage, message, failed_checks=", ".join(r.check_name or "" for r in failed)
    )


def _problem(result: dg.AssetCheckResult) -> str:
    if result.description:
        return result.description
    for name in ("problem", "problems", "missing", "details", "first_errors"):
        value = result.metadata.get(name)
        if value is not None:
            text = getattr(value, "value", value)
            return f"{name}: {text}"
    return "see the check's metadata"


def _call_metadata(key: CallKey, call: dict) -> dict:
    """What identifies a call in the UI, on every per-call materialization."""
    started = call["started_at"]
    return {
        "tenant": key.tenant,
        "call_id": key.external_id,
        "operator": call["operator"] or "unknown",
        "category": call["category"] or "default",
        # The day the call counts in the aggregates: its start, or when raw_audio last ran.
        "call_date": _call_day(call).isoformat(),
        "started_at": dg.MetadataValue.timestamp(started) if started else "unknown",
        "duration_s": call["duration_s"],
    }


def _call_day(call: dict):
    return (call["started_at"] or call["updated_at"]).date()


def _staged(warehouse: Warehouse, key: CallKey) -> dict:
    row = warehouse.staged_call(key.tenant, key.external_id)
    if row is None:
        raise _call_failure(key, "raw_audio", "the call is not staged in the warehouse")
    return row


def _upstream_missing(key: CallKey, stage: str, upstream: str) -> dg.Failure:
    return _call_failure(key, stage, f"{upstream} has not been materialized")


def _preset_for(key: CallKey, category: str | None):
    return default_registry().preset_for(key.tenant, category)


@dg.asset(
    partitions_def=calls_partitions,
    group_name=GROUP,
    owners=OWNERS,
    tags=CALL_TAGS,
    kinds={"audio", "python"},
    metadata={"dagster/table_name": "calls"},
    check_specs=[checks.spec(checks.RECORDING_DECODABLE, "raw_audio", calls_partitions)],
)
def raw_audio(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, audio_store: AudioStoreResource
) -> Iterator[dg.MaterializeResult]:
    """The call's original recording, kept byte for byte in the audio store and probed.

    Reads the staged call (`staged_calls`: a local file or a CRM URL fetched safely), stores
    the bytes under the tenant in the audio store, and records the probe (duration,
    channels, sample rate, codec, sha256) with the call's operator, category and start time
    in the warehouse table `calls`. A recording that does not decode fails the call here.
    """
    key = parse_key(context.partition_key)
    wh = warehouse.get()
    staged = _staged(wh, key)
    with _recorded_failure(wh, key, "raw_audio"):
        data = read_source(staged["source_uri"])
        decoded = service.decode_recording(data, source_label(staged["source_uri"]))
    probe = decoded.probe
    uri = audio_store.put(
        key.tenant, key.external_id, probe.sha256, source_suffix(staged["source_uri"]), data
    )
    wh.upsert_call(
        tenant=key.tenant,
        external_id=key.external_id,
        partition_key=key.partition_key,
        audio_uri=uri,
        sha256=probe.sha256,
        size_bytes=probe.size_bytes,
        codec=probe.codec,
        container=probe.container,
        channels=probe.channels,
        sample_rate=probe.sample_rate,
        duration_s=probe.duration_s,
        category=staged["category"],
        operator=staged["operator"],
        started_at=staged["started_at"],
    )
    call = wh.call(key.tenant, key.external_id)
    check_results = [checks.check_recording(probe)]
    failure = _failed_checks(wh, key, "raw_audio", check_results)
    yield dg.MaterializeResult(
        metadata={
            **_call_metadata(key, call),
            "channels": probe.channels,
            "sample_rate": probe.sample_rate,
            "codec": probe.codec,
            "container": probe.container,
            "size_bytes": probe.size_bytes,
            "sha256": probe.sha256,
            "audio_uri": dg.MetadataValue.url(uri),
        },
        check_results=check_results,
    )
    if failure:
        raise failure


@dg.asset(
    partitions_def=calls_partitions,
    group_name=GROUP,
    owners=OWNERS,
    tags=CALL_TAGS,
    kinds={"faster-whisper", "python"},
    metadata={"dagster/table_name": "transcripts"},
    deps=[raw_audio],
    pool=STT_POOL,
    check_specs=[checks.spec(checks.TRANSCRIPT_COVERS_SPEECH, "transcript", calls_partitions)],
)
def transcript(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    audio_store: AudioStoreResource,
    stt: SpeechToTextResource,
) -> Iterator[dg.MaterializeResult]:
    """Speech-to-text of the recording, with word timestamps; stereo recordings per channel.

    The call's preset picks the provider (faster-whisper locally by default, or an
    OpenAI-compatible transcription API) and the model. Stored in the warehouse table
    `transcripts` (stage `stt`). Runs in pool `callqa_stt`, which bounds how many calls
    are transcribed at once.
    """
    key = parse_key(context.partition_key)
    wh = warehouse.get()
    call = wh.call(key.tenant, key.external_id)
    if call is None:
        raise _upstream_missing(key, "transcript", "raw_audio")
    preset = _preset_for(key, call["category"])
    with _recorded_failure(wh, key, "transcript"):
        decoded = service.decode_recording(
            audio_store.get(key.tenant, call["audio_uri"]), call["audio_uri"]
        )
        result, elapsed = service.transcribe(decoded, stt.for_preset(preset.speech))
    wh.upsert_transcript(
        tenant=key.tenant,
        external_id=key.external_id,
        stage="stt",
        model=result.model,
        language=result.language,
        word_count=result.word_count,
        data=result.model_dump(mode="json"),
    )
    regions = [audio_lib.speech_regions(c) for c in decoded.channels]
    check_results = [checks.check_transcript_coverage(result, regions)]
    failure = _failed_checks(wh, key, "transcript", check_results)
    yield dg.MaterializeResult(
        metadata={
            **_call_metadata(key, call),
            "model": result.model,
            "language": result.language or "unknown",
            "segments": len(result.segments),
            "words": result.word_count,
            "audio_s": result.duration_s,
            "transcribe_s": round(elapsed, 2),
            "realtime_factor": round(result.duration_s / elapsed, 2) if elapsed else 0.0,
        },
        check_results=check_results,
    )
    if failure:
        raise failure


@dg.asset(
    partitions_def=calls_partitions,
    group_name=GROUP,
    owners=OWNERS,
    tags=CALL_TAGS,
    kinds={"python"},
    metadata={"dagster/table_name": "transcripts"},
    deps=[transcript],
    check_specs=[checks.spec(checks.BOTH_ROLES_PRESENT, "diarized_transcript", calls_partitions)],
)
def diarized_transcript(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult]:
    """Speaker turns labelled operator or customer, plus conversation metrics.

    Stereo recordings get their roles from the tenant's channel map (channel 0 is the
    operator unless the tenant says otherwise); mono recordings a labelled pause
    heuristic. Metrics: talk share, silence, overlaps, interruptions, longest monologue,
    words per minute. Stored in the warehouse table `transcripts` (stage `diarized`).
    """
    key = parse_key(context.partition_key)
    wh = warehouse.get()
    call = wh.call(key.tenant, key.external_id)
    data = wh.transcript(key.tenant, key.external_id, "stt")
    if call is None or data is None:
        raise _upstream_missing(key, "diarized_transcript", "transcript")
    stt_result = Transcript.model_validate(data)
    tenant = default_registry().tenant(key.tenant)
    channel_map = tenant.channel_map
    diarized = service.diarize(stt_result, tenant)
    wh.upsert_transcript(
        tenant=key.tenant,
        external_id=key.external_id,
        stage="diarized",
        model=stt_result.model,
        language=diarized.language,
        word_count=stt_result.word_count,
        data=diarized.model_dump(mode="json"),
    )
    if len(stt_result.channels) == 2:
        speech_by_role = {channel_map.role_of(c.channel): c.speech_s for c in stt_result.channels}
    else:  # mono: who spoke is unknown without diarization; only require a voice
        speech_by_role = {"operator": stt_result.channels[0].speech_s}
    m = diarized.metrics
    check_results = [checks.check_roles(diarized, speech_by_role)]
    failure = _failed_checks(wh, key, "diarized_transcript", check_results)
    yield dg.MaterializeResult(
        metadata={
            **_call_metadata(key, call),
            "method": diarized.method,
            "turns": m.turns,
            "operator_talk_share": m.roles["operator"].talk_share,
            "customer_talk_share": m.roles["customer"].talk_share,
            "silence_ratio": m.silence_ratio,
            "overlap_count": m.overlap_count,
            "interruption_count": m.interruption_count,
            "longest_monologue_s": m.longest_monologue_s,
            "operator_wpm": m.roles["operator"].words_per_minute,
            "customer_wpm": m.roles["customer"].words_per_minute,
        },
        check_results=check_results,
    )
    if failure:
        raise failure


def _md_cell(text: object) -> str:
    """Text safe inside one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:04.1f}"


def _scores_markdown(record: AnalysisRecord) -> str:
    rows = "\n".join(
        f"| {_md_cell(c.name)} | {c.score} | {_md_cell(c.rationale)} |"
        for c in record.scores.criteria
    )
    return (
        f"**Total {record.scores.total}/100**\n\n| criterion | score | why |\n|---|---|---|\n{rows}"
    )


def evidence_markdown(record: AnalysisRecord) -> str:
    """One row per evidence quote: criterion, score, the quote and where it starts."""
    scale = record.scores.scale
    rows = []
    for c in record.scores.criteria:
        score = f"{c.score}/{scale.max}"
        for e in c.evidence or [None]:
            quote = f"“{_md_cell(e.quote)}”" if e else "(no quote)"
            start = _clock(e.start) if e else ""
            rows.append(f"| {_md_cell(c.name)} | {score} | {quote} | {start} |")
    return (
        f"**Total {record.scores.total}/100**, weakest: {_md_cell(record.weakest.name)}\n\n"
        "| criterion | score | quote | start |\n|---|---|---|---|\n" + "\n".join(rows)
    )


@dg.asset(
    partitions_def=calls_partitions,
    group_name=GROUP,
    owners=OWNERS,
    tags=CALL_TAGS,
    kinds={"python"},
    metadata={"dagster/table_name": "analyses"},
    deps=[diarized_transcript],
    pool=SCORING_POOL,
    check_specs=[
        checks.spec(checks.ANALYSIS_MATCHES_SCHEMA, "scored_analysis", calls_partitions),
        checks.spec(checks.ANALYSIS_BUSINESS_RULES, "scored_analysis", calls_partitions),
    ],
)
def scored_analysis(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    scorer: ScorerResource,
) -> Iterator[dg.MaterializeResult]:
    """The call scored against its preset's rubric: per-criterion scores with evidence
    quotes, summary, recommendations, and a weighted total (0-100) computed by code.

    The preset picks the scorer (deterministic rules by default, or any LLM through
    litellm). Every scoring attempt is logged in `scoring_attempts`; the record is validated
    (published schema, then the business rules) before it is written to `analyses` and
    `criterion_scores`, so a record that fails a check never reaches the aggregates. Runs in
    pool `callqa_scoring`.
    """
    key = parse_key(context.partition_key)
    wh = warehouse.get()
    call = wh.call(key.tenant, key.external_id)
    data = wh.transcript(key.tenant, key.external_id, "diarized")
    if call is None or data is None:
        raise _upstream_missing(key, "scored_analysis", "diarized_transcript")
    diarized = DiarizedTranscript.model_validate(data)
    preset = _preset_for(key, call["category"])
    with _recorded_failure(wh, key, "scored_analysis"):
        outcome = service.score(diarized, preset, call["category"], scorer.for_preset(preset))
        wh.record_attempts(
            key.tenant, key.external_id, context.run.run_id, [a.as_dict() for a in outcome.attempts]
        )
        service.require_valid(outcome, "scoring")
        record = service.assemble(
            tenant=key.tenant,
            external_id=key.external_id,
            probe=_probe_from_call(call),
            diarized=diarized,
            outcome=outcome,
            preset=preset,
            category=call["category"],
            operator=call["operator"],
            started_at=call["started_at"],
        )
    record_json = record.model_dump(mode="json")
    problems = service.validate_record(record_json, preset)
    check_results = [
        checks.schema_check_result(problems.schema),
        checks.rules_check_result(problems.rules),
    ]
    # Validate, then publish: a record that fails a blocking check never reaches the
    # analyses table (or the aggregates built from it); the call is marked failed instead.
    failure = _failed_checks(wh, key, "scored_analysis", check_results)
    if failure is None:
        wh.save_analysis(record_json, _call_day(call))
        wh.set_staged_status(key.tenant, [key.external_id], "processed")
    yield dg.MaterializeResult(
        metadata={
            **_call_metadata(key, call),
            "total": record.scores.total,
            **{f"score_{c.id}": c.score for c in record.scores.criteria},
            "weakest_criterion": record.weakest.id,
            "evidence": dg.MetadataValue.md(evidence_markdown(record)),
            "scores": dg.MetadataValue.md(_scores_markdown(record)),
            "summary": record.summary,
            "preset": preset.id,
            "scorer": record.scoring.scorer,
            "model": record.scoring.model or "",
            "prompt_version": record.scoring.prompt_version,
            "tokens": record.scoring.tokens.total,
            "cost_usd": record.scoring.cost_usd,
            "attempts": record.scoring.attempts,
            "latency_ms": record.scoring.latency_ms,
            "published": failure is None,
        },
        check_results=check_results,
    )
    if failure:
        raise failure


def _probe_from_call(call: dict) -> audio_lib.AudioProbe:
    return audio_lib.AudioProbe(
        sha256=call["sha256"],
        size_bytes=call["size_bytes"],
        codec=call["codec"],
        container=call["container"],
        channels=call["channels"],
        sample_rate=call["sample_rate"],
        duration_s=call["duration_s"],
    )
