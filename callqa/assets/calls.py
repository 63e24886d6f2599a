"""The per-call asset chain: raw_audio → transcript → diarized_transcript → scored_analysis
→ crm_pushback.

Every input is derived from the partition key (`<tenant>__<call id>`) and the warehouse,
so any call can be re-materialized or backfilled without run config. Each asset writes
its own table through the warehouse resource.

One run, many calls. The five assets are one step (`process_calls`, a subsettable
multi-asset) that takes the call partitions of its run one after the other, so a batch
pays once for a process, its imports and the speech model; that start-up cost dominated
short calls when every call was its own run (docs/design-notes.md, "Batches of calls").
Each call is still reported on its own partition: a materialization per asset, with the
call's metadata, and the call's own check evaluations. A call that fails (bad input,
provider error, failed blocking check) is marked `failed` in `staged_calls` with the stage
and the error and stops there, and the step goes on with the next call. At the end the
step fails with one `dg.Failure` naming every failed call, so those partitions show as
failed in the UI while the calls that succeeded show as materialized.

Selecting a subset (say `scored_analysis` alone, to re-score after a rubric change) runs
only those stages: nothing is transcribed again.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg

from callqa import settings
from callqa.assets import checks
from callqa.assets.partitions import CALL_ASSET_NAMES, calls_partitions
from callqa.assets.pools import CALLS_POOL
from callqa.calls import service
from callqa.calls.keys import CallKey, parse_key
from callqa.calls.record import AnalysisRecord
from callqa.config.registry import default_registry
from callqa.crm.file_drop import source_label, source_suffix
from callqa.crm.pushback import push_result
from callqa.crm.recordings import read_recording
from callqa.crm.registry import cached_adapter
from callqa.errors import CallqaError
from callqa.privacy.redaction import redact_attempts, redact_transcript, redactor_for
from callqa.reporting.call_report import render_call_report, report_url, write_call_report
from callqa.resources import AudioStoreResource, SpeechToTextResource, WarehouseResource
from callqa.resources.scorers import ScorerResource
from callqa.scoring.classify import classify_category
from callqa.scoring.cost import speech_cost
from callqa.scoring.versions import scoring_code_version
from callqa.speech import audio as audio_lib
from callqa.speech.diarization import DiarizedTranscript
from callqa.speech.quality import role_metadata
from callqa.speech.transcript import Transcript
from callqa.storage.warehouse import Warehouse

GROUP = "calls"
OWNERS = ["team:callqa"]
# Every per-call asset holds the call's words or voice: personal data.
CALL_TAGS = {"domain": "calls", "pii": "true"}
DEFAULT_CALLS_PER_RUN = 24
# Dagster tags a run it re-executes automatically (run_retries in dagster.yaml) with this.
RETRY_NUMBER_TAG = "dagster/retry_number"
ROOT_RUN_ID_TAG = "dagster/root_run_id"


class CallFailed(Exception):
    """One call failed at one stage: recorded, reported, and the batch goes on."""

    def __init__(self, key: CallKey, stage: str, error: str, **metadata: str) -> None:
        super().__init__(f"call {key.partition_key}: {stage}: {error}")
        self.key, self.stage, self.error, self.metadata = key, stage, error, metadata


@dataclass
class _Batch:
    """What every stage of every call in one run shares."""

    context: dg.AssetExecutionContext
    warehouse: Warehouse
    audio_store: AudioStoreResource
    stt: SpeechToTextResource
    scorer: ScorerResource
    # raw_audio hands the recording it decoded to transcript in the same step, so a batch
    # decodes each recording once (decoding is about a tenth of a call's CPU).
    decoded: dict[str, audio_lib.DecodedAudio] = field(default_factory=dict)
    # One adapter per tenant and batch (each holds an HTTP session or a database engine).
    adapters: dict = field(default_factory=dict)

    def fail(self, key: CallKey, stage: str, error: str, **metadata: str) -> CallFailed:
        """Mark the staged call `failed` (what `callqa retry` lists) and build the failure."""
        self.warehouse.set_staged_status(
            key.tenant, [key.external_id], "failed", f"{stage}: {error}"
        )
        return CallFailed(key, stage, error, **metadata)


@contextmanager
def _recorded_failure(batch: _Batch, key: CallKey, stage: str) -> Iterator[None]:
    """A bad input (CallqaError) fails this call at this stage with the input's own message."""
    try:
        yield
    except CallqaError as exc:
        # What can be retried was retried inside the step (transport errors, one validation
        # round-trip); `callqa retry` re-stages the call as a whole.
        raise batch.fail(key, stage, str(exc)) from exc


