"""The per-call asset chain: raw_audio → transcript → diarized_transcript → scored_analysis.

Every input is derived from the partition key (`<tenant>__<call id>`) and the warehouse,
so any call can be re-materialized or backfilled without run config. Each asset writes
its own table through the warehouse resource and reports in-asset, blocking checks.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from callqa import audio as audio_lib
from callqa.analysis import AnalysisRecord, build_record
from callqa.assets import checks
from callqa.assets.partitions import calls_partitions
from callqa.config.registry import default_registry
from callqa.diarization import DiarizedTranscript, assign_roles
from callqa.errors import CallqaError, ScoringError
from callqa.intake import read_source, source_label, source_suffix
from callqa.keys import CallKey, parse_key
from callqa.resources import AudioStoreResource, SpeechToTextResource, WarehouseResource
from callqa.resources.scorers import ScorerResource
from callqa.storage.warehouse import Warehouse
from callqa.transcription import Transcript

GROUP = "calls"


@contextmanager
def _recorded_failure(warehouse: Warehouse, key: CallKey, stage: str) -> Iterator[None]:
    """Record a bad input against the staged call and fail the step with a clear message."""
    try:
        yield
    except CallqaError as exc:
        message = f"{stage}: {exc}"
        warehouse.set_staged_status(key.tenant, [key.external_id], "failed", message)
        # The step already retried what can be retried (transport errors inside litellm,
        # one validation round-trip); re-executing the run retries the call as a whole.
        raise dg.Failure(description=f"call {key.partition_key}: {message}") from exc


def _staged(warehouse: Warehouse, key: CallKey) -> dict:
    row = warehouse.staged_call(key.tenant, key.external_id)
    if row is None:
        raise dg.Failure(f"call {key.partition_key} is not staged in the warehouse")
    return row


def _preset_for(key: CallKey, category: str | None):
    return default_registry().preset_for(key.tenant, category)


@dg.asset(
    partitions_def=calls_partitions,
    group_name=GROUP,
    kinds={"audio"},
    check_specs=[dg.AssetCheckSpec(checks.RECORDING_DECODABLE, asset="raw_audio", blocking=True)],
)
def raw_audio(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, audio_store: AudioStoreResource
) -> dg.MaterializeResult:
    """The original recording, kept in the audio store and probed."""
    key = parse_key(context.partition_key)
    wh = warehouse.get()
    staged = _staged(wh, key)
    with _recorded_failure(wh, key, "raw_audio"):
        data = read_source(staged["source_uri"])
        decoded = audio_lib.decode_bytes(data, source_label(staged["source_uri"]))
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
    return dg.MaterializeResult(
        metadata={
            "duration_s": probe.duration_s,
            "channels": probe.channels,
            "sample_rate": probe.sample_rate,
            "codec": probe.codec,
            "container": probe.container,
            "size_bytes": probe.size_bytes,
            "sha256": probe.sha256,
            "audio_uri": dg.MetadataValue.url(uri),
        },
        check_results=[checks.check_recording(probe)],
    )


@dg.asset(
    partitions_def=calls_partitions,
    group_name=GROUP,
    kinds={"faster-whisper"},
    deps=[raw_audio],
    pool="callqa_stt",
    check_specs=[
        dg.AssetCheckSpec(checks.TRANSCRIPT_COVERS_SPEECH, asset="transcript", blocking=True)
    ],
)
def transcript(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    audio_store: AudioStoreResource,
    stt: SpeechToTextResource,
) -> dg.MaterializeResult:
    """Speech-to-text with word timestamps; stereo recordings per channel."""
    key = parse_key(context.partition_key)
    wh = warehouse.get()
    call = wh.call(key.tenant, key.external_id)
    if call is None:
        raise dg.Failure(f"call {key.partition_key}: raw_audio has not been materialized")
    preset = _preset_for(key, call["category"])
    with _recorded_failure(wh, key, "transcript"):
        decoded = audio_lib.decode_bytes(
            audio_store.get(key.tenant, call["audio_uri"]), call["audio_uri"]
        )
        started = time.perf_counter()
        result = stt.transcribe(decoded, preset.speech)
        elapsed = time.perf_counter() - started
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
    return dg.MaterializeResult(
        metadata={
            "model": result.model,
            "language": result.language or "unknown",
            "segments": len(result.segments),
            "words": result.word_count,
            "audio_s": result.duration_s,
            "transcribe_s": round(elapsed, 2),
            "realtime_factor": round(result.duration_s / elapsed, 2) if elapsed else 0.0,
        },
        check_results=[checks.check_transcript_coverage(result, regions)],
    )


@dg.asset(
    partitions_def=calls_partitions,
    group_name=GROUP,
    deps=[transcript],
    check_specs=[
        dg.AssetCheckSpec(checks.BOTH_ROLES_PRESENT, asset="diarized_transcript", blocking=True)
    ],
)
def diarized_transcript(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Speaker turns with operator/customer roles, plus conversation metrics."""
    key = parse_key(context.partition_key)
    wh = warehouse.get()
    data = wh.transcript(key.tenant, key.external_id, "stt")
    if data is None:
        raise dg.Failure(f"call {key.partition_key}: transcript has not been materialized")
    stt_result = Transcript.model_validate(data)
    channel_map = default_registry().tenant(key.tenant).channel_map
    diarized = assign_roles(stt_result, channel_map)
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
    return dg.MaterializeResult(
        metadata={
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
        check_results=[checks.check_roles(diarized, speech_by_role)],
    )


def _scores_markdown(record: AnalysisRecord) -> str:
    rows = "\n".join(f"| {c.name} | {c.score} | {c.rationale} |" for c in record.scores.criteria)
    return (
        f"**Total {record.scores.total}/100**\n\n| criterion | score | why |\n|---|---|---|\n{rows}"
    )


@dg.asset(
    partitions_def=calls_partitions,
    group_name=GROUP,
    deps=[diarized_transcript],
    pool="callqa_scoring",
    check_specs=[
        dg.AssetCheckSpec(checks.ANALYSIS_MATCHES_SCHEMA, asset="scored_analysis", blocking=True),
        dg.AssetCheckSpec(checks.ANALYSIS_BUSINESS_RULES, asset="scored_analysis", blocking=True),
    ],
)
def scored_analysis(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    scorer: ScorerResource,
) -> dg.MaterializeResult:
    """Per-criterion scores with evidence, summary and recommendations; total by code."""
    key = parse_key(context.partition_key)
    wh = warehouse.get()
    call = wh.call(key.tenant, key.external_id)
    data = wh.transcript(key.tenant, key.external_id, "diarized")
    if call is None or data is None:
        raise dg.Failure(f"call {key.partition_key}: diarized_transcript has not been materialized")
    diarized = DiarizedTranscript.model_validate(data)
    preset = _preset_for(key, call["category"])
    with _recorded_failure(wh, key, "scored_analysis"):
        outcome = scorer.get_scorer().score(diarized, preset, call["category"])
        wh.record_attempts(
            key.tenant, key.external_id, context.run.run_id, [a.as_dict() for a in outcome.attempts]
        )
        if not outcome.valid:
            raise ScoringError(
                f"no valid analysis after {len(outcome.attempts)} attempt(s): {outcome.last_error}"
            )
    record = build_record(
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
    call_day = (call["started_at"] or call["updated_at"]).date()
    wh.save_analysis(record_json, call_day)
    wh.set_staged_status(key.tenant, [key.external_id], "processed")
    return dg.MaterializeResult(
        metadata={
            "total": record.scores.total,
            **{f"score_{c.id}": c.score for c in record.scores.criteria},
            "weakest_criterion": record.weakest.id,
            "scorer": record.scoring.scorer,
            "model": record.scoring.model or "",
            "prompt_version": record.scoring.prompt_version,
            "tokens": record.scoring.tokens.total,
            "cost_usd": record.scoring.cost_usd,
            "attempts": record.scoring.attempts,
            "latency_ms": record.scoring.latency_ms,
            "scores": dg.MetadataValue.md(_scores_markdown(record)),
            "summary": record.summary,
        },
        check_results=[
            checks.check_analysis_schema(record_json),
            checks.check_analysis_rules(record_json, preset),
        ],
    )


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
