"""``task=encode`` as the original tools: reconstruction beside the codes (``tools/vqgan/inference.py``),
and for many files (``tools/vqgan/extract_vq.py``) skip-existing, padded batches and ``--filelist``."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from speechlm.cli import main
from speechlm.stages.codec import VQGANCodec
from tests.test_cli_codec import SR, TOKEN, assert_one_line, ckpts, run_inprocess, speechlike, tiny  # noqa: F401


@pytest.fixture(scope="module")
def codec(ckpts):  # noqa: F811
    from speechlm.testing.tiny_codec import compose_model_preset

    from speechlm.stages.decoders.vqgan_firefly import FireflyDecoder

    return FireflyDecoder.from_config(compose_model_preset("vqgan"), ckpts["vqgan"], compose_model_preset("firefly"),
                                      ckpts["firefly"], device="cpu")


def test_batched_encode_equals_one_by_one(codec):
    gen = torch.Generator().manual_seed(0)
    # shorter and longer than the encode context, not a whole number of tokens, and one over a window
    lengths = [TOKEN * 2, TOKEN * 3 + 100, SR, TOKEN * 40 + 7, 5000, TOKEN * 80]
    clips = [0.3 * (2 * torch.rand(n, generator=gen) - 1) for n in lengths]
    windowed = VQGANCodec(codec.vqgan, encode_window_frames=120)  # the 80-token clip exceeds one window
    for c in (codec.codec, windowed):
        batched = c.encode_batch(clips)
        for clip, codes in zip(clips, batched):
            torch.testing.assert_close(codes, codec.codec.encode(clip), rtol=0, atol=0)
    assert [b.shape[1] for b in batched] == [n // TOKEN for n in lengths]


def test_single_file_writes_codes_and_reconstruction(tmp_path, tiny, ckpts, codec, capfd, monkeypatch):  # noqa: F811
    speechlike(tmp_path / "ref.wav", 0.8, 22050)
    code, err = run_inprocess(["task=encode", "-i", "ref.wav", *tiny], tmp_path, capfd, monkeypatch)
    assert code == 0, err
    codes = np.load(tmp_path / "fake.npy")
    audio, sr = sf.read(tmp_path / "fake.wav", dtype="float32")  # the original's default -o fake.wav
    assert sr == SR and len(audio) == TOKEN * codes.shape[1] and np.abs(audio).max() > 0
    expected = codec.decode(torch.from_numpy(codes), seed=0).numpy()
    np.testing.assert_allclose(audio, expected, atol=1 / 32767)  # 16-bit WAV of the decoded codes

    # output named like the input: the reconstruction never overwrites the input audio
    before = (tmp_path / "ref.wav").read_bytes()
    code, err = run_inprocess(["task=encode", "input=ref.wav", "output=ref.npy", *tiny], tmp_path, capfd,
                              monkeypatch)
    assert code == 0, err
    assert (tmp_path / "ref.wav").read_bytes() == before and (tmp_path / "ref_fake.wav").is_file()

    code, err = run_inprocess(["task=encode", "input=ref.wav", "output=quiet.npy", "reconstruction=false", *tiny],
                              tmp_path, capfd, monkeypatch)
    assert code == 0, err
    assert (tmp_path / "quiet.npy").is_file() and not (tmp_path / "quiet.wav").exists()


@pytest.mark.parametrize("firefly", ["/nowhere/firefly.ckpt", "firefly-gan-base-generator.ckpt"])
def test_codes_need_only_the_vqgan(tmp_path, tiny, firefly, capfd, monkeypatch):
    # no Firefly vocoder (a missing path, or the official name with the hub offline): codes, no fake.wav, one warning
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    speechlike(tmp_path / "ref.wav", 0.5, 22050)
    args = ["task=encode", "input=ref.wav", "output=codes.npy", *tiny, f"checkpoints.firefly={firefly}",
            f"checkpoint_dir={tmp_path / 'empty'}"]
    monkeypatch.chdir(tmp_path)
    code = main(args)
    out = "".join(capfd.readouterr())  # the log goes to the console (stdout), errors to stderr
    assert code == 0, out
    assert np.load(tmp_path / "codes.npy").shape[0] == 2 and not (tmp_path / "codes.wav").exists()
    warnings = [ln for ln in out.splitlines() if "WARNING" in ln]
    assert len(warnings) == 1 and "Firefly" in warnings[0] and "codes only" in out, out
    # fake_wav=false: no reconstruction asked for, so no warning either
    code = main([*args, "fake_wav=false"])
    out = "".join(capfd.readouterr())
    assert code == 0 and "WARNING" not in out, out


def test_fake_wav_false_turns_the_reconstruction_off(tmp_path, tiny, capfd, monkeypatch):
    speechlike(tmp_path / "ref.wav", 0.5, 22050)
    code, err = run_inprocess(["task=encode", "input=ref.wav", "output=q.npy", "fake_wav=false", *tiny], tmp_path,
                              capfd, monkeypatch)
    assert code == 0, err
    assert (tmp_path / "q.npy").is_file() and not (tmp_path / "q.wav").exists()


def _folder(root, n=5):
    root.mkdir()
    for i in range(n):
        speechlike(root / f"clip{i}.wav", 0.3 + 0.17 * i, [16000, 22050, 44100][i % 3])
    return sorted(root.glob("*.wav"))


def test_folder_batches_give_the_same_codes_and_skip_existing(tmp_path, tiny, capfd, monkeypatch):  # noqa: F811
    files = _folder(tmp_path / "data")
    code, err = run_inprocess(["task=encode", "input=data", "output=one", "batch_size=1", *tiny], tmp_path, capfd,
                              monkeypatch)
    assert code == 0, err
    # the extract_vq.py flags: positional folder, --batch-size, --num-workers
    code, err = run_inprocess(["task=encode", "data", "--batch-size", "3", "--num-workers", "2", *tiny], tmp_path,
                              capfd, monkeypatch)
    assert code == 0, err
    for f in files:
        np.testing.assert_array_equal(np.load(f.with_suffix(".npy")), np.load(tmp_path / "one" / f"{f.stem}.npy"))

    # a second run skips what is already encoded (extract_vq.py's default); overwrite=true redoes it
    stamps = {f: f.with_suffix(".npy").stat().st_mtime_ns for f in files}
    speechlike(tmp_path / "data" / "new.wav", 0.5, 44100)
    code, _ = run_inprocess(["task=encode", "input=data", *tiny], tmp_path, capfd, monkeypatch)
    assert code == 0 and {f: f.with_suffix(".npy").stat().st_mtime_ns for f in files} == stamps
    assert (tmp_path / "data" / "new.npy").is_file()
    code, _ = run_inprocess(["task=encode", "input=data", "overwrite=true", *tiny], tmp_path, capfd, monkeypatch)
    assert code == 0 and all(f.with_suffix(".npy").stat().st_mtime_ns != stamps[f] for f in files)


def test_filelist(tmp_path, tiny, capfd, monkeypatch):  # noqa: F811
    files = _folder(tmp_path / "data", n=3)
    (tmp_path / "data" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    listing = ["data/clip0.wav|alice|en|Hello there.", "", "data/clip2.wav", "data/broken.wav", "data/gone.wav"]
    (tmp_path / "list.txt").write_text("\n".join(listing) + "\n", encoding="utf-8")
    code, err = run_inprocess(["task=encode", "--filelist", "list.txt", "--batch-size", "4", *tiny], tmp_path, capfd,
                              monkeypatch)
    assert code == 1  # two listed files failed, the others were encoded
    assert sorted(p.name for p in (tmp_path / "data").glob("*.npy")) == ["clip0.npy", "clip2.npy"]
    assert "failed: data/broken.wav" in err and "failed: data/gone.wav" in err and "Traceback" not in err
    assert np.load(tmp_path / "data" / "clip2.npy").shape == (2, int(round((0.3 + 0.34) * SR)) // TOKEN)
    assert not files[1].with_suffix(".npy").exists()


@pytest.mark.parametrize("extra,needle", [
    (["filelist=missing.txt"], "filelist 'missing.txt' does not exist"),
    (["filelist=empty.txt"], "lists no audio files"),
    (["input=data", "batch_size=0"], "batch_size=0"),
    (["input=data", "num_workers=-1"], "num_workers=-1"),
    ([], "input is empty"),
])
def test_bad_many_file_input_is_one_line(tmp_path, tiny, capfd, monkeypatch, extra, needle):  # noqa: F811
    _folder(tmp_path / "data", n=1)
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    code, err = run_inprocess(["task=encode", *tiny, *extra], tmp_path, capfd, monkeypatch)
    assert_one_line(code, err, needle)
    assert not list((tmp_path / "data").glob("*.npy"))
