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
import re
from typing import Callable

import gradio as gr

from speechlm.errors import SpeechLMError
from speechlm.stages.generate import GenerationCancelled

log = logging.getLogger(__name__)


# Hints in the page's words for the fields a page user can get wrong (the pipeline's hints name CLI keys).
UI_HINTS = {
    "text": "type the text to speak in the Input text box",
    "reference": "upload or record a 5–10 s clip of clean speech in the Reference voice tab, or untick "
                 "'Use reference voice'",
    "reference_text": "type what the reference clip says in its transcript box (or leave it empty for the "
                      "timbre only)",
    "voice": "pick another saved voice, or upload a clip",
    "speaker": "clear the Speaker box or type the name the model was fine-tuned with",
}
# CLI syntax in a hint: key=value, key=<...>, --flag, `task=...`
_CLI = re.compile(r"\b[a-z_]+=(\S|$)|(^|\s)--[a-z]|`")


def ui_message(e: SpeechLMError) -> str:
    """``message — hint`` with a hint written in CLI syntax replaced by the page's words."""
    hint, message = e.hint, e.message
    if hint and _CLI.search(hint):
        hint = UI_HINTS.get(e.field or "") or _control_hint(e.field) or "check the settings and try again"
    if e.field and f"{e.field}=" in message:  # "temperature=5.0 is out of range" → "Temperature 5.0 is ..."
        message = message.replace(f"{e.field}=", f"{_label(e.field)} ")
    return f"{message} — {hint}" if hint else message


def _label(field: str) -> str:
    """The English label of a control, without its parenthesised help."""
    from speechlm.webui.i18n import table

    return table("en").get(field, field.replace("_", " ")).split(" (")[0]


def _control_hint(field: str | None) -> str | None:
    """'set Temperature in [0.1, 1]' for a parameter the page has a control for."""
    from speechlm.params import PARAMS

    if field not in PARAMS:
        return None
    label = _label(field)
    span = PARAMS[field].range_text
    return f"set '{label}' to a value in {span}" if span else f"change '{label}'"


def error_html(e: BaseException) -> str:
    """The message box's HTML for a failed generation (call it inside the ``except`` block).

    A user error shows its message and hint; anything else is logged with its traceback and shown as
    one line pointing at the server log.
    """
    if isinstance(e, GenerationCancelled):
        title, text = "Stopped", "the generation was stopped"
    elif isinstance(e, SpeechLMError):
        title, text = "Cannot generate", ui_message(e)
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
