"""Waiting on worker jobs from a route without losing track of the client.

:func:`await_job` waits for a job's result (or first streamed item) while watching for a client
disconnect, cancelling the job when the client goes. :class:`JobStreamingResponse` is a chunked
response that always cancels its job when the response ends, however it ends (finished, client
gone, error), so an abandoned generation stops at its next segment.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator, Awaitable

from fastapi import Request
from fastapi.responses import StreamingResponse

from speechlm.serving.worker import ClientGone, Job

log = logging.getLogger("speechlm.serving")
POLL_SECONDS = 0.2


async def await_job(request: Request, job: Job, awaitable: Awaitable[Any]) -> Any:
    """Await ``awaitable`` (about ``job``); cancel the job and raise :class:`ClientGone` if the client leaves.

    An error the job raised after it was cancelled is reported as :class:`ClientGone` too.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS)
            if done:
                try:
                    return task.result()
                except (StopAsyncIteration, ClientGone):
                    raise
                except Exception:
                    if job.cancelled:
                        raise ClientGone() from None
                    raise
            if await request.is_disconnected():
                log.info("client left %s before its audio was ready; generation cancelled", request.url.path)
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()
            job.cancel()


class JobStreamingResponse(StreamingResponse):
    """A streaming response bound to a job: the job is cancelled when the response ends."""

    def __init__(self, job: Job, content: AsyncIterator[bytes], **kwargs):
        super().__init__(content, **kwargs)
        self.job = job

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel()


def sse_event(payload: dict) -> bytes:
    """One server-sent event carrying ``payload`` as JSON."""
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def add_audio_seconds(request: Request, seconds: float) -> None:
    """Account audio sent to this request (read by the access log)."""
    request.state.audio_seconds = getattr(request.state, "audio_seconds", 0.0) + seconds
