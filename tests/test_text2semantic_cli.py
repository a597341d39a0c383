"""``infer.py task=generate`` end to end on a tiny checkpoint: outputs, original flags, bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speechlm.cli import main
from speechlm.config import quote
from speechlm.flags import translate_args
from speechlm.testing.tiny_text2semantic import make_tiny_text2semantic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_text2semantic(tmp_path_factory.mktemp("t2s"))


@pytest.fixture()
def codes(tmp_path):
    p = tmp_path / "ref.npy"
    np.save(p, np.random.default_rng(0).integers(0, 38, (2, 15)))
    return p


def base(ckpt, out):
    return ["task=generate", f"checkpoints.text2semantic={ckpt}", "model/text2semantic=tiny", "device=cpu",
            f"output_dir={out}", "max_new_tokens=16"]


def test_end_to_end_subprocess(ckpt, codes, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "infer.py"), *base(ckpt, out), "text=Hello, world! How are you today?",
           "prompt_text=The reference words.", f"prompt_tokens={codes}", "num_samples=2", "seed=42", "speaker=alice",
           "chunk_length=20", "top_p=0.7", "temperature=0.7", "repetition_penalty=1.5", "half=false"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                       env={**os.environ, "COLUMNS": "200"}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == ["codes_0.npy", "codes_1.npy"]
    for f in files:
        a = np.load(out / f)
        assert a.dtype == np.int64 and a.ndim == 2 and a.shape[0] == 2
    assert "tokens/s" in r.stdout + r.stderr


def test_seed_makes_it_reproducible(ckpt, tmp_path, capsys):
    outs = []
    for i in range(2):
        out = tmp_path / f"o{i}"
        assert main([*base(ckpt, out), "text=Say this twice.", "seed=7"]) == 0
        outs.append(np.load(out / "codes_0.npy"))
    assert np.array_equal(*outs)


def test_original_flags(ckpt, codes, tmp_path):
    argv = ["--text", "hi there", "--prompt-text", "a", "--prompt-tokens", str(codes), "--prompt-text", "b",
            "--prompt-tokens", str(codes), "--num-samples", "2", "--compile", "--half", "--speaker", "bob",
            "--checkpoint-path", str(ckpt), "--config-name", "tiny", "--seed", "3", "--max-new-tokens", "8"]
    overrides, config_name, _ = translate_args(argv)
    assert config_name is None
    assert "model/text2semantic=tiny" in overrides
    assert f"checkpoints.text2semantic={quote(str(ckpt))}" in overrides
    assert "compile=true" in overrides and "half=true" in overrides and "num_samples=2" in overrides
    assert f"prompt_tokens=[{quote(str(codes))},{quote(str(codes))}]" in overrides
    assert "prompt_text=['a','b']" in overrides
    # two prompts, no compile (the compile path has its own slow test)
    argv_run = [a for a in argv if a != "--compile"] + ["--output-dir", str(tmp_path / "o"), "--device", "cpu"]
    assert main(argv_run) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["codes_0.npy", "codes_1.npy"]


def test_generate_py_flags_of_v1_1_2(ckpt, tmp_path):
    """The rest of generate.py's click options: --llama-config-name/--config-name, --tokenizer, --no-half,
    --no-compile, --no-iterative-prompt, --max-length, and --max-text-length 0 (= no limit)."""
    text = "word " * 2001  # 10005 characters: over the default max_text_length of 10000
    argv = ["--text", text, "--checkpoint-path", str(ckpt), "--llama-config-name", "tiny", "--tokenizer",
            "fishaudio/fish-speech-1", "--no-half", "--no-compile", "--no-iterative-prompt", "--max-length", "12288",
            "--max-text-length", "0", "--max-new-tokens", "4", "--output-dir", str(tmp_path / "o"), "-d", "cpu"]
    overrides, _, _ = translate_args(argv)
    assert {"half=false", "compile=false", "iterative_prompt=false", "max_text_length=0",
            "model.text2semantic.config.max_seq_len=12288", "model/text2semantic=tiny", "device=cpu"} <= set(overrides)
    assert main(argv) == 0
    assert np.load(tmp_path / "o" / "codes_0.npy").shape[0] == 2


def _err(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    return err


def test_bad_inputs_one_line(ckpt, codes, tmp_path, capsys):
    out = tmp_path / "out"
    b = base(ckpt, out)
    bad_npy = tmp_path / "bad.npy"
    np.save(bad_npy, np.zeros((2, 5), np.float32))
    one_row = tmp_path / "one.npy"
    np.save(one_row, np.zeros((1, 5), np.int64))
    big = tmp_path / "big.npy"
    np.save(big, np.full((2, 5), 5000))
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"garbage")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    cases = {
        "text": [*b, "text="],
        "does not exist": [*b, "text=hi", "prompt_text=x", f"prompt_tokens={tmp_path / 'missing.npy'}"],
        "dtype": [*b, "text=hi", "prompt_text=x", f"prompt_tokens={bad_npy}"],
        "codebook rows": [*b, "text=hi", "prompt_text=x", f"prompt_tokens={one_row}"],
        "VQ indices": [*b, "text=hi", "prompt_text=x", f"prompt_tokens={big}"],
        "readable": [*b, "text=hi", "prompt_text=x", f"prompt_tokens={junk}"],
        "prompt_text": [*b, "text=hi", "prompt_text=[a,b]", f"prompt_tokens={codes}"],
        "top_p": [*b, "text=hi", "top_p=0"],
        "temperature": [*b, "text=hi", "temperature=3"],
        "repetition_penalty": [*b, "text=hi", "repetition_penalty=5"],
        "chunk_length": [*b, "text=hi", "chunk_length=1000"],
        "max_new_tokens": [*b, "text=hi", "max_new_tokens=-3"],
        "num_samples": [*b, "text=hi", "num_samples=0"],
        "does not match config": [*b, "text=hi", "model/text2semantic=dual_ar_2_codebook_small"],
        "max_text_length": [*b, "text=" + "a" * 10001],
        "not a folder": [*base(ckpt, bad_npy), "text=hi"],  # output_dir is an existing file
    }
    if os.geteuid() != 0:  # root can write anywhere
        cases["writable"] = [*base(ckpt, ro / "sub"), "text=hi"]
    for needle, argv in cases.items():
        err = _err(capsys, argv)
        assert needle in err, (needle, err)
    assert not out.exists() or not list(out.iterdir())


def test_wrong_kind_checkpoint(tmp_path, capsys):
    import torch

    vq = tmp_path / "vq.pth"
    torch.save({"state_dict": {"generator.quantizer.x.weight": torch.zeros(1),
                               "generator.encoder.y.weight": torch.zeros(1)}}, vq)
    err = _err(capsys, [*base(vq, tmp_path / "o"), "text=hi"])
    assert "vqgan" in err
