"""Which Dagster executor runs a job's steps, chosen by `CALLQA_EXECUTOR`.

- `in_process` (default): the steps run inside the run worker. A batch of calls is one
  step, so a separate process per step would only add start-up cost.
- `multiprocess`: Dagster's default executor, a process per step.
- `celery`: steps go to dagster-celery workers through a broker (CALLQA_CELERY_BROKER), so
  several processes or machines share one backfill; the run worker only hands out the step
  and waits for its events (docs/deployment-celery.md).
"""

from __future__ import annotations

import dagster as dg

from callqa.settings import CELERY_BACKEND_ENV, CELERY_BROKER_ENV, Settings


def executor_for(settings: Settings) -> dg.ExecutorDefinition:
    if settings.executor == "multiprocess":
        return dg.multiprocess_executor
    if settings.executor == "celery":
        return celery_executor(settings)
    return dg.in_process_executor


def celery_executor(settings: Settings) -> dg.ExecutorDefinition:
    """dagster-celery's executor with the broker and result backend read by the run worker
    from the environment, by name: `configured` config shows in the UI, and these URLs may
    carry a password. Without CALLQA_CELERY_BACKEND a Redis broker is also the backend
    (`load_settings` refuses any other broker without one)."""
    from dagster_celery import celery_executor as dagster_celery_executor  # imports celery

    backend = CELERY_BACKEND_ENV if settings.has_celery_backend else CELERY_BROKER_ENV
    return dagster_celery_executor.configured(
        {"broker": {"env": CELERY_BROKER_ENV}, "backend": {"env": backend}}
    )
