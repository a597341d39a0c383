"""The Gradio page: controls of the v1.1.2 web UI, wired to :class:`~speechlm.webui.handlers.Handlers`.

``build_app(tts)`` returns the ``gr.Blocks``; ``launch(app, ...)`` serves it with the page theme and
the translations of :mod:`speechlm.webui.i18n` (Gradio 6 takes theme, CSS and i18n at launch); the page
follows the browser's language. No analytics, no fonts or scripts from the internet.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys

import gradio as gr

from speechlm.params import PARAMS, SynthesisParams
from speechlm.stages.decoders.registry import DECODERS, checkpoint_slots
from speechlm.webui.errors import show_errors
from speechlm.webui.handlers import MAX_CLIPS, MAX_TAKES, UPLOADED, Handlers, Request
from speechlm.webui.i18n import I18N, t

log = logging.getLogger(__name__)

MAX_UPLOAD = "50mb"  # reference clips; the pipeline then enforces max_reference_seconds
# System fonts only: the default theme would fetch Google Fonts, and the UI must work offline.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])
CSS = """
#summary { min-height: 2.5em; }
.speechlm-error { color: #b42318; background: #fef3f2; border: 1px solid #fda29b; border-radius: 8px;
                  padding: 0.6em 0.9em; }
footer { display: none !important; }
"""


def _status_line(tts) -> str:
    try:
        status = tts.status()
    except Exception:  # noqa: BLE001 - informational only
        return ""
    models = ", ".join(k for k in dict.fromkeys(("text2semantic", "vqgan", *checkpoint_slots())) if status.get(k))
    return f"<small>device **{status.get('device', '?')}** · loaded: {models or 'none'}</small>"


def _max_tokens_limit(tts) -> int:
    """The token slider's top: the model's context, unless the parameter's own range is smaller."""
    cfg = getattr(tts, "cfg", None)
    try:
        from omegaconf import OmegaConf

        context = int(OmegaConf.select(cfg, "model.text2semantic.config.max_seq_len", default=2048) or 2048)
    except Exception:  # noqa: BLE001 - a stand-in pipeline may have no config
        context = 2048
    return int(min(context, PARAMS["max_new_tokens"].hi))


def _slider(name: str, value, hi: float | None = None, info=None) -> gr.Slider:
    """A slider whose range, step and help text are those of :data:`speechlm.params.PARAMS` ``name``.

    Its label is the translation of key ``name`` (the help text stays English unless ``info`` is given).
    """
    p = PARAMS[name]
    return gr.Slider(p.lo, p.hi if hi is None else hi, value=value, step=p.step, label=t(name),
                     info=p.help if info is None else info, elem_id=name.replace("_", "-"))


def _initial(defaults: dict | None) -> SynthesisParams:
    """Initial control values: the composed config's (validated once), else the parameters' defaults."""
    return SynthesisParams.make({k: v for k, v in (defaults or {}).items() if k in PARAMS})


def _text_inputs(p: SynthesisParams) -> dict:
    text = gr.Textbox(label=t("text"), placeholder=t("text_placeholder"), lines=6, elem_id="text")
    normalize = gr.Checkbox(label=t("normalize"), value=p.normalize, info=t("normalize_info"), elem_id="normalize")
    preview = gr.Textbox(label=t("preview"), lines=3, interactive=False, elem_id="preview")
    speed = _slider("speed", p.speed, info=t("speed_info"))
    return dict(text=text, normalize=normalize, preview=preview, speed=speed)


def _clip(audio_key: str, text_key: str, suffix: str = "") -> tuple[gr.Audio, gr.Textbox]:
    """One reference clip slot: the audio (upload or record) and its transcript."""
    audio = gr.Audio(label=t(audio_key), sources=["upload", "microphone"], type="filepath",
                     elem_id=f"reference-audio{suffix}")
    text = gr.Textbox(label=t(text_key), lines=2, elem_id=f"reference-text{suffix}")
    return audio, text


