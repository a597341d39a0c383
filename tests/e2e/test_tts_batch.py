"""Batch synthesis (``task=tts input=...``): line parsing, per-line errors, resuming, concurrency, saved voices."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from speechlm.errors import InputError
from speechlm.results import SynthesisResult
from speechlm.tasks.tts_batch import run_batch
from speechlm.tasks.tts_lines import check_input_file, read_lines


def _jsonl(path: Path, *rows) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _clip(path: Path, seconds: float = 1.5, sr: int = 22050) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), sr)
    return path


# --- parsing: no model needed ---------------------------------------------------------------------------

def test_text_lines_are_numbered_and_blank_lines_skipped(tmp_path):
    src = tmp_path / "lines.txt"
    src.write_text("First line.\n\n  Third line.  \n", encoding="utf-8")
    good, bad = read_lines(src, tmp_path / "out", "flac")
    assert [(ln.number, ln.text, ln.output.name) for ln in good] == [(1, "First line.", "0001.flac"),
                                                                    (3, "Third line.", "0003.flac")]
    assert bad == [] and good[0].overrides() == {}


def test_bad_jsonl_lines_name_their_number_and_reason(tmp_path):
    _clip(tmp_path / "ref.wav")
    src = _jsonl(tmp_path / "lines.jsonl",
                 {"text": "ok", "reference": "ref.wav", "reference_text": "hi", "seed": 3, "speaker": "bob",
                  "output": "sub/a.ogg"},
                 {"text": ""},
                 "{not json",
                 {"text": "x", "output": "../escape.wav"},
                 {"text": "x", "output": "a.txt"},
                 {"text": "x", "seed": -1},
                 {"text": "x", "colour": "red"},
                 {"text": "x", "voice": "v", "reference": "ref.wav"},
                 {"text": "dup", "output": "sub/a.ogg"},
                 {"text": "x", "reference": "missing.wav"},
                 [1, 2])
    missing = []

    def check_reference(p):
        if not Path(p).exists():
            missing.append(p)
            raise InputError(f"reference audio '{p}' does not exist")

    good, bad = read_lines(src, tmp_path / "out", check_reference=check_reference)
    assert [ln.number for ln in good] == [1]
    line = good[0]
    assert line.output == tmp_path / "out" / "sub" / "a.ogg"
    assert Path(line.reference) == tmp_path / "ref.wav"  # relative to the input file
    assert line.overrides() == {"seed": 3, "speaker": "bob"}
    reasons = {b.number: b.reason for b in bad}
    assert sorted(reasons) == list(range(2, 12))
    for number, needle in [(2, "text is empty"), (3, "not valid JSON"), (4, "leaves output_dir"),
                           (5, "unknown extension"), (6, "seed"), (7, "colour"), (8, "both 'voice' and"),
                           (9, "also written by line 1"), (10, "missing.wav"), (11, "not an object")]:
        assert needle in reasons[number], (number, reasons[number])
    assert str(bad[0]).startswith("line 2: ")


def test_input_file_is_checked_first(tmp_path):
    with pytest.raises(InputError, match="neither a .txt nor a .jsonl"):
        check_input_file(tmp_path / "lines.csv")
    with pytest.raises(InputError, match="does not exist"):
        check_input_file(tmp_path / "lines.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="not UTF-8"):
        read_lines(tmp_path / "bin.txt", tmp_path)


# --- the runner with a stand-in pipeline: concurrency, resuming, failures ---------------------------------

class _RecordingTTS:
    """Counts how many ``synthesize`` calls overlap; fails on the text "boom"."""

    sample_rate = 44100

    def __init__(self):
        self.lock = threading.Lock()
        self.active = self.peak = self.calls = 0
        self.seeds, self.seen = {}, {}

    def encode_reference(self, audio, text=None):
        return ("encoded", len(audio) if isinstance(audio, bytes) else str(audio), text)

    def synthesize(self, text, reference=None, **overrides):
        with self.lock:
            self.active += 1
            self.calls += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.05)  # long enough for every worker to enter
            if text == "boom":
                raise RuntimeError("model exploded")
            self.seeds[text] = overrides.get("seed")
            self.seen[text] = (reference, overrides.get("speaker"))
            audio = np.full(4410, 0.1, np.float32)
            return SynthesisResult(audio=audio, sample_rate=44100, takes=[audio], segments=1, tokens=10,
                                   wall_seconds=0.05, audio_seconds=0.1, rtf=0.5)
        finally:
            with self.lock:
                self.active -= 1


def _cfg(tmp_path, src, **extra):
    return OmegaConf.create({"input": str(src), "output_dir": str(tmp_path / "out"), "output_format": "wav",
                             "references_dir": str(tmp_path / "voices"), "voice": None, "reference": None,
                             "reference_text": None, "max_text_length": 1000, "max_reference_seconds": 90,
                             "num_samples": 1, "speaker": None, **extra})


def test_lines_run_concurrently_resume_and_failures_go_on(tmp_path, capsys):
    src = _jsonl(tmp_path / "lines.jsonl", *[{"text": f"line {i}", "seed": i} for i in range(5)],
                 {"text": "boom"}, {"text": ""})
    tts = _RecordingTTS()
    built = []
    code = run_batch(_cfg(tmp_path, src, max_batch_size=3), lambda cfg: built.append(1) or tts)
    out, err = capsys.readouterr()
    assert code == 1
    assert tts.peak == 3  # the whole batch in flight: max_batch_size concurrent synthesize calls
    assert tts.seeds == {f"line {i}": i for i in range(5)}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"000{i}.wav" for i in range(1, 6)]
    assert "line 6: RuntimeError: model exploded" in err and "line 7: text is empty" in err
    assert "7 lines: 5 synthesized, 0 skipped (already written), 2 failed | 0.50 s audio in" in out
    assert "RTF" in out and "failed lines: 6, 7" in err

    # a rerun skips what is written and does not even load the model when nothing is left but failures
    code = run_batch(_cfg(tmp_path, src, max_batch_size=3), lambda cfg: built.append(1) or tts)
    assert code == 1 and built == [1, 1] and tts.calls == 6 + 1  # only "boom" again
    assert "5 skipped" in capsys.readouterr().out
    _jsonl(src, *[{"text": f"line {i}", "seed": i} for i in range(5)])
    assert run_batch(_cfg(tmp_path, src), lambda cfg: pytest.fail("nothing left to synthesize")) == 0


def test_ctrl_c_stops_the_lines_in_flight_and_starts_no_more(tmp_path, monkeypatch):
    import speechlm.tasks.tts_batch as tts_batch

    src = tmp_path / "lines.txt"
    src.write_text("".join(f"line {i}\n" for i in range(6)))
    stopped = []

    class SlowTTS(_RecordingTTS):
        def synthesize(self, text, reference=None, should_stop=None, **overrides):
            if text == "line 1":  # in flight when Ctrl-C comes: ends at its next check
                while not should_stop():
                    time.sleep(0.01)
                stopped.append(text)
                raise InputError("cancelled")
            return super().synthesize(text, reference, **overrides)

    real = tts_batch.as_completed

    def interrupted(futures):
        for i, fut in enumerate(real(futures)):
            if i == 1:
                raise KeyboardInterrupt
            yield fut

    monkeypatch.setattr(tts_batch, "as_completed", interrupted)
    tts = SlowTTS()
    with pytest.raises(KeyboardInterrupt):
        run_batch(_cfg(tmp_path, src, max_batch_size=2), lambda cfg: tts)
    assert stopped == ["line 1"] and tts.calls <= 3  # lines 0 and 2 at most; the queued ones never started
    assert len(list((tmp_path / "out").iterdir())) == tts.calls


def test_saved_voice_gives_reference_and_speaker_unless_the_line_names_one(tmp_path):
    from speechlm.serving.voices import VoiceStore

    clip = _clip(tmp_path / "ref.wav")
    VoiceStore(tmp_path / "voices").add("alice", clip.read_bytes(), "what alice says", speaker="ally")
    src = _jsonl(tmp_path / "lines.jsonl", {"text": "a", "voice": "alice"},
                 {"text": "b", "voice": "alice", "speaker": "bob"}, {"text": "c"})
    tts = _RecordingTTS()
    assert run_batch(_cfg(tmp_path, src), lambda cfg: tts) == 0
    voice_ref = ("encoded", len(clip.read_bytes()), "what alice says")
    assert tts.seen == {"a": (voice_ref, "ally"), "b": (voice_ref, "bob"), "c": (None, None)}


def test_bad_default_reference_fails_before_the_model(tmp_path):
    src = tmp_path / "lines.txt"
    src.write_text("hello\n")
    with pytest.raises(InputError, match="missing.wav"):
        run_batch(_cfg(tmp_path, src, reference=str(tmp_path / "missing.wav")), lambda cfg: pytest.fail("loaded"))
    with pytest.raises(InputError, match="references_dir"):
        run_batch(_cfg(tmp_path, src, voice="alice"), lambda cfg: pytest.fail("loaded"))


# --- end to end through the CLI, tiny checkpoints ---------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_args(tiny_dir):
    from speechlm.testing.tiny import make_tiny_checkpoints, tiny_overrides

    return tiny_overrides(make_tiny_checkpoints(tiny_dir / "checkpoints"), tiny_dir / "cache")


def test_cli_batch_with_saved_voice_reference_and_every_format(tmp_path, tiny_args, capfd, monkeypatch):
    from speechlm.cli import main
    from speechlm.serving.voices import VoiceStore

    monkeypatch.chdir(tmp_path)
    clip = _clip(tmp_path / "ref.wav")
    VoiceStore(tmp_path / "voices").add("alice", clip.read_bytes(), "a test voice", speaker="alice")
    src = _jsonl(tmp_path / "lines.jsonl",
                 {"text": "Hello there.", "voice": "alice", "seed": 1, "output": "alice.ogg"},
                 {"text": "Second line.", "reference": "ref.wav", "reference_text": "a test voice",
                  "output": "ref.opus"},
                 {"text": "No voice at all."},
                 {"text": "Unknown voice.", "voice": "bob"})
    args = ["task=tts", f"input={src}", "output_dir=out", "references_dir=voices", *tiny_args]
    capfd.readouterr()
    assert main(args) == 1
    out, err = capfd.readouterr()
    assert "line 4: no saved voice with id 'bob'" in err
    assert "4 lines: 3 synthesized, 0 skipped (already written), 1 failed" in out
    info = {p.name: sf.info(p) for p in (tmp_path / "out").iterdir()}
    assert sorted(info) == ["0003.wav", "alice.ogg", "ref.opus"]
    assert info["alice.ogg"].format == "OGG" and info["ref.opus"].subtype == "OPUS" and info["0003.wav"].frames > 0
    assert not list((tmp_path / "out").glob(".*"))  # atomic writes: no temporary files left
    before = (tmp_path / "out" / "alice.ogg").read_bytes()
    assert main(args) == 1
    assert "3 skipped" in capfd.readouterr().out
    assert (tmp_path / "out" / "alice.ogg").read_bytes() == before


def test_cli_single_text_writes_what_decode_writes(tmp_path, tiny_args, capfd, monkeypatch):
    """task=tts used to refuse .opus/.ogg; it now takes the writer's set (every format: test_audio_io).
    Also one text in a saved voice (voice=)."""
    from speechlm.cli import main
    from speechlm.serving.voices import VoiceStore

    monkeypatch.chdir(tmp_path)
    VoiceStore(tmp_path / "voices").add("alice", _clip(tmp_path / "ref.wav").read_bytes(), "a test voice")
    capfd.readouterr()
    assert main(["task=tts", "text=Hi there.", "voice=nobody", "references_dir=voices", *tiny_args]) == 2
    assert "no saved voice with id 'nobody'" in capfd.readouterr().err
    assert main(["task=tts", "text=Hi there.", "output=x.opus", "num_samples=2", "voice=alice",
                 "references_dir=voices", *tiny_args]) == 0, capfd.readouterr().err
    for name in ("x_0.opus", "x_1.opus"):
        info = sf.info(tmp_path / name)
        assert info.format == "OGG" and info.subtype == "OPUS" and info.frames > 0


def test_cli_text_and_input_together_is_one_line(tmp_path, tiny_args, capfd, monkeypatch):
    from speechlm.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lines.txt").write_text("hi\n")
    capfd.readouterr()
    assert main(["task=tts", "text=hi", "input=lines.txt", *tiny_args]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "both text= and input=" in err[0]
