"""callqa: call-quality analytics on Dagster."""

import os as _os

# Third-party defaults set before any of them is imported, in every process callqa runs in
# (CLI, code server, run workers): no network lookups and no telemetry files on import.
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # else fetched on every import
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # onnxruntime (Silero VAD) under ~/.cache
