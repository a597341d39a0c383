"""The Gradio page: controls of the v1.1.2 web UI, wired to :class:`~speechlm.webui.handlers.Handlers`.

``build_app(tts)`` returns the ``gr.Blocks``; ``launch(app, ...)`` serves it with the page theme
(Gradio 6 takes theme and CSS at launch). No analytics, no fonts or scripts from the internet.
"""

from __future__ import annotations

import logging

import gradio as gr

from speechlm.webui.errors import show_errors
from speechlm.webui.handlers import MAX_TAKES, UPLOADED, Handlers, Request

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
HEADER = """# speechlm · voice-cloning text-to-speech
Type a text, optionally give a 5–10 s reference clip (and its transcript) for the voice, then **Generate**.
Checkpoint-compatible with Fish Speech 1.1 (weights under CC BY-NC-SA 4.0). Do not clone voices without consent."""


def _status_line(tts) -> str:
    try:
        status = tts.status()
    except Exception:  # noqa: BLE001 - informational only
        return ""
    models = ", ".join(k for k in ("text2semantic", "vqgan", "firefly", "vits") if status.get(k))
    return f"<small>device **{status.get('device', '?')}** · loaded: {models or 'none'}</small>"


def _max_tokens_limit(tts) -> int:
    cfg = getattr(tts, "cfg", None)
    try:
        from omegaconf import OmegaConf

        return int(OmegaConf.select(cfg, "model.text2semantic.config.max_seq_len", default=2048) or 2048)
    except Exception:  # noqa: BLE001 - a stand-in pipeline may have no config
        return 2048


