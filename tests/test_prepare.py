"""``task=prepare``: raw recordings → ``<speaker>/<name>.wav|.lab|.npy``, a split and a summary; bad input skipped.

The raw folder is synthetic (syllable-like noise bursts between silences at several rates, levels and
channel counts) and the codec is the tiny VQGAN, so everything is built at test time.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch

from speechlm.config import compose
from speechlm.data.prepare import clean
from speechlm.data.prepare.codes import encode_clips
from speechlm.errors import InputError
from speechlm.stages.codec import VQGANCodec
from speechlm.testing.tiny_codec import compose_model_preset, make_tiny_vqgan

SR = 44100


def speech_like(seconds: float, sr: int, rng, level: float = 0.1, lead: float = 0.0, tail: float = 0.0,
                gaps: int = 0, gap_seconds: float = 0.5) -> np.ndarray:
    """Noise bursts modulated at 4 Hz (syllables), ``gaps`` silences between equal parts, silent lead/tail."""
    parts = [np.zeros(int(lead * sr))]
    n = gaps + 1
    for i in range(n):
        t = np.arange(int(seconds / n * sr)) / sr
        parts.append(level * rng.standard_normal(t.size) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)))
        if i < gaps:
            parts.append(np.zeros(int(gap_seconds * sr)))
    parts.append(np.zeros(int(tail * sr)))
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(0)
    (root / "alice" / "day1").mkdir(parents=True)
    (root / "bob").mkdir()
    a1 = speech_like(1.5, 22050, rng, level=0.02, lead=0.6, tail=0.9)  # quiet, 22.05 kHz, long silences
    sf.write(root / "alice" / "a1.wav", np.stack([a1, 0.5 * a1], 1), 22050)  # stereo
    (root / "alice" / "a1.lab").write_text("  Hello,\n this is Alice. ", encoding="utf-8")
    sf.write(root / "alice" / "day1" / "a2.flac", speech_like(2.0, 48000, rng, level=0.5), 48000)
    (root / "alice" / "day1" / "a2.txt").write_text("Second line.", encoding="utf-8")
    sf.write(root / "bob" / "b1.wav", speech_like(1.2, SR, rng, lead=0.2), SR)
    (root / "bob" / "b1.lab").write_text("Bob speaking.", encoding="utf-8")
    sf.write(root / "bob" / "long.wav", speech_like(4.5, SR, rng, gaps=2), SR)  # no transcript, 5.5 s
    for name, wave in (("silent", np.zeros(SR, np.float32)), ("short", speech_like(0.3, SR, rng))):
        sf.write(root / "bob" / f"{name}.wav", wave, SR)
        (root / "bob" / f"{name}.lab").write_text("words", encoding="utf-8")
    (root / "bob" / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    (root / "bob" / "broken.lab").write_text("words", encoding="utf-8")
    sf.write(root / "loose.wav", speech_like(1.2, SR, rng), SR)
    return root


@pytest.fixture(scope="module")
def vqgan_path(tmp_path_factory) -> Path:
    return make_tiny_vqgan(tmp_path_factory.mktemp("vq"))


def _cfg(raw: Path, out: Path, vqgan_path: Path, *extra: str):
    return compose("infer", ["task=prepare", f"input={raw}", f"output={out}", "model/vqgan=tiny",
                             f"checkpoints.vqgan={vqgan_path}", "device=cpu", "max_duration=2.0", *extra])


def test_prepare_writes_the_training_layout(raw, vqgan_path, tmp_path, capsys):
    from speechlm.tasks.prepare import run

    out = tmp_path / "data"
    assert run(_cfg(raw, out, vqgan_path, "encode_batch_size=2")) == 0
    wavs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    assert wavs == ["alice/a1.wav", "alice/day1_a2.wav", "bob/b1.wav"]
    assert (out / "alice" / "a1.lab").read_text(encoding="utf-8") == "Hello, this is Alice.\n"
    assert (out / "alice" / "day1_a2.lab").read_text(encoding="utf-8") == "Second line.\n"
    meter = pyloudnorm.Meter(SR, block_size=0.4)
    for rel in wavs:
        audio, sr = sf.read(out / rel, dtype="float32")
        assert sr == SR and audio.ndim == 1
        assert meter.integrated_loudness(audio.astype(np.float64)) == pytest.approx(-23.0, abs=1.0), rel
        assert np.abs(audio).max() <= 10 ** (-1 / 20) + 1e-3  # peak ceiling, -1 dBFS (PCM-16 rounding)
        db = clean.frame_db(audio)
        loud = np.flatnonzero(db > -50)
        lead, tail = loud[0] * clean.HOP / SR, (len(db) - 1 - loud[-1]) * clean.HOP / SR
        assert lead <= 0.15 and 0.3 <= tail <= 0.75, (rel, lead, tail)  # trimmed, then 0.3-0.7 s padded
        codes = np.load(out / Path(rel).with_suffix(".npy"))
        assert codes.dtype == np.int32 and codes.shape == (2, len(audio) // 512 // 4)
    train = (out / "train_filelist.txt").read_text().split()
    val = (out / "val_filelist.txt").read_text().split()
    assert sorted(train + val) == wavs and len(val) == 1
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["raw_files"] == 8 and summary["clips"] == 3
    assert set(summary["speakers"]) == {"alice", "bob"} and summary["speakers"]["alice"]["clips"] == 2
    reasons = {r["file"]: r["reason"] for r in summary["rejected"]}
    assert set(reasons) == {"bob/silent.wav", "bob/short.wav", "bob/broken.wav", "bob/long.wav", "loose.wav"}
    assert "silent" in reasons["bob/silent.wav"] and "too short" in reasons["bob/short.wav"]
    assert "could not be decoded" in reasons["bob/broken.wav"] and "no transcript" in reasons["bob/long.wav"]
    assert "speaker folder" in reasons["loose.wav"]
    printed = capsys.readouterr().out
    assert "prepared 3 clip(s)" in printed and "rejected bob/broken.wav" in printed and "speaker bob" in printed


def test_long_untranscribed_audio_is_split_at_silences(raw, vqgan_path, tmp_path):
    from speechlm.tasks.prepare import run

    out = tmp_path / "data"
    run(_cfg(raw, out, vqgan_path, "require_transcript=false", "encode=false"))
    pieces = sorted(out.glob("bob/long_*.wav"))
    assert [p.name for p in pieces] == ["long_000.wav", "long_001.wav", "long_002.wav"]  # 3 parts, 2 silences
    for p in pieces:
        seconds = sf.info(p).duration
        assert 1.3 < seconds < 2.0 + 0.7 and not p.with_suffix(".lab").exists()
    assert not list(out.rglob("*.npy"))


def test_asr_fills_missing_transcripts(raw, vqgan_path, tmp_path, monkeypatch):
    """The faster-whisper adapter, driven by a stand-in module with its API (no model can be downloaded here)."""
    from speechlm.tasks.prepare import run

    heard = []

    class FakeWhisper:
        def __init__(self, name, device, compute_type):
            assert name == "tiny.en" and device == "cpu"

        def transcribe(self, audio, language=None, beam_size=5):
            heard.append((audio.dtype, len(audio)))
            return iter([types.SimpleNamespace(text=" Part"), types.SimpleNamespace(text=f" {len(heard)}. ")]), None

    monkeypatch.setitem(sys.modules, "faster_whisper", types.SimpleNamespace(WhisperModel=FakeWhisper))
    out = tmp_path / "data"
    run(_cfg(raw, out, vqgan_path, "asr=whisper", "asr_model=tiny.en", "encode=false"))
    assert (out / "bob" / "long_002.lab").read_text(encoding="utf-8") == "Part 3.\n"
    assert (out / "bob" / "b1.lab").read_text(encoding="utf-8") == "Bob speaking.\n"  # existing ones kept
    assert len(heard) == 3 and all(dt == np.float32 and 16000 * 1.3 < n < 16000 * 2.7 for dt, n in heard)


def test_asr_unavailable_is_one_clear_error(raw, vqgan_path, tmp_path, monkeypatch):
    from speechlm.tasks.prepare import run

    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # import fails as when not installed
    with pytest.raises(InputError, match=r"faster-whisper.*pip install 'speechlm\[asr\]'"):
        run(_cfg(raw, tmp_path / "data", vqgan_path, "asr=whisper"))
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").iterdir())


def test_bad_folders_are_refused(raw, vqgan_path, tmp_path):
    from speechlm.tasks.prepare import run

    with pytest.raises(InputError, match="inside input"):
        run(_cfg(raw, raw / "out", vqgan_path))
    with pytest.raises(InputError, match="not a folder"):
        run(_cfg(tmp_path / "missing", tmp_path / "data", vqgan_path))
    empty = tmp_path / "empty" / "carol"
    empty.mkdir(parents=True)
    (empty / "x.wav").write_bytes(b"junk")
    with pytest.raises(InputError, match="no usable clip"):
        run(_cfg(tmp_path / "empty", tmp_path / "data", vqgan_path))


def test_batched_codes_match_single_encodes(vqgan_path):
    """Batch of clips of different lengths: the longest is exact, the others agree up to their last tokens."""
    codec = VQGANCodec.from_config(compose_model_preset("vqgan"), vqgan_path)
    rng = np.random.default_rng(1)
    clips = [speech_like(s, SR, rng, level=0.2) for s in (1.0, 1.6, 2.0, 2.4)]
    single = encode_clips(codec, clips, batch_size=1)
    batched = encode_clips(codec, clips, batch_size=4)
    for s, c, audio in zip(single, batched, clips):
        assert s.shape == c.shape == (2, len(audio) // 2048)
        np.testing.assert_array_equal(s, codec.encode(torch.from_numpy(audio)).numpy())
    np.testing.assert_array_equal(single[-1], batched[-1])
    ctx = codec.encode_context // codec.frames_per_token  # tokens the padding can reach (tiny: 9)
    for s, c in zip(single, batched):
        np.testing.assert_array_equal(s[:, : s.shape[1] - ctx], c[:, : s.shape[1] - ctx])
    equal = np.mean(np.concatenate([(s == c).ravel() for s, c in zip(single, batched)]))
    assert equal > 0.85, equal  # measured 0.95 (differences in the last 2-4 tokens of the shorter clips)


def test_loudness_normalisation_hits_the_target():
    rng = np.random.default_rng(2)
    audio = speech_like(3.0, SR, rng, level=0.01)
    out, before = clean.normalize_loudness(audio, SR, -20.0, peak_db=0.0)
    assert before < -35 and clean.loudness(out, SR) == pytest.approx(-20.0, abs=0.05)
    loud, _ = clean.normalize_loudness(audio, SR, -5.0, peak_db=-6.0)  # the ceiling wins
    assert np.abs(loud).max() == pytest.approx(10 ** (-6 / 20), rel=1e-4)
