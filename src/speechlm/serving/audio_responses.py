"""Audio answers shared by the synthesis routes: headers, waiting for a job, streamed pieces.

``/v1/invoke``, ``/v1/audio/speech`` and ``/v1/tts`` hand a job to the worker pool and answer with its
audio, whole or streamed; these helpers keep that one code path (access-log seconds, early 4xx, a clean
end when the model fails mid-stream).
"""

from __future__ import annotations

import logging
from typing import AsyncIterator

from fastapi import Request

from speechlm.serving import formats
from speechlm.serving.streaming import add_audio_seconds, await_job
from speechlm.serving.synthesis import StreamPiece, Synthesized
from speechlm.serving.worker import Job

log = logging.getLogger("speechlm.serving")

# OpenAPI ``content`` of a 200 with audio: every format the routes can answer.
AUDIO_CONTENT = {t: {"schema": {"type": "string", "format": "binary"}} for t in formats.CONTENT_TYPES.values()}


def audio_headers(fmt: str) -> dict:
    """``Content-Disposition`` naming the file by its format (opus: ``.ogg``)."""
    ext = "ogg" if fmt == "opus" else fmt
    return {"Content-Disposition": f"attachment; filename=audio.{ext}"}


async def finished(request: Request, job: Job) -> Synthesized:
    """The finished job's result (its audio seconds go to the access log)."""
    result: Synthesized = await await_job(request, job, job.result())
    add_audio_seconds(request, result.audio_seconds)
    return result


async def first_piece(request: Request, job: Job) -> tuple[AsyncIterator[StreamPiece], StreamPiece | None]:
    """Wait for the first segment, so errors before any audio still get a proper 4xx status."""
    items = job.items().__aiter__()
    try:
        return items, await await_job(request, job, items.__anext__())
    except StopAsyncIteration:
        return items, None


async def stream_pieces(request: Request, items: AsyncIterator[StreamPiece], first: StreamPiece | None,
                        job: Job) -> AsyncIterator[StreamPiece]:
    """All streamed pieces, first included; a failure mid-stream is logged and ends the stream."""
    if first is not None:
        add_audio_seconds(request, first.seconds)
        yield first
    try:
        async for piece in items:
            add_audio_seconds(request, piece.seconds)
            yield piece
    except Exception as e:  # noqa: BLE001 - headers are sent: end the stream cleanly and log
        if not job.cancelled:
            log.error("%s: stream ended early: %s: %s", request.url.path, type(e).__name__, e)
            request.state.stream_error = str(e) or type(e).__name__


async def audio_body(pieces: AsyncIterator[StreamPiece]) -> AsyncIterator[bytes]:
    """The pieces' bytes (a streamed audio body)."""
    async for piece in pieces:
        if piece.data:
            yield piece.data
