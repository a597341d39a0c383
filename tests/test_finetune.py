"""Fine-tune, then infer with a speaker: the documented commands run end to end on tiny models.

A tiny dataset (``alice/u*.wav`` + ``.lab`` + ``.npy`` codes) is built at test time; ``train.py``
fine-tunes text2semantic (LoRA) and the VITS decoder for two steps from tiny checkpoints,
``task=merge_lora`` turns the adapters into an inference file, and ``task=tts speaker=alice`` loads
both fine-tuned files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechlm.config import compose_preset
from speechlm.data.vits import VITSData, collate_vits, scan_labelled_audio
from speechlm.errors import CheckpointError, InputError
from speechlm.models.text2semantic.lit_module import TextToSemantic
from speechlm.models.text2semantic.loading import build_text2semantic, load_text2semantic
from speechlm.testing.tiny import make_tiny_checkpoints, tiny_overrides
from speechlm.text.tokenizer import build_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SR = 44100
TEXTS = ["Hello there.", "A short line.", "Fine tuning works.", "The last one!"]
QUIET = ["trainer.logger=false", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
         "+trainer.enable_model_summary=false", "log_level=WARNING"]
# A small discriminator keeps the GAN step fast; the generator is the tiny inference preset.
SMALL_DISC = ["lit.discriminator.periods=[2,3]", "+lit.discriminator.msd_channels=[4,8,8,8,8,8]",
              "+lit.discriminator.msd_groups=[1,4,4,4,4,1]", "+lit.discriminator.mpd_channels=[4,8,8,8,8]"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """``alice/u{i}.{wav,lab,npy}``: 0.5–0.8 s tones with noise, transcripts and random codes."""
    root = tmp_path_factory.mktemp("voice")
    (root / "alice").mkdir()
    rng = np.random.default_rng(0)
    for i, text in enumerate(TEXTS):
        t = np.arange(int(SR * (0.5 + 0.1 * i))) / SR
        wave = 0.3 * np.sin(2 * np.pi * (180 + 40 * i) * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(root / "alice" / f"u{i}.wav", wave.astype(np.float32), SR)
        (root / "alice" / f"u{i}.lab").write_text(text, encoding="utf-8")
        np.save(root / "alice" / f"u{i}.npy", rng.integers(0, 1000, (2, 8 + i)))
    (root / "alice" / "no_transcript.wav").write_bytes((root / "alice" / "u0.wav").read_bytes())
    return root


def _run(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, timeout=300,
                       cwd=cwd, env={**os.environ, "WANDB_MODE": "offline"})
    assert r.returncode == 0, f"{script} {' '.join(args)}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def test_vits_batches_match_inference_tokenization(dataset, tmp_path):
    clips = scan_labelled_audio(dataset)
    assert [c.audio.name for c in clips] == [f"u{i}.wav" for i in range(4)]  # no .lab → skipped
    dm = VITSData(str(dataset), batch_size=4, val_fraction=0.0, sentence_mask_ratio=0.0, min_duration=0.6,
                  max_duration=0.7)
    dm.setup()
    items = [dm.train_set[i] for i in range(len(dm.train_set))]
    batch = collate_vits(items, pad_id=1)
    tok = build_tokenizer()
    assert batch["audios"].shape == (3, int(0.7 * SR)) and batch["audios"].dtype == torch.float32
    assert batch["audio_lengths"].min() == int(0.6 * SR)  # padded to min_duration, cropped to max_duration
    for row, item in enumerate(items):
        n = int(batch["text_lengths"][row])
        text = next(c.text for c in clips if tok.encode(c.text) == item["text"].tolist())
        assert batch["texts"][row, :n].tolist() == tok.encode(text)  # bytes, no BOS/EOS, as inference
        assert (batch["texts"][row, n:] == tok.eos_token_id).all()
    with pytest.raises(InputError, match=".lab transcript"):
        scan_labelled_audio(tmp_path)


def test_finetune_then_infer_with_speaker(dataset, tmp_path):
    tiny = make_tiny_checkpoints(tmp_path / "ck")
    t2s_run, vits_run = tmp_path / "t2s", tmp_path / "vits"

    _run("train.py", ["experiment=text2semantic_finetune", "model/text2semantic=tiny",
                      f"checkpoints.text2semantic={tiny['text2semantic']}", f"data.root={dataset}",
                      "data.batch_size=2", "trainer.max_steps=2", "trainer.val_check_interval=2",
                      "trainer.limit_val_batches=1", f"output_dir={t2s_run}", *QUIET], tmp_path)
    lora_ckpt = t2s_run / "checkpoints" / "last.ckpt"
    saved = torch.load(lora_ckpt, weights_only=False)
    assert saved["global_step"] == 2 and all("lora_" in k for k in saved["state_dict"])
    resumed = TextToSemantic(build_text2semantic(compose_preset("text2semantic", "tiny"), "cpu"), optimizer=torch.optim.AdamW,
                             lora_config=saved["hyper_parameters"]["lora_config"])
    resumed.on_load_checkpoint(saved)  # resume_from=<lora ckpt>: base weights come from init_from
    resumed.load_state_dict(saved["state_dict"], strict=True)
    with pytest.raises(CheckpointError, match="task=merge_lora"):  # adapters alone are not an inference file
        load_text2semantic(compose_preset("text2semantic", "tiny"), lora_ckpt)

    merged = tmp_path / "alice-t2s.pth"
    _run("infer.py", ["task=merge_lora", "model/text2semantic=tiny",
                      f"checkpoints.text2semantic={tiny['text2semantic']}", f"lora_weight={lora_ckpt}",
                      f"output={merged}", "log_level=WARNING"], tmp_path)
    base = torch.load(tiny["text2semantic"], weights_only=True)
    new = torch.load(merged, weights_only=True)
    assert set(new) == {k for k in base if k.startswith("model.")}
    assert any(not torch.equal(new[k], base[k].float()) for k in new), "the adapters were trained and folded in"

    _run("train.py", ["experiment=vits_finetune", "model/vits=tiny", f"checkpoints.vits={tiny['vits']}",
                      f"data.root={dataset}", "data.batch_size=2", "data.val_batch_size=1", "data.min_duration=0.5",
                      "trainer.max_steps=2", "trainer.val_check_interval=1", "trainer.limit_val_batches=1",
                      f"output_dir={vits_run}", *SMALL_DISC, *QUIET], tmp_path)
    vits_ckpt = vits_run / "checkpoints" / "last.ckpt"
    saved = torch.load(vits_ckpt, weights_only=False)
    assert saved["global_step"] == 2  # one batch: a discriminator and a generator step
    assert {k.split(".", 1)[0] for k in saved["state_dict"]} == {"generator", "discriminator"}

    out = tmp_path / "alice.wav"
    paths = {**tiny, "text2semantic": merged, "vits": vits_ckpt}
    _run("infer.py", ["task=tts", "text=Hello from Alice.", "speaker=alice", f"output={out}",
                      *tiny_overrides(paths, tmp_path / "cache"), "log_level=WARNING"], tmp_path)
    audio, sr = sf.read(out)
    assert sr == SR and audio.size > 0 and np.isfinite(audio).all()
