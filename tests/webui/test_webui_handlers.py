"""The web UI's callbacks without a browser: real tiny pipeline, real files, readable errors."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from speechlm.errors import InputError, SpeechLMError
from speechlm.webui.errors import show_errors
from speechlm.webui.handlers import MAX_CLIPS, MAX_TAKES, UPLOADED, Handlers, Request


def by_key(app) -> dict:
    """The page's components by their label's translation key (``top_p``, ``take_1``, …)."""
    from gradio.i18n import I18nData

    return {b.label.key: b for b in app.blocks.values() if isinstance(getattr(b, "label", None), I18nData)}


def request(text="Hello there.", **changes) -> Request:
    values = dict(text=text, normalize=True, use_reference=False, voice_id=UPLOADED, reference_audio=None,
                  reference_text="", chunk_length=150, max_new_tokens=16, top_p=0.7, repetition_penalty=1.5,
                  temperature=0.7, speaker="", seed=7, decoder="vits")
    values.update(changes)
    return Request(**values)


@pytest.fixture
def handlers(tiny_tts, tmp_path):
    return Handlers(tiny_tts, output_dir=tmp_path / "out")


def test_generate_two_takes_with_reference(handlers, reference_clip):
    out = handlers.generate(request(use_reference=True, reference_audio=str(reference_clip),
                                    reference_text="A short reference clip."), num_takes=2)
    panels, players = out[:MAX_TAKES], out[MAX_TAKES:2 * MAX_TAKES]
    pictures, summary = out[2 * MAX_TAKES:3 * MAX_TAKES], out[-1]
    assert [p["visible"] for p in panels] == [True, True] + [False] * (MAX_TAKES - 2)
    assert [p["value"] is not None for p in players + pictures] == 2 * ([True, True] + [False] * (MAX_TAKES - 2))
    for player, picture in zip(players[:2], pictures[:2]):
        audio, sr = sf.read(player["value"], dtype="float32")
        assert sr == handlers.tts.sample_rate and len(audio) > 0 and np.abs(audio).max() <= 1.0
        with open(picture["value"], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert players[0]["value"] != players[1]["value"]
    assert "2 takes" in summary and "RTF" in summary and "tokens/s" in summary and "seed 7" in summary


def test_stream_yields_wav_chunks_then_the_whole_take(handlers):
    steps = list(handlers.generate_stream(request("One. Two.", chunk_length=0)))
    chunks, final = steps[:-1], steps[-1]
    assert chunks, "no segment was streamed"
    pieces = []
    for step in chunks:
        assert step[0][:4] == b"RIFF"
        audio, sr = sf.read(io.BytesIO(step[0]), dtype="int16")
        assert sr == handlers.tts.sample_rate
        pieces.append(audio)
        assert step[-1].startswith("Streaming")
    assert final[0] is None
    panels, player, picture = final[1:1 + MAX_TAKES], final[1 + MAX_TAKES], final[1 + 2 * MAX_TAKES]
    assert [p["visible"] for p in panels] == [True] + [False] * (MAX_TAKES - 1)
    whole, sr = sf.read(player["value"], dtype="int16")
    np.testing.assert_array_equal(whole, np.concatenate(pieces))  # the saved take is what was streamed
    assert picture["value"].endswith(".png")
    assert "first audio after" in final[-1]


@pytest.mark.parametrize("req, words", [
    (request("   "), "text is empty"),
    (request(use_reference=True), "no clip was uploaded"),
    (request(top_p=0.05), "top_p"),
])
def test_bad_requests_raise_user_errors(handlers, reference_clip, req, words):
    with pytest.raises(SpeechLMError, match=words):
        handlers.generate(req)


def test_stop_cancels_the_running_generation(handlers):
    from speechlm.stages.generate import GenerationCancelled
    from speechlm.webui.errors import error_html

    def progress(*args, **kwargs):  # the page's progress bar; here it presses Stop as soon as work starts
        handlers.stop()

    with pytest.raises(GenerationCancelled) as e:
        handlers.generate(request(), progress=progress)
    assert "Stopped" in error_html(e.value)


def test_reference_without_transcript_is_timbre_only(handlers, reference_clip):
    """As v1.1.2: a clip without a transcript is accepted (VITS timbre only, the model is not prompted)."""
    out = handlers.generate(request(use_reference=True, reference_audio=str(reference_clip), reference_text=" "))
    assert out is not None


def test_errors_fill_the_message_box_and_keep_the_outputs():
    @show_errors(3)
    def bad_input():
        raise InputError("text <b> is empty", "type something")

    @show_errors(3)
    def crash():
        raise RuntimeError("boom\nsecond line")

    @show_errors(2)
    def stream():
        yield ["chunk"]
        raise InputError("stream broke")

    @show_errors(2)
    def fine():
        return ["ok"]

    out = bad_input()
    assert out[:2] == [gr.skip(), gr.skip()] and out[2]["visible"]
    assert "Cannot generate" in out[2]["value"] and "text &lt;b&gt; is empty — type something" in out[2]["value"]
    box = crash()[2]["value"]
    assert "Internal error" in box and "RuntimeError: boom" in box and "second line" not in box
    assert "Traceback" not in box
    steps = list(stream())
    assert steps[0][0] == "chunk" and steps[0][1]["visible"] is False and "stream broke" in steps[1][1]["value"]
    assert fine() == ["ok", gr.update(value="", visible=False)]


def test_saved_voices_of_the_api_store(handlers, tmp_path, reference_clip):
    from speechlm.serving.voices import VoiceStore

    store = VoiceStore(tmp_path / "voices")
    store.add("alice", reference_clip.read_bytes(), "Hello, I am Alice.")
    handlers.voices = store
    choices = handlers.voice_choices()
    assert choices[0][1] == UPLOADED and [c[1] for c in choices[1:]] == ["alice"]
    use_ref, text = handlers.select_voice("alice")
    assert use_ref["value"] is True and text["value"] == "Hello, I am Alice."
    [ref] = handlers._reference(request(use_reference=True, voice_id="alice"))
    assert ref.text == "Hello, I am Alice." and ref.codes.ndim == 2
    # a saved voice plus a further uploaded clip: both prompt the model, the saved one first
    refs = handlers._reference(request(use_reference=True, voice_id="alice",
                                       clips=((str(reference_clip), "Another clip."),)))
    assert [r.text for r in refs] == ["Hello, I am Alice.", "Another clip."]
    with pytest.raises(SpeechLMError, match="no saved voice"):
        handlers._reference(request(use_reference=True, voice_id="bob"))


def test_text_preview():
    h = Handlers(tts=None)
    assert h.preview_text("Café  ＡＢＣ１２３。", True) == "Cafe ABC123."
    assert h.preview_text("Café", False) == "Caf"  # the original cleaning drops what it cannot read
    assert h.preview_text("", True) == ""


def test_stream_without_ffmpeg_says_so(handlers, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SpeechLMError, match="ffmpeg"):
        next(handlers.generate_stream(request()))


def test_address_from_overrides_then_gradio_env_then_default():
    from speechlm.tasks.webui import resolve_address

    def cfg(**kw):
        return OmegaConf.create({"listen": None, "port": None, "share": None, **kw})

    env = {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "9000", "GRADIO_SHARE": "True"}
    assert resolve_address(cfg(), {}) == ("127.0.0.1", 7860, False)
    assert resolve_address(cfg(), env) == ("0.0.0.0", 9000, True)
    assert resolve_address(cfg(listen="10.0.0.2:7000", share=False), env) == ("10.0.0.2", 7000, False)
    assert resolve_address(cfg(listen="::1", port=7001), env) == ("::1", 7001, True)
    with pytest.raises(InputError, match="port"):
        resolve_address(cfg(port="http"), {})
    with pytest.raises(InputError, match="GRADIO_SHARE"):
        resolve_address(cfg(), {"GRADIO_SHARE": "maybe"})


def test_page_builds_with_every_control(tiny_tts):
    from speechlm.webui import build_app

    app = build_app(tiny_tts, defaults={"seed": None, "decoder": "vqgan", "top_p": 0.8})
    controls = by_key(app)
    for key in ("text", "normalize", "top_p", "temperature", "repetition_penalty", "decoder", "num_takes", "speed",
                "speaker", "reference_text", "stream_audio", *(f"clip_audio_{n}" for n in range(2, MAX_CLIPS + 1)),
                *(f"clip_text_{n}" for n in range(2, MAX_CLIPS + 1))):
        assert key in controls, key
    assert controls["decoder"].value == "vqgan" and controls["top_p"].value == 0.8
    speed = controls["speed"]
    assert (speed.minimum, speed.maximum, speed.value) == (0.25, 4.0, 1.0)
    app.close()


def test_old_output_files_are_pruned(tmp_path):
    import os
    import time

    h = Handlers(tts=None, output_dir=tmp_path)
    old, new = tmp_path / "0001_take1.wav", tmp_path / "0002_take1.wav"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    h._prune()
    assert not old.exists() and new.exists()


def test_task_webui_composes_and_launches(tiny_tts, tiny_dir, tmp_path, monkeypatch):
    """``infer.py task=webui`` wiring: config keys, Gradio env vars, saved voices, no warm-up when off."""
    import speechlm.webui
    from speechlm.pipeline import TTS
    from speechlm.tasks import webui as task
    from speechlm.testing.tiny import tiny_config

    (tmp_path / "voices").mkdir()
    cfg = tiny_config(tiny_dir, ["warmup=false", "port=7999", "top_p=0.8",
                                 f"references_dir='{tmp_path / 'voices'}'"], task="webui")
    assert cfg.task_fn == "speechlm.tasks.webui.run" and cfg.listen is None
    calls = {}
    monkeypatch.setattr(TTS, "from_config", classmethod(lambda cls, c: tiny_tts))
    monkeypatch.setattr(speechlm.webui, "launch", lambda app, host, port, share, block: calls.update(
        app=app, host=host, port=port, share=share, block=block))
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7001")
    task.run(cfg)
    assert (calls["host"], calls["port"], calls["share"], calls["block"]) == ("0.0.0.0", 7999, False, True)
    handlers = calls["app"].handlers
    assert handlers.tts is tiny_tts and handlers.voices is not None and handlers.voices.list() == []
    assert by_key(calls["app"])["top_p"].value == 0.8  # control defaults come from the config
    calls["app"].close()


def test_controls_take_range_step_and_help_from_params(tiny_tts):
    from speechlm.params import PARAMS
    from speechlm.webui import build_app

    app = build_app(tiny_tts)
    by_label = by_key(app)
    for name in ("top_p", "temperature", "repetition_penalty", "speed"):
        slider, p = by_label[name], PARAMS[name]
        assert (slider.minimum, slider.maximum, slider.step, slider.value) == (p.lo, p.hi, p.step, p.default)
        assert slider.info == p.help or name == "speed"
    chunk = by_label["chunk_length"]
    assert (chunk.minimum, chunk.maximum, chunk.value) == (PARAMS["chunk_length"].lo, PARAMS["chunk_length"].hi,
                                                           PARAMS["chunk_length"].default)
    assert [c[1] for c in by_label["decoder"].choices] == list(PARAMS["decoder"].choices)
    app.close()


def _spy(monkeypatch, tts, method: str) -> dict:
    """Record what the handler hands ``tts.<method>`` (the real method still runs)."""
    seen, real = {}, getattr(tts, method)

    def spy(text, params=None, **kwargs):  # takes params= as the pipeline does (call_pipeline checks)
        seen.update(params=params, **kwargs)
        return real(text, params=params, **kwargs)

    monkeypatch.setattr(tts, method, spy)
    return seen


def test_every_clip_prompts_the_model(handlers, reference_clip, monkeypatch):
    seen = _spy(monkeypatch, handlers.tts, "synthesize")
    clips = ((str(reference_clip), "The second clip."), (None, ""), (str(reference_clip), ""))
    handlers.generate(request(use_reference=True, reference_audio=str(reference_clip), reference_text="The first.",
                              clips=clips))
    assert [r.text for r in seen["reference"]] == ["The first.", "The second clip.", None]  # clip 4: timbre only
    with pytest.raises(InputError, match="reference text 3 is filled in but reference audio 3 is empty"):
        handlers.generate(request(use_reference=True, reference_audio=str(reference_clip),
                                  clips=((None, ""), (None, "orphan transcript"))))
    with pytest.raises(InputError, match="no clip was uploaded"):
        handlers.generate(request(use_reference=True, clips=((None, ""),)))


@pytest.mark.parametrize("method", ["synthesize", "stream"])
def test_speed_and_speaker_reach_the_pipeline(handlers, monkeypatch, method):
    seen = _spy(monkeypatch, handlers.tts, method)
    req = request(speed=2.0, speaker=" alice ")
    list(handlers.generate_stream(req)) if method == "stream" else handlers.generate(req)
    assert seen["params"].speed == 2.0 and seen["params"].speaker == "alice"


def test_speed_changes_the_take_length(handlers):
    lengths = {}
    for speed in (1.0, 2.0):
        out = handlers.generate(request("Hello there, a longer sentence.", speed=speed, seed=5))
        lengths[speed] = sf.info(out[MAX_TAKES]["value"]).frames
    assert lengths[2.0] == pytest.approx(lengths[1.0] / 2, rel=0.05)  # same take, half as long
    with pytest.raises(InputError, match="speed"):
        handlers.generate(request(speed=5.0))


def test_make_request_maps_the_page_values():
    from speechlm.webui.app import CONTROLS, make_request

    values = [f"v{i}" for i in range(len(CONTROLS))] + ["a2", "t2", "a3", "t3"]
    req = make_request(values)
    assert req.text == "v0" and req.speed == f"v{len(CONTROLS) - 1}" and req.clips == (("a2", "t2"), ("a3", "t3"))


def test_translations_cover_every_label_in_four_languages(tiny_tts):
    from speechlm.webui import build_app
    from speechlm.webui.i18n import I18N, LOCALES, english, table

    assert LOCALES == ("en", "zh-CN", "ja", "es")
    tables = {loc: table(loc) for loc in LOCALES}
    assert all(tables[loc].keys() == tables["en"].keys() for loc in LOCALES)
    for loc in LOCALES[1:]:  # actually translated, not English copies
        assert tables[loc]["generate"] != tables["en"]["generate"] and tables[loc]["text"] != tables["en"]["text"]
    assert tables["zh-CN"]["generate"] == "生成" and tables["es"]["take_2"] == "Toma 2"
    assert I18N.translations["zh"] is I18N.translations["zh-TW"] == tables["zh-CN"]  # regional variants
    app = build_app(tiny_tts)
    assert set(by_key(app)) <= tables["en"].keys() and english("take_1") == "Take 1"
    app.close()


# ------------------------------------------------------------------ issue 21 item 11: seed, UI hints, share hint
def test_fresh_seed_per_click_shown_and_reusable(handlers, tiny_tts):
    from speechlm.webui import build_app

    app = build_app(tiny_tts, defaults={"seed": 42})  # the config's default seed: random per click
    assert by_key(app)["seed"].value == -1
    assert any(getattr(b, "elem_id", None) == "reuse-seed" for b in app.blocks.values())
    assert by_key(build_app(tiny_tts, defaults={"seed": 9}))["seed"].value == 9  # task=webui seed=9 is kept
    assert handlers.reuse_seed(-1) == -1  # nothing generated yet: the box stays as it is
    seeds = []
    for _ in range(2):
        summary = handlers.generate(request(seed=-1))[-1]
        seeds.append(handlers.last_seed)
        assert f"seed {handlers.last_seed}" in summary
    assert seeds[0] != seeds[1]  # two clicks, two takes
    assert handlers.reuse_seed(-1) == seeds[1]
    again = handlers.generate(request(seed=handlers.reuse_seed(-1)))
    assert handlers.last_seed == seeds[1] and f"seed {seeds[1]}" in again[-1]


def test_hints_are_in_the_pages_words():
    from speechlm.errors import InputError
    from speechlm.params import PARAMS, check_text
    from speechlm.webui.errors import error_html

    with pytest.raises(InputError) as empty:
        check_text("   ")
    box = error_html(empty.value)
    assert "Input text box" in box and "text=" not in box and "&quot;Hello&quot;" not in box, box
    with pytest.raises(InputError) as bad:
        PARAMS["temperature"].check(5.0)
    box = error_html(bad.value)
    assert "temperature=" not in box and "Temperature" in box and "[0.1, 1]" in box, box
    plain = InputError("the clip is silent", "record it again closer to the microphone", field="reference")
    assert "record it again closer to the microphone" in error_html(plain)  # UI words already: kept


def test_launch_hides_the_share_hint(tiny_tts, capfd):
    from speechlm.webui import build_app, launch

    app = build_app(tiny_tts)
    try:
        launch(app, "127.0.0.1", 0 or _free_port(), block=False)
    finally:
        app.close()
    out = "".join(capfd.readouterr())
    assert "share=True" not in out and "public link" not in out, out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_takes_are_written_atomically_with_the_umask(tmp_path, monkeypatch):
    import os

    from matplotlib.figure import Figure

    ui = Handlers(object(), output_dir=tmp_path)
    audio = np.sin(np.linspace(0, 200, 22050)).astype(np.float32)
    old = os.umask(0o022)
    try:
        wav, png = ui._write_take(audio, 22050, 0)
        assert oct(os.stat(wav).st_mode & 0o777) == "0o644" and oct(os.stat(png).st_mode & 0o777) == "0o644"

        def half_written(self, path, **kwargs):  # a disk that fills up in the middle of the picture
            Path(path).write_bytes(b"\x89PNG partial")
            raise OSError("No space left on device")

        monkeypatch.setattr(Figure, "savefig", half_written)
        with pytest.raises(OSError):
            ui._write_take(audio, 22050, 1)
    finally:
        os.umask(old)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".png", ".wav", ".wav"]  # no half picture
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