def _failed_checks(
    batch: _Batch, key: CallKey, stage: str, results: list[dg.AssetCheckResult]
) -> CallFailed | None:
    """A blocking check that failed stops the call after its results are reported: the
    stage yields its materialization and check evaluations (recorded for the call's
    partition), then raises this, so the call's later stages do not run."""
    failed = [r for r in results if not r.passed and r.severity == dg.AssetCheckSeverity.ERROR]
    if not failed:
        return None
    message = "; ".join(f"check {r.check_name} failed: {_problem(r)}" for r in failed)
    return batch.fail(
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


def _reported(
    key: CallKey,
    asset: str,
    metadata: dict | None,
    results: list[dg.AssetCheckResult],
    tags: dict[str, str] | None = None,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """The events of one stage of one call, all on the call's partition (no
    materialization when `metadata` is None: the stage produced nothing)."""
    if metadata is not None:
        yield dg.AssetMaterialization(
            asset_key=asset, partition=key.partition_key, metadata=metadata, tags=tags
        )
    for r in results:
        yield dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(asset),
            check_name=r.check_name or "",
            passed=r.passed,
            metadata=r.metadata,
            severity=r.severity,
            description=r.description,
            blocking=True,
            partition=key.partition_key,
        )


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


def _preset_for(key: CallKey, category: str | None):
    return default_registry().preset_for(key.tenant, category)


def _upstream(batch: _Batch, key: CallKey, stage: str, upstream: str, row: dict | None) -> dict:
    if row is None:
        raise batch.fail(key, stage, f"{upstream} has not been materialized")
    return row


def _raw_audio(batch: _Batch, key: CallKey) -> Iterator:
    wh = batch.warehouse
    staged = wh.staged_call(key.tenant, key.external_id)
    if staged is None:
        raise batch.fail(key, "raw_audio", "the call is not staged in the warehouse")
    with _recorded_failure(batch, key, "raw_audio"):
        tenant = default_registry().tenant(key.tenant)
        data = read_recording(
            tenant, staged["source"], staged["source_uri"], adapters=batch.adapters
        )
        decoded = service.decode_recording(
            data, source_label(staged["source_uri"]), batch.stt.max_audio_s
        )
    probe = decoded.probe
    batch.decoded[key.partition_key] = decoded
    uri = batch.audio_store.put(
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
    results = [checks.check_recording(probe)]
    failure = _failed_checks(batch, key, "raw_audio", results)
    metadata = {
        **_call_metadata(key, call),
        "channels": probe.channels,
        "sample_rate": probe.sample_rate,
        "codec": probe.codec,
        "container": probe.container,
        "size_bytes": probe.size_bytes,
        "sha256": probe.sha256,
        "clipped_share": probe.clipped_share,
        "audio_warnings": "; ".join(probe.warnings) or "none",
        "audio_uri": dg.MetadataValue.url(uri),
    }
    yield from _reported(key, "raw_audio", metadata, results)
    if failure:
        raise failure


def _transcript(batch: _Batch, key: CallKey) -> Iterator:
    wh = batch.warehouse
    call = _upstream(batch, key, "transcript", "raw_audio", wh.call(key.tenant, key.external_id))
    preset = _preset_for(key, call["category"])
    with _recorded_failure(batch, key, "transcript"):
        decoded = _decoded(batch, key, call)
        result, elapsed = service.transcribe(decoded, batch.stt.for_preset(preset.speech))
        # No speech, music only, a fragment Whisper would pad out as "Thank you.": the call
        # fails here with the reason, instead of being scored on invented words.
        service.require_speech(decoded, result, call["audio_uri"], preset.speech.min_speech_s)
    # On-site faster-whisper costs nothing per call; an API is priced from litellm's map
    # (NULL when the model has no known price: unknown, not free).
    cost_usd, cost_known = speech_cost(
        batch.stt.provider or preset.speech.provider, result.model, result.duration_s
    )
    wh.upsert_transcript(
        tenant=key.tenant,
        external_id=key.external_id,
        stage="stt",
        model=result.model,
        language=result.language,
        word_count=result.word_count,
        data=result.model_dump(mode="json"),
        cost_usd=cost_usd if cost_known else None,
    )
    regions = [audio_lib.speech_regions(c) for c in decoded.channels]
    results = [checks.check_transcript_coverage(result, regions)]
    failure = _failed_checks(batch, key, "transcript", results)
    metadata = {
        **_call_metadata(key, call),
        "model": result.model,
        "language": result.language or "unknown",
        "segments": len(result.segments),
        "words": result.word_count,
        "audio_s": result.duration_s,
        "transcribe_s": round(elapsed, 2),
        "realtime_factor": round(result.duration_s / elapsed, 2) if elapsed else 0.0,
        "speech_cost_usd": cost_usd if cost_known else "unknown",
    }
    yield from _reported(key, "transcript", metadata, results)
    if failure:
        raise failure


def _decoded(batch: _Batch, key: CallKey, call: dict) -> audio_lib.DecodedAudio:
    """The call's recording, decoded once per batch: raw_audio's copy when this run
    fetched it, else read back from the audio store."""
    decoded = batch.decoded.get(key.partition_key)
    if decoded is None:
        decoded = service.decode_recording(
            batch.audio_store.get(key.tenant, call["audio_uri"]),
            call["audio_uri"],
            batch.stt.max_audio_s,
        )
        batch.decoded[key.partition_key] = decoded
    return decoded


def _diarized_transcript(batch: _Batch, key: CallKey) -> Iterator:
    wh = batch.warehouse
    stage = "diarized_transcript"
    call = _upstream(batch, key, stage, "raw_audio", wh.call(key.tenant, key.external_id))
    data = _upstream(
        batch, key, stage, "transcript", wh.transcript(key.tenant, key.external_id, "stt")
    )
    stt_result = Transcript.model_validate(data)
    tenant = default_registry().tenant(key.tenant)
    channel_map = tenant.channel_map
    preset = _preset_for(key, call["category"])
    backends = batch.stt.diarization_backends()
    with _recorded_failure(batch, key, stage):
        backend = backends.for_preset(preset.speech, stereo=len(stt_result.channels) == 2)
        segmenter = backends.segmenter(backend)
        # Speaker embeddings need the audio; the channel map and the pause heuristic do not.
        audio = _decoded(batch, key, call) if segmenter else None
        diarized = service.diarize(stt_result, tenant, audio, backend=backend, segmenter=segmenter)
    wh.upsert_transcript(
        tenant=key.tenant,
        external_id=key.external_id,
        stage="diarized",
        model=stt_result.model,
        language=diarized.language,
        word_count=stt_result.word_count,
        data=diarized.model_dump(mode="json"),
    )
    # Stereo: each role's channel says how much it spoke. Mono: the diarizer decided who
    # spoke; the check reads its speakers and role confidence instead.
    speech_by_role = (
        {channel_map.role_of(c.channel): c.speech_s for c in stt_result.channels}
        if len(stt_result.channels) == 2
        else {}
    )
    m = diarized.metrics
    results = [checks.check_roles(diarized, speech_by_role)]
    failure = _failed_checks(batch, key, stage, results)
    metadata = {
        **_call_metadata(key, call),
        "method": diarized.method,
        **role_metadata(diarized),
        "turns": m.turns,
        "operator_talk_share": m.roles["operator"].talk_share,
        "customer_talk_share": m.roles["customer"].talk_share,
        "silence_ratio": m.silence_ratio,
        "overlap_count": m.overlap_count,
        "interruption_count": m.interruption_count,
        "longest_monologue_s": m.longest_monologue_s,
        "operator_wpm": m.roles["operator"].words_per_minute,
        "customer_wpm": m.roles["customer"].words_per_minute,
    }
    yield from _reported(key, stage, metadata, results)
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


def _category(diarized: DiarizedTranscript, key: CallKey, call: dict) -> tuple[str | None, str]:
    """The call's category and where it came from: the CRM (or sidecar, or whoever staged
    it), else classified from the transcript by the presets' cues, else the default."""
    if call["category"]:
        return call["category"], "crm"
    registry = default_registry()
    category, _hits = classify_category(diarized, registry.tenant(key.tenant), registry)
    return (category, "classified") if category else (None, "default")


def _scored_analysis(batch: _Batch, key: CallKey) -> Iterator:
    wh = batch.warehouse
    stage = "scored_analysis"
    call = _upstream(batch, key, stage, "raw_audio", wh.call(key.tenant, key.external_id))
    data = _upstream(
        batch,
        key,
        stage,
        "diarized_transcript",
        wh.transcript(key.tenant, key.external_id, "diarized"),
    )
    diarized = DiarizedTranscript.model_validate(data)
    category, category_source = _category(diarized, key, call)
    # The A/B variant is fixed by the call key: re-scoring a call gives it the same one.
    base_preset = _preset_for(key, category)
    variant = base_preset.variant_for(key.partition_key)
    preset = base_preset.with_variant(variant)
    # PII is masked before the transcript reaches any scorer, so neither an external LLM
    # nor the stored record (transcript, quotes, raw replies) holds it.
    redact = redactor_for(default_registry().tenant(key.tenant))
    if redact:
        diarized = redact_transcript(diarized, redact)
    run_id = batch.context.run.run_id
    with _recorded_failure(batch, key, stage):
        outcome = service.score(diarized, preset, category, batch.scorer.for_preset(preset))
        if redact:  # a reply may repeat PII the model saw elsewhere (or invented)
            redact_attempts(outcome.attempts, redact)
        wh.record_attempts(
            key.tenant, key.external_id, run_id, [a.as_dict() for a in outcome.attempts]
        )
    if not outcome.valid:
        yield from _invalid_result(batch, key, call, preset, variant, outcome)
        return
    with _recorded_failure(batch, key, stage):
        record = service.assemble(
            tenant=key.tenant,
            external_id=key.external_id,
            probe=_probe_from_call(call),
            diarized=diarized,
            outcome=outcome,
            preset=preset,
            category=category,
            category_source=category_source,
            operator=call["operator"],
            started_at=call["started_at"],
            variant=variant,
            redacted=redact is not None,
        )
    record_json = record.model_dump(mode="json")
    problems = service.validate_record(record_json, preset)
    results = [
        checks.schema_check_result(problems.schema),
        checks.rules_check_result(problems.rules),
    ]
    # Validate, then publish: a record that fails a blocking check never reaches the
    # analyses table (or the aggregates built from it); the call is marked failed instead.
    failure = _failed_checks(batch, key, stage, results)
    if failure is None:
        wh.save_analysis(
            record_json,
            _call_day(call),
            run_id=run_id,
            pattern_kinds={p.id: p.kind for p in preset.patterns},
        )
        wh.set_staged_status(key.tenant, [key.external_id], "processed")
    else:
        _save_invalid(wh, key, preset, variant, outcome, run_id, problems.summary())
    scoring = record.scoring
    metadata = {
        **_call_metadata(key, call),
        "category": category or "default",
        "category_source": category_source,
        "total": record.scores.total,
        **{f"score_{c.id}": c.score for c in record.scores.criteria if c.score is not None},
        "not_applicable": ", ".join(c.id for c in record.scores.criteria if c.score is None)
        or "none",
        "weakest_criterion": record.weakest.id,
        "evidence": dg.MetadataValue.md(evidence_markdown(record)),
        "scores": dg.MetadataValue.md(_scores_markdown(record)),
        "summary": record.summary,
        "patterns": ", ".join(sorted({p.type for p in record.patterns})) or "none",
        "preset": preset.id,
        "variant": variant,
        "scorer": scoring.scorer,
        "model": scoring.model or "",
        "prompt_version": scoring.prompt_version,
        "evidence_quotes": scoring.evidence.quotes,
        "evidence_verified": scoring.evidence.verified,
        "redacted": scoring.redacted,
        "tokens": scoring.tokens.total,
        "cost_usd": scoring.cost_usd,
        "cost_known": scoring.cost_known,
        "attempts": scoring.attempts,
        "latency_ms": scoring.latency_ms,
        "published": failure is None,
    }
    yield from _reported(key, stage, metadata, results, tags=_scoring_provenance())
    if failure:
        raise failure


def _save_invalid(wh, key, preset, variant, outcome, run_id, errors: str) -> None:
    """Kept with its errors in `analysis_versions` (never in `analyses`): visible, queryable,
    and replaced when the call is scored again."""
    wh.save_invalid_analysis(
        key.tenant,
        key.external_id,
        preset=preset.id,
        prompt_version=outcome.prompt_version,
        variant=variant,
        scorer=outcome.scorer,
        model=outcome.model or "",
        errors=errors,
        attempts=len(outcome.attempts),
        cost_usd=outcome.cost_usd,
        latency_ms=outcome.latency_ms,
        run_id=run_id,
    )


def _invalid_result(batch, key, call, preset, variant, outcome) -> Iterator:
    """No attempt gave a valid result: store it as invalid, fail the rules check with the
    last errors (the UI shows them on the call's check), and fail the call (retryable)."""
    errors = outcome.last_error or "no valid reply"
    _save_invalid(batch.warehouse, key, preset, variant, outcome, batch.context.run.run_id, errors)
    attempts = len(outcome.attempts)
    result = dg.AssetCheckResult(
        check_name=checks.ANALYSIS_BUSINESS_RULES,
        passed=False,
        description=f"no valid analysis after {attempts} attempt(s): {errors}"[:1000],
        metadata={
            "problem": f"invalid scorer output after {attempts} attempt(s)",
            "details": errors[:2000],
            "variant": variant,
            "models": ", ".join(dict.fromkeys(a.model or "" for a in outcome.attempts)),
        },
    )
    yield from _reported(key, "scored_analysis", None, [result])
    raise batch.fail(
        key,
        "scored_analysis",
        f"no valid analysis after {attempts} attempt(s): {errors}"[:1000],
        failed_checks=checks.ANALYSIS_BUSINESS_RULES,
    )


def _scoring_provenance() -> dict[str, str]:
    """Tags that give each scored_analysis materialization Dagster data provenance: the
    code version it was scored under (so a preset change shows the call as stale in the
    UI), and no particular diarized_transcript event (re-diarizing is tracked by its own
    materialization)."""
    return {
        "dagster/code_version": scoring_code_version(),
        "dagster/input_data_version/diarized_transcript": "unversioned",
        "dagster/input_event_pointer/diarized_transcript": "NULL",
    }


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


def _crm_pushback(batch: _Batch, key: CallKey) -> Iterator:
    wh = batch.warehouse
    stage = "crm_pushback"
    call = _upstream(batch, key, stage, "raw_audio", wh.call(key.tenant, key.external_id))
    record = _upstream(
        batch, key, stage, "scored_analysis", wh.analysis(key.tenant, key.external_id)
    )
    staged = wh.staged_call(key.tenant, key.external_id) or {}
    diarized = wh.transcript(key.tenant, key.external_id, "diarized")
    tenant = default_registry().tenant(key.tenant)
    with _recorded_failure(batch, key, stage):
        html = render_call_report(record, diarized, tenant_name=tenant.name)
        relative = write_call_report(
            html,
            settings.call_reports_dir(),
            key.tenant,
            key.external_id,
            settings.secret(settings.REPORT_LINK_KEY_ENV),
        )
        url = report_url(settings.report_base_url(), relative)
        adapter = cached_adapter(batch.adapters, tenant) if tenant.crm else None
        outcome = push_result(
            wh,
            tenant,
            adapter,
            external_id=key.external_id,
            partition_key=key.partition_key,
            record=record,
            links=staged.get("links") or {},
            report_url=url,
        )
    # A push retried alone (after a CRM outage failed the call here) completes the call.
    wh.set_staged_status(key.tenant, [key.external_id], "processed")
    metadata = {
        **_call_metadata(key, call),
        "report_url": dg.MetadataValue.url(url),
        "crm": tenant.crm.adapter if tenant.crm else "none",
        "crm_notes": len(outcome.note_ids),
        "written_back": bool(outcome.note_ids),
        "skipped": outcome.skipped or "",
        "alert_sent": outcome.alerted,
    }
    yield dg.AssetMaterialization(asset_key=stage, partition=key.partition_key, metadata=metadata)


# The stages, in dependency order; a run executes those its asset selection holds.
STAGES: dict[str, Callable[[_Batch, CallKey], Iterator]] = {
    "raw_audio": _raw_audio,
    "transcript": _transcript,
    "diarized_transcript": _diarized_transcript,
    "scored_analysis": _scored_analysis,
    "crm_pushback": _crm_pushback,
}
assert tuple(STAGES) == CALL_ASSET_NAMES

_SPEC_ARGS = {
    "partitions_def": calls_partitions,
    "group_name": GROUP,
    "owners": OWNERS,
    "tags": CALL_TAGS,
}
CALL_SPECS = [
    dg.AssetSpec(
        "raw_audio",
        description=(
            "The call's original recording, kept byte for byte in the audio store and probed. "
            "Reads the staged call (`staged_calls`: a local file or a CRM URL fetched safely), "
            "stores the bytes under the tenant in the audio store, and records the probe "
            "(duration, channels, sample rate, codec, sha256) with the call's operator, "
            "category and start time in the warehouse table `calls`. A recording that does "
            "not decode fails the call here."
        ),
        kinds={"audio", "python"},
        metadata={"dagster/table_name": "calls"},
        **_SPEC_ARGS,
    ),
    dg.AssetSpec(
        "transcript",
        description=(
            "Speech-to-text of the recording, with word timestamps; stereo recordings per "
            "channel. The call's preset picks the provider (faster-whisper locally by "
            "default, or an OpenAI-compatible transcription API) and the model. Stored in "
            "the warehouse table `transcripts` (stage `stt`)."
        ),
        kinds={"faster-whisper", "python"},
        metadata={"dagster/table_name": "transcripts"},
        deps=["raw_audio"],
        **_SPEC_ARGS,
    ),
    dg.AssetSpec(
        "diarized_transcript",
        description=(
            "Speaker turns labelled operator or customer, plus conversation metrics. Stereo "
            "recordings get their roles from the tenant's channel map (channel 0 is the "
            "operator unless the tenant says otherwise); mono recordings a labelled pause "
            "heuristic. Metrics: talk share, silence, overlaps, interruptions, longest "
            "monologue, words per minute. Stored in the warehouse table `transcripts` "
            "(stage `diarized`)."
        ),
        kinds={"python"},
        metadata={"dagster/table_name": "transcripts"},
        deps=["transcript"],
        **_SPEC_ARGS,
    ),
    dg.AssetSpec(
        "scored_analysis",
        description=(
            "The call scored against its preset's rubric: per-criterion scores with evidence "
            "quotes, summary, recommendations, and a weighted total (0-100) computed by code. "
            "The preset picks the scorer (deterministic rules by default, or any LLM through "
            "litellm). Every scoring attempt is logged in `scoring_attempts`; the record is "
            "validated (published schema, then the business rules) before it is written to "
            "`analyses` and `criterion_scores`, so a record that fails a check never reaches "
            "the aggregates."
        ),
        kinds={"python"},
        metadata={"dagster/table_name": "analyses"},
        deps=["diarized_transcript"],
        **_SPEC_ARGS,
    ),
    dg.AssetSpec(
        "crm_pushback",
        description=(
            "The result where the team works. Writes the call's self-contained HTML report "
            "(scores with evidence and timestamps, transcript by role, metrics) to the report "
            "store (CALLQA_REPORT_STORE, linked from CALLQA_REPORT_BASE_URL), puts total "
            "score, summary and report link as a note on the call's CRM cards (updating the "
            "same note when run again; note ids in `crm_pushbacks`), and sends the tenant's "
            "low-score alert once per call when the total is under its threshold."
        ),
        kinds={"python"},
        metadata={"dagster/table_name": "crm_pushbacks"},
        deps=["scored_analysis"],
        **_SPEC_ARGS,
    ),
]
CALL_CHECK_SPECS = [
    checks.spec(checks.RECORDING_DECODABLE, "raw_audio", calls_partitions),
    checks.spec(checks.TRANSCRIPT_COVERS_SPEECH, "transcript", calls_partitions),
    checks.spec(checks.BOTH_ROLES_PRESENT, "diarized_transcript", calls_partitions),
    checks.spec(checks.ANALYSIS_MATCHES_SCHEMA, "scored_analysis", calls_partitions),
    checks.spec(checks.ANALYSIS_BUSINESS_RULES, "scored_analysis", calls_partitions),
]


def _done_by_earlier_attempt(
    context: dg.AssetExecutionContext, keys: list[str], last_stage: str
) -> set[str]:
    """Calls an automatic retry of this run can skip: the attempt that died (its worker was
    killed, say) already carried them through the last selected stage. Only automatic
    retries skip; a run a user launches or re-executes does every call it names."""
    run = context.run
    if run.tags.get(RETRY_NUMBER_TAG) is None:
        return set()
    instance = context.instance
    root = run.root_run_id or run.tags.get(ROOT_RUN_ID_TAG)
    if not root:
        return set()
    attempts = [root] + [
        r.run_id for r in instance.get_runs(filters=dg.RunsFilter(tags={ROOT_RUN_ID_TAG: root}))
    ]
    wanted, asset = set(keys), dg.AssetKey(last_stage)
    done: set[str] = set()
    for run_id in set(attempts) - {run.run_id}:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            mat = entry.asset_materialization
            if mat and mat.asset_key == asset and mat.partition in wanted:
                done.add(mat.partition)
    return done


def _versioned(spec: dg.AssetSpec) -> dg.AssetSpec:
    """scored_analysis carries the scoring code version (presets, rules, record schema):
    after a preset changes, calls scored before show as stale in the UI."""
    if spec.key != dg.AssetKey("scored_analysis"):
        return spec
    return spec.replace_attributes(code_version=scoring_code_version())


def build_call_assets(calls_per_run: int = DEFAULT_CALLS_PER_RUN) -> dg.AssetsDefinition:
    """The per-call assets as one subsettable step over a batch of call partitions.

    `calls_per_run` (CALLQA_CALLS_PER_RUN) is how many calls a backfill puts in one run.
    """

    @dg.multi_asset(
        name="process_calls",
        specs=[_versioned(spec) for spec in CALL_SPECS],
        check_specs=CALL_CHECK_SPECS,
        can_subset=True,
        partitions_def=calls_partitions,
        backfill_policy=dg.BackfillPolicy.multi_run(calls_per_run),
        pool=CALLS_POOL,
    )
    def process_calls(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        audio_store: AudioStoreResource,
        stt: SpeechToTextResource,
        scorer: ScorerResource,
    ) -> Iterator:
        """Each call of the run through the selected stages, one call after the other."""
        batch = _Batch(context, warehouse.get(), audio_store, stt, scorer)
        selected = {k.to_user_string() for k in context.selected_asset_keys}
        stages = [name for name in CALL_ASSET_NAMES if name in selected]
        keys = list(context.partition_keys)
        done = _done_by_earlier_attempt(context, keys, stages[-1])
        if done:
            context.log.info(f"{len(done)} call(s) finished by the interrupted attempt: skipped")
        failures: list[CallFailed] = []
        for partition_key in keys:
            if partition_key in done:
                continue
            key = parse_key(partition_key)
            try:
                for name in stages:
                    yield from STAGES[name](batch, key)
            except CallFailed as failed:
                failures.append(failed)
                context.log.error(str(failed))
            except Exception as exc:  # a bug or an outage: this call fails, the batch goes on
                failed = batch.fail(key, "internal", f"{exc.__class__.__name__}: {exc}"[:500])
                failures.append(failed)
                context.log.exception(str(failed))
            finally:  # one recording in memory at a time
                batch.decoded.pop(partition_key, None)
        if failures:
            listed = "; ".join(str(f) for f in failures)[:2000]
            raise dg.Failure(
                description=(
                    listed
                    if len(keys) == 1
                    else f"{len(failures)} of {len(keys)} calls failed: {listed}"
                ),
                metadata={
                    "failed_calls": ", ".join(f.key.partition_key for f in failures),
                    "calls_in_run": len(keys),
                    **(
                        {
                            "call": failures[0].key.partition_key,
                            "tenant": failures[0].key.tenant,
                            "stage": failures[0].stage,
                            "error": failures[0].error,
                            **failures[0].metadata,
                        }
                        if len(failures) == 1
                        else {}
                    ),
                },
            )

    return process_calls
