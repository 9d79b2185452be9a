"""The front door: validates task payloads and enqueues them, answering at once (202)."""

from __future__ import annotations

from typing import Annotated, Any

from celery.result import AsyncResult
from fastapi import FastAPI, HTTPException, Path, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from celeriac_worker import tasks
from celeriac_worker.celery_app import app as celery_app
from celeriac_worker.celery_app import env as worker_env

api = FastAPI(
    title="celeriac reference worker API",
    version="0.1.0",
    description="Enqueue example tasks (e-mail, PDF report, long job) and read their state.",
)
app = api
ENQUEUED = Counter(
    "celeriac_api_tasks_enqueued_total", "Tasks accepted by the API", ["task", "queue"]
)
Priority = Annotated[int, Field(ge=0, le=9, description="Redis priority: 0 runs first.")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskRequest(Strict):
    priority: Priority = 5


class EmailRequest(TaskRequest):
    recipient: EmailStr
    subject: Annotated[str, Field(min_length=1, max_length=200)]
    content: Annotated[str, Field(max_length=100_000)]


class ReportRequest(TaskRequest):
    title: Annotated[str, Field(min_length=1, max_length=200)] = "report"
    pages: Annotated[int, Field(ge=1, le=200)]
    depth: Annotated[int, Field(ge=1, le=2000)] = 60
    seed: int = 0


class LongJobRequest(TaskRequest):
    steps: Annotated[int, Field(ge=1, le=10_000)]
    step_seconds: Annotated[float, Field(gt=0, le=600)] = 1.0

    @model_validator(mode="after")
    def _runs_once(self) -> LongJobRequest:
        # Past the broker's visibility timeout Redis hands the task to a second worker while
        # the first still runs it (issue #14, 10): the job must fit the longest task the
        # Celery configuration delivers once (visibility_timeout is derived from it).
        longest = worker_env.longest_task_s
        if self.steps * self.step_seconds > longest:
            raise ValueError(
                f"steps x step_seconds must be <= {longest:g} s "
                "(CELERIAC_LONGEST_TASK_SECONDS, below the broker's visibility timeout)"
            )
        return self


class Accepted(BaseModel):
    id: str
    task: str
    queue: str
    status_url: str


class TaskState(BaseModel):
    id: str
    state: str
    result: Any = None
    progress: dict[str, Any] | None = None
    error: str | None = None


def _enqueue(task: Any, queue: str, body: TaskRequest) -> Accepted:
    # Every field of the request but its priority is the task's keyword arguments.
    kwargs = body.model_dump(mode="json", exclude={"priority"})
    result = task.apply_async(kwargs=kwargs, queue=queue, priority=body.priority)
    ENQUEUED.labels(task.name, queue).inc()
    return Accepted(id=result.id, task=task.name, queue=queue, status_url=f"/tasks/{result.id}")


@api.post("/tasks/email", status_code=202, response_model=Accepted)
def enqueue_email(body: EmailRequest) -> Accepted:
    return _enqueue(tasks.send_email, "emails", body)


@api.post("/tasks/report", status_code=202, response_model=Accepted)
def enqueue_report(body: ReportRequest) -> Accepted:
    return _enqueue(tasks.render_report, "reports", body)


@api.post("/tasks/long", status_code=202, response_model=Accepted)
def enqueue_long(body: LongJobRequest) -> Accepted:
    return _enqueue(tasks.long_job, "celery", body)


@api.get("/tasks/{task_id}", response_model=TaskState)
def task_state(task_id: Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]) -> TaskState:
    result = AsyncResult(task_id, app=celery_app)
    state = result.state
    if state == "PROGRESS":
        return TaskState(id=task_id, state=state, progress=result.info)
    if state == "FAILURE":
        return TaskState(id=task_id, state=state, error=repr(result.info))
    return TaskState(id=task_id, state=state, result=result.result if state == "SUCCESS" else None)


@api.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@api.get("/readyz")
def readyz() -> dict[str, str]:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        raise HTTPException(status_code=503, detail=f"broker unreachable: {exc}") from exc
    return {"status": "ready"}


@api.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
