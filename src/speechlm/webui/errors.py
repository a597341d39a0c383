"""Failed generations as a readable message box in the page, never a stack trace.

A handler wrapped with :func:`show_errors` ends its outputs with the message box. A user error
(:class:`~speechlm.errors.SpeechLMError`) shows its message and hint; anything unexpected is logged
with its traceback on the server and shown as one line that points at the log. The other outputs
keep what they showed, so an error does not wipe the previous takes.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
from typing import Callable

import gradio as gr

from speechlm.errors import SpeechLMError
from speechlm.stages.generate import GenerationCancelled

log = logging.getLogger(__name__)


def error_html(e: BaseException) -> str:
    """The message box's HTML for a failed generation (call it inside the ``except`` block).

    A user error shows its message and hint; anything else is logged with its traceback and shown as
    one line pointing at the server log.
    """
    if isinstance(e, GenerationCancelled):
        title, text = "Stopped", "the generation was stopped"
    elif isinstance(e, SpeechLMError):
        title, text = "Cannot generate", str(e)
    else:
        log.exception("web UI generation failed")
        first_line = (str(e).strip().splitlines() or [""])[0][:300]
        title, text = "Internal error", f"{type(e).__name__}: {first_line}. The server log has the details."
    return f'<div class="speechlm-error" role="alert"><strong>{title}:</strong> {html.escape(text)}</div>'


def show_errors(n_outputs: int) -> Callable[[Callable], Callable]:
    """Wrap a handler (plain or generator) whose outputs end with the message box.

    The handler returns / yields its other ``n_outputs - 1`` outputs. On success the box is hidden; on
    any error it shows :func:`error_html` and every other output keeps what it showed before.
    """
    hidden = gr.update(value="", visible=False)

    def failed(e: BaseException) -> list:
        return [gr.skip()] * (n_outputs - 1) + [gr.update(value=error_html(e), visible=True)]

    def decorate(fn: Callable) -> Callable:
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def stream_wrapper(*args, **kwargs):
                try:
                    for outputs in fn(*args, **kwargs):
                        yield [*outputs, hidden]
                except Exception as e:  # noqa: BLE001 - every failure must reach the page as a message
                    yield failed(e)
            return stream_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return [*fn(*args, **kwargs), hidden]
            except Exception as e:  # noqa: BLE001
                return failed(e)
        return wrapper

    return decorate