def _reference_tab(handlers: Handlers) -> dict:
    gr.Markdown(t("reference_help"))
    use_reference = gr.Checkbox(label=t("use_reference"), value=False, elem_id="use-ref")
    with gr.Row(equal_height=False):
        voice = gr.Dropdown(label=t("voice"), choices=handlers.voice_choices(), value=UPLOADED, scale=4,
                            elem_id="voice")
        refresh = gr.Button(t("refresh"), scale=0, min_width=110, size="sm")
    reference_audio, reference_text = _clip("reference_audio", "reference_text")
    more = []
    with gr.Accordion(t("more_clips"), open=False, elem_id="more-clips"):
        for n in range(2, MAX_CLIPS + 1):
            more += _clip(f"clip_audio_{n}", f"clip_text_{n}", suffix=f"-{n}")
    return dict(use_reference=use_reference, voice=voice, refresh=refresh, reference_audio=reference_audio,
                reference_text=reference_text, more_clips=more)


def _advanced_tab(p: SynthesisParams, tts) -> dict:
    decoder = PARAMS["decoder"]
    return dict(
        chunk_length=_slider("chunk_length", p.chunk_length),
        max_new_tokens=_slider("max_new_tokens", p.max_new_tokens, hi=_max_tokens_limit(tts)),
        top_p=_slider("top_p", p.top_p),
        repetition_penalty=_slider("repetition_penalty", p.repetition_penalty),
        temperature=_slider("temperature", p.temperature),
        speaker=gr.Textbox(label=t("speaker"), value=p.speaker or "", info=t("speaker_info"), elem_id="speaker"),
        # -1 (a fresh seed per click) unless the config chose another seed than the parameters' default, so
        # Generate gives a new take each time; the summary shows the seed and ♻ puts it back to repeat one
        seed=gr.Number(label=t("seed"), info=t("seed_info"), precision=0, elem_id="seed",
                       value=-1 if p.seed is None or p.seed == PARAMS["seed"].default else p.seed),
        reuse_seed=gr.Button(t("reuse_seed"), size="sm", elem_id="reuse-seed"),
        decoder=gr.Radio([(DECODERS[c].label, c) for c in decoder.choices], value=p.decoder, label=t("decoder"),
                         info=decoder.help, elem_id="decoder"),
        num_takes=gr.Slider(1, min(MAX_TAKES, PARAMS["num_samples"].hi), value=min(p.num_samples, MAX_TAKES), step=1,
                            label=t("num_takes"), info=PARAMS["num_samples"].help, elem_id="num-takes"),
    )


def _output_column() -> dict:
    with gr.Row():
        generate = gr.Button(t("generate"), variant="primary", elem_id="generate")
        generate_stream = gr.Button(t("generate_stream"), variant="secondary", elem_id="generate-stream")
        stop = gr.Button(t("stop"), variant="stop", elem_id="stop", scale=0, min_width=100)
    out = dict(generate=generate, generate_stream=generate_stream, stop=stop,
               message=gr.HTML(visible=False, elem_id="message"), summary=gr.Markdown(elem_id="summary"),
               stream_audio=gr.Audio(label=t("stream_audio"), streaming=True,
                                     autoplay=True, interactive=False, elem_id="stream-audio"),
               panels=[], players=[], pictures=[])
    for i in range(MAX_TAKES):
        with gr.Column(variant="panel", visible=i == 0) as panel:
            out["panels"].append(panel)
            out["players"].append(gr.Audio(label=t(f"take_{i + 1}"), type="filepath", interactive=False,
                                           buttons=["download"], elem_id=f"take-{i}"))
            out["pictures"].append(gr.Image(label=t(f"spectrogram_{i + 1}"), type="filepath",
                                            interactive=False, show_label=False, height=200, elem_id=f"spec-{i}"))
    return out


def _layout(tts, handlers: Handlers, p: SynthesisParams) -> dict:
    """Every component of the page, by name."""
    c: dict = {"status": gr.Markdown(_status_line(tts))}
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            c.update(_text_inputs(p))
            with gr.Tabs():
                with gr.Tab(t("tab_reference")):
                    c.update(_reference_tab(handlers))
                with gr.Tab(t("tab_advanced")):
                    c.update(_advanced_tab(p, tts))
        with gr.Column(scale=5):
            c.update(_output_column())
    return c


# The generation controls, in the order of :class:`~speechlm.webui.handlers.Request`'s fields; the
# further clips' (audio, text) pairs follow them.
CONTROLS = ("text", "normalize", "use_reference", "voice", "reference_audio", "reference_text", "chunk_length",
            "max_new_tokens", "top_p", "repetition_penalty", "temperature", "speaker", "seed", "decoder", "speed")