def build_app(tts, voices=None, defaults: dict | None = None, output_dir=None) -> gr.Blocks:
    """Build the page around one pipeline object.

    Args:
        tts: the loaded :class:`~speechlm.pipeline.TTS`.
        voices: the API's ``VoiceStore`` for the saved-voices dropdown, or None.
        defaults: initial control values (``top_p``, ``temperature``, ``repetition_penalty``,
            ``chunk_length``, ``max_new_tokens``, ``seed``, ``speaker``, ``decoder``, ``normalize``,
            ``num_samples``), normally the composed config.
        output_dir: folder for generated files (a temp folder by default).
    """
    d = dict(defaults or {})
    handlers = Handlers(tts, voices=voices, output_dir=output_dir)
    seed = d.get("seed")

    with gr.Blocks(title="speechlm", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(HEADER)
        status = gr.Markdown(_status_line(tts))
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                text = gr.Textbox(label="Input text", placeholder="Put your text here.", lines=6,
                                  elem_id="text")
                normalize = gr.Checkbox(label="Text normalization (Unicode NFKC, accents folded)",
                                        value=bool(d.get("normalize", True)), elem_id="normalize")
                preview = gr.Textbox(label="Text the model reads (after normalization and cleaning)", lines=3,
                                     interactive=False, elem_id="preview")
                with gr.Tabs():
                    with gr.Tab("Reference voice"):
                        gr.Markdown("5–10 seconds of clean speech in the voice to clone, and what it says.")
                        use_reference = gr.Checkbox(label="Use reference voice", value=False, elem_id="use-ref")
                        with gr.Row(equal_height=False):
                            voice = gr.Dropdown(label="Saved voice (from the API's voice store)",
                                                choices=handlers.voice_choices(), value=UPLOADED, scale=4,
                                                elem_id="voice")
                            refresh = gr.Button("Refresh list", scale=0, min_width=110, size="sm")
                        reference_audio = gr.Audio(label="Reference audio (upload or record)",
                                                   sources=["upload", "microphone"], type="filepath",
                                                   elem_id="reference-audio")
                        reference_text = gr.Textbox(label="Reference text (transcript of the clip)", lines=2,
                                                    elem_id="reference-text")
                    with gr.Tab("Advanced"):
                        chunk_length = gr.Slider(0, 500, value=int(d.get("chunk_length", 150)), step=8,
                                                 label="Iterative prompt length (characters per segment; 0 = off)")
                        max_new_tokens = gr.Slider(0, _max_tokens_limit(tts), step=8,
                                                   value=int(d.get("max_new_tokens", 0)),
                                                   label="Max new tokens per segment (0 = no limit)")
                        top_p = gr.Slider(0.1, 1.0, value=float(d.get("top_p", 0.7)), step=0.01, label="Top-p")
                        repetition_penalty = gr.Slider(0.9, 2.0, value=float(d.get("repetition_penalty", 1.5)),
                                                       step=0.01, label="Repetition penalty")
                        temperature = gr.Slider(0.1, 1.0, value=float(d.get("temperature", 0.7)), step=0.01,
                                                label="Temperature")
                        speaker = gr.Textbox(label="Speaker (name in the prompt; empty = default)",
                                             value=d.get("speaker") or "")
                        seed_box = gr.Number(label="Seed (-1 = random; the summary shows the one used)",
                                             value=-1 if seed is None else int(seed), precision=0)
                        decoder = gr.Radio([("VITS (recommended)", "vits"), ("VQGAN + Firefly", "vqgan")],
                                           value=d.get("decoder") or "vits", label="Decoder")
                        num_takes = gr.Slider(1, MAX_TAKES, value=min(int(d.get("num_samples", 1)), MAX_TAKES),
                                              step=1, label="Number of takes")
            with gr.Column(scale=5):
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary", elem_id="generate")
                    generate_stream = gr.Button("Generate streaming", variant="secondary",
                                                elem_id="generate-stream")
                    stop = gr.Button("Stop", variant="stop", elem_id="stop", scale=0, min_width=100)
                message = gr.HTML(visible=False, elem_id="message")
                summary = gr.Markdown(elem_id="summary")
                stream_audio = gr.Audio(label="Streaming output (plays as segments arrive)", streaming=True,
                                        autoplay=True, interactive=False, elem_id="stream-audio")
                panels, players, pictures = [], [], []
                for i in range(MAX_TAKES):
                    with gr.Column(variant="panel", visible=i == 0) as panel:
                        panels.append(panel)
                        players.append(gr.Audio(label=f"Take {i + 1}", type="filepath", interactive=False,
                                                buttons=["download"], elem_id=f"take-{i}"))
                        pictures.append(gr.Image(label=f"Take {i + 1}: mel spectrogram", type="filepath",
                                                 interactive=False, show_label=False, height=200,
                                                 elem_id=f"spec-{i}"))

        controls = [text, normalize, use_reference, voice, reference_audio, reference_text, chunk_length,
                    max_new_tokens, top_p, repetition_penalty, temperature, speaker, seed_box, decoder]

        take_outputs = [*panels, *players, *pictures, summary, message]

        @show_errors(len(take_outputs))
        def on_generate(*values, progress=gr.Progress()):
            return handlers.generate(Request(*values[:-1]), num_takes=values[-1], progress=progress)

        @show_errors(1 + len(take_outputs))
        def on_generate_stream(*values, progress=gr.Progress()):
            yield from handlers.generate_stream(Request(*values), progress=progress)

        for trigger in (text.change, normalize.change):
            trigger(handlers.preview_text, [text, normalize], preview, show_progress="hidden",
                    trigger_mode="always_last", queue=False)
        voice.change(handlers.select_voice, voice, [use_reference, reference_text], show_progress="hidden")
        refresh.click(handlers.refresh_voices, None, voice, show_progress="hidden")
        app.load(handlers.refresh_voices, None, voice, show_progress="hidden")
        app.load(lambda: _status_line(tts), None, status, show_progress="hidden")
        generate.click(on_generate, [*controls, num_takes], take_outputs, show_progress_on=players[0],
                       concurrency_id="tts", concurrency_limit=1)
        generate_stream.click(on_generate_stream, controls, [stream_audio, *take_outputs],
                              show_progress_on=stream_audio, concurrency_id="tts", concurrency_limit=1)
        stop.click(handlers.stop, None, None, queue=False, show_progress="hidden")
    app.handlers = handlers  # for tests and embedding
    return app


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           block: bool = True):
    """Serve ``app`` (blocking unless ``block=False``); returns Gradio's (app, local_url, share_url)."""
    return app.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=not block, theme=THEME, css=CSS,
        ssr_mode=False, mcp_server=False, footer_links=[], quiet=not block, inbrowser=False,
        max_file_size=MAX_UPLOAD)
