"""`infer.py task=encode` / `task=decode` end to end with tiny checkpoints made at test time.

Happy paths run the real entry point in a subprocess; the bad-input matrix calls the same
``speechlm.cli.main`` in-process (fast) and checks the exit code and that stderr is exactly one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlm.cli import main
from speechlm.config import quote

ROOT = Path(__file__).resolve().parents[1]
SR = 44100
HOP, TOKEN = 512, 2048  # mel hop and samples per token of the codec


def speechlike(path: Path, seconds: float, sr: int, channels: int = 1) -> Path:
    """Harmonics with a moving pitch and a syllable-rate envelope."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 1.3 * t)) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    wave = (0.3 * wave / np.abs(wave).max()).astype(np.float32)
    sf.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, sr)
    return path


def tokens_for(samples_44k: int) -> int:
    return (samples_44k // HOP) // (TOKEN // HOP)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    from speechlm.testing.tiny_codec import make_tiny_firefly, make_tiny_vqgan
    from speechlm.testing.tiny_vits import make_tiny_vits

    folder = tmp_path_factory.mktemp("ckpt")
    return {"vqgan": Path(make_tiny_vqgan(folder / "vqgan")), "firefly": Path(make_tiny_firefly(folder / "firefly")),
            "vits": Path(make_tiny_vits(folder / "vits"))}


@pytest.fixture(scope="module")
def tiny(ckpts) -> list[str]:
    """Overrides selecting the tiny presets and checkpoints (paths quoted for Hydra)."""
    # precision=fp32: the default (auto) picks bf16 where a load-time probe measures it faster, and these tests
    # compare the CLI's audio with an fp32 decoder
    return ["device=cpu", "precision=fp32", *(f"model/{a}=tiny" for a in ("vqgan", "firefly", "vits")),
            *(f"checkpoints.{slot}={quote(str(p))}" for slot, p in ckpts.items())]


def cli(args, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(ROOT / "infer.py"), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def run_inprocess(args, cwd: Path, capfd, monkeypatch) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    code = main(list(args))
    return code, capfd.readouterr().err


def assert_one_line(code: int, err: str, needle: str) -> None:
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle.lower() in lines[0].lower(), lines[0]


# ------------------------------------------------------------------------------------------ happy paths
def test_encode_then_decode_vqgan_with_original_flags(tmp_path, tiny, ckpts):
    speechlike(tmp_path / "ref.wav", 1.3, 22050)
    r = cli(["task=encode", "input=ref.wav", "output=ref.npy", *tiny], tmp_path)
    assert r.returncode == 0, r.stderr
    codes = np.load(tmp_path / "ref.npy")
    n44 = int(round(1.3 * 22050 * SR / 22050))
    assert codes.dtype == np.int32 and codes.shape == (2, tokens_for(n44))  # what the original np.save()s
    assert codes.min() >= 0 and codes.max() < 1000

    r = cli(["task=decode", "decoder=vqgan", "-i", "ref.npy", "--output-path", "out.wav", "--checkpoint-path",
             str(ckpts["vqgan"]), *tiny], tmp_path)
    assert r.returncode == 0, r.stderr
    audio, sr = sf.read(tmp_path / "out.wav", dtype="float32")
    assert sr == SR and audio.shape == (TOKEN * codes.shape[1],)
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_decode_vits_with_original_flags(tmp_path, tiny, ckpts):
    speechlike(tmp_path / "ref.flac", 1.0, 48000, channels=2)
    np.save(tmp_path / "codes_0.npy", np.random.default_rng(0).integers(0, 1000, (2, 30), dtype=np.int64))
    r = cli(["task=decode", "-i", "codes_0.npy", "-r", "ref.flac", "--text", "Hello, world!", "--checkpoint-path",
             str(ckpts["vits"]), "--output-path", "out.flac", *tiny], tmp_path)
    assert r.returncode == 0, r.stderr
    audio, sr = sf.read(tmp_path / "out.flac", dtype="float32")
    assert sr == SR and len(audio) == TOKEN * 30 and np.isfinite(audio).all()


def test_encode_default_output_is_fake_npy(tmp_path, tiny, capfd, monkeypatch):
    speechlike(tmp_path / "ref.mp3", 0.6, 44100)
    code, err = run_inprocess(["task=encode", "input=ref.mp3", *tiny], tmp_path, capfd, monkeypatch)
    assert code == 0, err
    assert np.load(tmp_path / "fake.npy").shape[0] == 2


def test_decode_vits_without_reference(tmp_path, tiny, capfd, monkeypatch):
    np.save(tmp_path / "c.npy", np.zeros((1, 2, 12), np.int32))  # a batched (1, 2, T) file is accepted too
    code, err = run_inprocess(["task=decode", "input=c.npy", "text=hi", "output=o.wav", *tiny], tmp_path, capfd,
                              monkeypatch)
    assert code == 0, err
    assert sf.info(tmp_path / "o.wav").frames == TOKEN * 12


def test_encode_folder(tmp_path, tiny, capfd, monkeypatch):
    src = tmp_path / "clips"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / ".hidden").mkdir()
    speechlike(src / "a.wav", 0.5, 16000)
    speechlike(src / "sub" / "b.flac", 0.7, 48000, channels=2)
    speechlike(src / "sub" / "deeper" / "c.ogg", 0.4, 44100)
    speechlike(src / ".hidden" / "skip.wav", 0.5, 16000)
    (src / "sub" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (src / "notes.txt").write_text("not audio")
    code, err = run_inprocess(["task=encode", "input=clips", "output=codes", *tiny], tmp_path, capfd, monkeypatch)
    assert code == 1  # one file failed: reported, the rest encoded
    written = sorted(p.relative_to(tmp_path / "codes").as_posix() for p in (tmp_path / "codes").rglob("*.npy"))
    assert written == ["a.npy", "sub/b.npy", "sub/deeper/c.npy"]
    assert np.load(tmp_path / "codes" / "sub" / "b.npy").shape == (2, tokens_for(int(0.7 * SR)))
    assert "failed: sub/broken.wav" in err and "Traceback" not in err
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "codes").rglob("*.npy")}
    code, err = run_inprocess(["task=encode", "input=clips", "output=codes", "overwrite=false", *tiny], tmp_path,
                              capfd, monkeypatch)
    assert code == 1 and {p: p.stat().st_mtime_ns for p in before} == before  # existing outputs kept


