"""``python infer.py task=webui``: the Gradio web UI over the ``task=tts`` pipeline.

Address: ``listen=`` / ``port=`` / ``share=`` overrides win, then Gradio's own variables
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` / ``GRADIO_SHARE``, then 127.0.0.1:7860. The pipeline is
loaded (and warmed up) before the port opens, so a missing checkpoint fails with one clear line.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from omegaconf import DictConfig

from speechlm.errors import InputError
from speechlm.params import SynthesisParams

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _port(value, source: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise InputError(f"{source}={value!r} is not a port number", "use a number in 1-65535", field="port")
    return int(text)


def resolve_address(cfg: DictConfig, environ=os.environ) -> tuple[str, int, bool]:
    """(host, port, share) from the config, else Gradio's environment variables, else the defaults.

    ``listen`` may be ``HOST`` or ``HOST:PORT`` (as for ``task=serve``); an explicit ``port`` wins.
    """
    host = port = None
    listen = cfg.listen
    if listen not in (None, ""):
        listen = str(listen)
        head, sep, tail = listen.rpartition(":")
        if sep and tail.isdigit() and (":" not in head or head.endswith("]")):  # HOST:PORT or [IPv6]:PORT
            host, port = head.strip("[]"), _port(tail, "listen")
        else:
            host = listen.strip("[]")
    if cfg.port is not None:
        port = _port(cfg.port, "port")
    host = host or environ.get("GRADIO_SERVER_NAME") or DEFAULT_HOST
    if port is None:
        env_port = environ.get("GRADIO_SERVER_PORT")
        port = _port(env_port, "GRADIO_SERVER_PORT") if env_port else DEFAULT_PORT
    share = cfg.share
    if share is None:
        value = environ.get("GRADIO_SHARE", "").strip().lower()
        if value not in _TRUE | _FALSE:
            raise InputError(f"GRADIO_SHARE={value!r} is not a boolean", "use GRADIO_SHARE=true or false",
                             field="share")
        share = value in _TRUE
    return host, port, bool(share)


def open_voice_store(references_dir: str | None):
    """The API's saved voices, if ``references_dir`` exists (the UI never creates it)."""
    if not references_dir or not Path(references_dir).is_dir():
        log.info("no saved voices: references_dir '%s' does not exist", references_dir)
        return None
    from speechlm.serving.voices import VoiceStore

    return VoiceStore(references_dir)


def run(cfg: DictConfig) -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from speechlm.pipeline import TTS
    from speechlm.webui import build_app, launch

    host, port, share = resolve_address(cfg)
    tts = TTS.from_config(cfg)
    if cfg.warmup:
        tts.synthesize("Hello.", seed=0)
        log.info("warm-up done")
    # the controls start at the config's synthesis parameters
    defaults = dataclasses.asdict(SynthesisParams.from_config(cfg))
    app = build_app(tts, voices=open_voice_store(cfg.references_dir), defaults=defaults)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone who can reach this port can use the UI (it has no login)", host)
    log.info("web UI at http://%s:%d/%s", host, port, " (and a public share link)" if share else "")
    launch(app, host, port, share=share, block=True)