def make_request(values) -> Request:
    """The :class:`Request` of the controls' values (``CONTROLS``, then the further clips' pairs)."""
    core, more = values[:len(CONTROLS)], values[len(CONTROLS):]
    return Request(*core, clips=tuple(zip(more[0::2], more[1::2])))


def _wire(app: gr.Blocks, tts, handlers: Handlers, c: dict) -> None:
    """Connect the buttons and live previews to the handlers."""
    controls = [c[name] for name in CONTROLS] + c["more_clips"]
    take_outputs = [*c["panels"], *c["players"], *c["pictures"], c["summary"], c["message"]]

    @show_errors(len(take_outputs))
    def on_generate(*values, progress=gr.Progress()):
        return handlers.generate(make_request(values[:-1]), num_takes=values[-1], progress=progress)

    @show_errors(1 + len(take_outputs))
    def on_generate_stream(*values, progress=gr.Progress()):
        yield from handlers.generate_stream(make_request(values), progress=progress)

    for trigger in (c["text"].change, c["normalize"].change):
        trigger(handlers.preview_text, [c["text"], c["normalize"]], c["preview"], show_progress="hidden",
                trigger_mode="always_last", queue=False)
    c["voice"].change(handlers.select_voice, c["voice"], [c["use_reference"], c["reference_text"]],
                      show_progress="hidden")
    c["refresh"].click(handlers.refresh_voices, None, c["voice"], show_progress="hidden")
    app.load(handlers.refresh_voices, None, c["voice"], show_progress="hidden")
    app.load(lambda: _status_line(tts), None, c["status"], show_progress="hidden")
    c["generate"].click(on_generate, [*controls, c["num_takes"]], take_outputs, show_progress_on=c["players"][0],
                        concurrency_id="tts", concurrency_limit=1)
    c["generate_stream"].click(on_generate_stream, controls, [c["stream_audio"], *take_outputs],
                               show_progress_on=c["stream_audio"], concurrency_id="tts", concurrency_limit=1)
    c["stop"].click(handlers.stop, None, None, queue=False, show_progress="hidden")
    c["reuse_seed"].click(handlers.reuse_seed, c["seed"], c["seed"], queue=False, show_progress="hidden")


def build_app(tts, voices=None, defaults: dict | None = None, output_dir=None) -> gr.Blocks:
    """Build the page around one pipeline object.

    Args:
        tts: the loaded :class:`~speechlm.pipeline.TTS`.
        voices: the API's ``VoiceStore`` for the saved-voices dropdown, or None.
        defaults: initial control values (any :data:`speechlm.params.PARAMS` names, e.g. ``top_p``),
            normally the composed config; the rest start at the parameters' defaults.
        output_dir: folder for generated files (a temp folder by default).
    """
    handlers = Handlers(tts, voices=voices, output_dir=output_dir)
    with gr.Blocks(title="speechlm", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(t("header"))
        _wire(app, tts, handlers, _layout(tts, handlers, _initial(defaults)))
    app.handlers = handlers  # for tests and embedding
    return app


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           block: bool = True):
    """Serve ``app`` (blocking unless ``block=False``); returns Gradio's (app, local_url, share_url)."""
    with contextlib.redirect_stdout(_WithoutShareHint(sys.stdout)):  # its `share=True` advice does not apply here
        result = app.queue(default_concurrency_limit=1).launch(
            server_name=host, server_port=port, share=share, prevent_thread_lock=True, theme=THEME, css=CSS,
            ssr_mode=False, mcp_server=False, footer_links=[], quiet=not block, inbrowser=False,
            max_file_size=MAX_UPLOAD, i18n=I18N)
    if block:
        app.block_thread()
    return result


class _WithoutShareHint(io.TextIOBase):
    """A stdout that drops Gradio's "To create a public link, set `share=True`" line (``task=webui share=true``
    is the switch here) and passes everything else through."""

    def __init__(self, out):
        self.out = out

    def write(self, text: str) -> int:
        if "share=True" not in text:
            self.out.write(text)
        return len(text)

    def flush(self) -> None:
        self.out.flush()