def test_encode_folder_summary(tmp_path, tiny, capsys, monkeypatch):
    (tmp_path / "in").mkdir()
    speechlike(tmp_path / "in" / "a.wav", 1.0, 44100)
    speechlike(tmp_path / "in" / "b.wav", 0.5, 44100)
    monkeypatch.chdir(tmp_path)
    assert main(["task=encode", "input=in", *tiny]) == 0
    summary = capsys.readouterr().out
    assert "encoded 2 file(s), 0 failed | 1.5 s audio" in summary and "real time" in summary
    assert sorted(p.name for p in (tmp_path / "in").glob("*.npy")) == ["a.npy", "b.npy"]  # beside the audio


def _sub(arg: str, ckpts: dict[str, Path]) -> str:
    for slot, path in ckpts.items():
        arg = arg.replace(f"__{slot}__", quote(str(path)))
    return arg


# ------------------------------------------------------------------------------------------ bad input
@pytest.fixture()
def workdir(tmp_path, ckpts) -> Path:
    speechlike(tmp_path / "ok.wav", 0.5, 44100)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF1234WAVEfmt garbage")
    (tmp_path / "noise.mp3").write_bytes(b"not audio" * 50)
    sf.write(tmp_path / "short.wav", np.full(1000, 0.1, np.float32), SR)
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "good.npy", np.ones((2, 8), np.int64))
    np.save(tmp_path / "float.npy", np.ones((2, 8), np.float32))
    np.save(tmp_path / "rank1.npy", np.ones(8, np.int64))
    np.save(tmp_path / "range.npy", np.full((2, 8), 1000, np.int64))
    np.save(tmp_path / "three.npy", np.ones((3, 8), np.int64))
    np.save(tmp_path / "none.npy", np.ones((2, 0), np.int64))
    return tmp_path


ENCODE_BAD = [
    (["input=missing.wav"], "does not exist"),
    (["input=corrupt.wav"], "could not be decoded"),
    (["input=noise.mp3"], "could not be decoded"),
    (["input=short.wav"], "too short"),
    (["input=ok.wav", "max_seconds=0.25"], "over the 0.25 s limit"),
    (["input=empty"], "no audio files"),
    (["input=ok.wav", "checkpoints.vqgan=nope.pth"], "nope.pth"),
    (["input=ok.wav", "checkpoints.vqgan=__firefly__"], "checkpoint"),
]


@pytest.mark.parametrize("extra,needle", ENCODE_BAD)
def test_encode_bad_input_is_one_line(workdir, tiny, ckpts, capfd, monkeypatch, extra, needle):
    extra = [_sub(e, ckpts) for e in extra]
    code, err = run_inprocess(["task=encode", *tiny, *extra], workdir, capfd, monkeypatch)
    assert_one_line(code, err, needle)
    assert not (workdir / "fake.npy").exists()


DECODE_BAD = [
    (["input=missing.npy", "text=hi"], "does not exist"),
    (["input=ok.wav", "text=hi"], "not a .npy"),
    (["input=float.npy", "text=hi"], "dtype float32"),
    (["input=rank1.npy", "text=hi"], "shape (8,)"),
    (["input=three.npy", "text=hi"], "3 rows"),
    (["input=range.npy", "text=hi"], "codebook range"),
    (["input=none.npy", "text=hi"], "no tokens"),
    (["input=good.npy"], "text is empty"),
    (["input=good.npy", "text=   "], "text is empty"),
    (["input=good.npy", "text=hi", "reference=missing.wav"], "does not exist"),
    (["input=good.npy", "text=hi", "reference=corrupt.wav"], "could not be decoded"),
    (["input=good.npy", "text=hi", "output=out.xyz"], "extension"),
    (["input=good.npy", "text=hi", "decoder=hifigan"], "decoder"),
    (["input=good.npy", "text=hi", "checkpoints.vits=__vqgan__"], "checkpoint"),
    (["input=good.npy", "decoder=vqgan", "checkpoints.vqgan=__vits__"], "checkpoint"),
    (["input=good.npy", "decoder=vqgan", "checkpoints.firefly=__vqgan__"], "checkpoint"),
    (["input=float.npy", "decoder=vqgan"], "dtype float32"),
]


@pytest.mark.parametrize("extra,needle", DECODE_BAD)
def test_decode_bad_input_is_one_line(workdir, tiny, ckpts, capfd, monkeypatch, extra, needle):
    extra = [_sub(e, ckpts) for e in extra]
    code, err = run_inprocess(["task=decode", *tiny, *extra], workdir, capfd, monkeypatch)
    assert_one_line(code, err, needle)
    assert not (workdir / "fake.wav").exists() and not (workdir / "out.aac").exists()


def test_bad_input_in_a_real_process_prints_one_line(workdir, tiny):
    r = cli(["task=decode", "input=float.npy", "text=hi", *tiny], workdir, timeout=120)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
