"""``translate_args``: each original flag becomes the right override (exact lists), bad ones one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from speechlm.cli import main
from speechlm.config import compose
from speechlm.flags import FLAGS, SCRIPT_TASKS, SWITCHES, UsageError, translate_args
from speechlm.text.tokenizer import build_tokenizer


def ov(*argv: str) -> list[str]:
    return translate_args(list(argv))[0]


@pytest.mark.parametrize("argv,expected", [
    (["--llama-config-name", "dual_ar_2_codebook_small"], ["model/text2semantic=dual_ar_2_codebook_small"]),
    (["--vits-checkpoint-path", "v.ckpt"], ["checkpoints.vits='v.ckpt'"]),
    (["--vqgan-checkpoint-path", "q.pth"], ["checkpoints.vqgan='q.pth'"]),
    (["--max-length", "1024"], ["model.text2semantic.config.max_seq_len=1024"]),
    (["--iterative-prompt"], ["iterative_prompt=true"]),
    (["--no-iterative-prompt"], ["iterative_prompt=false"]),
    (["--no-compile", "--no-half"], ["compile=false", "half=false"]),
    (["--compile", "--half"], ["compile=true", "half=true"]),
    (["--max-gradio-length", "500"], ["max_text_length=500"]),
    (["--max-text-length", "0"], ["max_text_length=0"]),
    (["-d", "cpu"], ["device=cpu"]),
    (["--tokenizer", "fishaudio/fish-speech-1"], []),
    (["task=encode", "-cfg", "vqgan_pretrain", "-i", "a.wav"], ["task=encode", "input='a.wav'"]),
    (["task=decode", "--config-name", "firefly_gan_vq", "-i", "c.npy"], ["task=decode", "input='c.npy'", "decoder=vqgan"]),
    (["task=decode", "-cfg", "vits_decoder_finetune", "-ckpt", "v.ckpt"],
     ["task=decode", "decoder=vits", "checkpoints.vits='v.ckpt'"]),
    (["task=decode", "decoder=vqgan", "-cfg", "vqgan_pretrain", "-ckpt", "q.pth"],
     ["task=decode", "decoder=vqgan", "checkpoints.vqgan='q.pth'"]),
    (["task=merge_lora", "--llama-config", "dual_ar_2_codebook_medium", "--lora-config", "r_8_alpha_16",
      "--llama-weight", "base.pth", "--lora-weight", "lora.ckpt", "--output", "merged.pth"],
     ["task=merge_lora", "lora_config={r:8,lora_alpha:16}", "checkpoints.text2semantic='base.pth'",
      "lora_weight='lora.ckpt'", "output='merged.pth'", "model/text2semantic=dual_ar_2_codebook_medium"]),
    (["task=encode", "data", "--num-workers", "2", "--batch-size", "16", "--filelist", "x.list",
      "--config-name", "vqgan_pretrain", "--checkpoint-path", "q.pth"],
     ["task=encode", "num_workers=2", "batch_size=16", "filelist='x.list'", "input='data'", "checkpoints.vqgan='q.pth'"]),
    (["task=quantize", "--checkpoint-path", "t.pth", "--config-name", "dual_ar_2_codebook_medium", "--mode", "int4",
      "--groupsize", "128", "output=q.pth"],
     ["task=quantize", "mode=int4", "groupsize=128", "output='q.pth'", "model/text2semantic=dual_ar_2_codebook_medium",
      "checkpoints.text2semantic='t.pth'"]),
    (["task=prepare", "--input", "data", "--output", "d.protos", "--text-extension", ".lab", "--text-extension", ".txt",
      "--num-workers", "4", "--shard-size", "10"],
     ["task=prepare", "input='data'", "output='d.protos'", "num_workers=4", "shard_size=10",
      "text_extension=['.lab','.txt']"]),
    (["task=prepare", "data", "--val-ratio", "0.1", "--min-duration", "1"],
     ["task=prepare", "val_ratio=0.1", "min_duration=1", "input='data'"]),
])
def test_exact_overrides(argv, expected):
    assert ov(*argv) == expected


def test_train_config_names():
    o, name, _ = translate_args(["--config-name", "text2semantic_finetune", "model@model.model=dual_ar_2_codebook_small"])
    assert name == "train"
    assert o == ["model/text2semantic=dual_ar_2_codebook_small", "experiment=text2semantic_finetune", "lit.lora_config=null"]
    o, _, _ = translate_args(["--config-name", "text2semantic_finetune", "+lora@model.lora_config=r_16_alpha_32"])
    assert o == ["lit.lora_config={r:16,lora_alpha:32}", "experiment=text2semantic_finetune"]
    assert ov("--config-name", "vits_decoder_finetune") == ["experiment=vits_finetune"]
    assert ov("--config-name", "vqgan_finetune") == ["experiment=vqgan_finetune"]
    for o in (ov("--config-name", "text2semantic_finetune"), ov("--config-name", "vits_decoder_finetune")):
        cfg = compose("train", o)  # composes: the experiment exists
        assert cfg.task_name == "train"
    assert compose("train", ov("--config-name", "text2semantic_finetune")).lit.lora_config is None


def test_composes_for_existing_tasks():
    # every translated key that a task already has composes (no key lands on a task without it)
    cfg = compose("infer", ov("task=webui", "--llama-config-name", "tiny", "--max-length", "512", "--no-compile",
                              "--max-gradio-length", "0", "--vits-checkpoint-path", "v.ckpt", "-d", "cpu"))
    assert cfg.model.text2semantic.config.max_seq_len == 512 and cfg.max_text_length == 0
    assert (cfg.compile, cfg.device, cfg.checkpoints.vits) == (False, "cpu", "v.ckpt")
    cfg = compose("infer", ov("task=generate", "--no-iterative-prompt", "--tokenizer", "fishaudio/fish-speech-1"))
    assert cfg.iterative_prompt is False
    cfg = compose("infer", ov("task=merge_lora", "--lora-config", "r_8_alpha_16", "--lora-weight", "l.ckpt",
                              "--output", "m.pth", "--llama-weight", "b.pth"))
    assert dict(cfg.lora_config) == {"r": 8, "lora_alpha": 16} and cfg.checkpoints.text2semantic == "b.pth"


def test_tokenizer_copies_accepted_others_refused(tmp_path):
    own = tmp_path / "tok"
    own.mkdir()
    build_tokenizer().save(str(own / "tokenizer.json"))
    assert ov("--tokenizer", str(own)) == [] and ov("--tokenizer", str(own / "tokenizer.json")) == []
    ref = Path(os.environ.get("SPEECHLM_REFERENCE", "/nonexistent")) / "text2semantic" / "tokenizer"
    if ref.is_dir():  # the reference fixture's copy of the original hub tokenizer
        assert ov("--tokenizer", str(ref)) == []
    from tokenizers import Tokenizer, models

    other = tmp_path / "other.json"
    Tokenizer(models.BPE(vocab={"a": 0, "b": 1}, merges=[])).save(str(other))
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    for value, needle in [("fishaudio/fish-speech-1.4", "neither"), (str(other), "not the Fish Speech v1.1"),
                          (str(bad), "cannot read"), (str(tmp_path / "missing"), "neither")]:
        with pytest.raises(UsageError, match=needle):
            ov("--tokenizer", value)


@pytest.mark.parametrize("argv,needle", [
    (["--tokenizer", "gpt2"], "--tokenizer 'gpt2'"),
    (["--llama-config-name", "nope"], "not a text2semantic preset"),
    (["--config-name", "nope"], "unknown --config-name 'nope'"),
    (["--config-name", "text2semantic_pretrain"], "training from scratch"),
    (["--lora-config", "big"], "unknown LoRA config"),
    (["--decoder-config-name", "hifigan"], "unknown --decoder-config-name"),
    (["--bogus"], "unknown flag '--bogus'"),
    (["task=generate", "stray"], "cannot read argument 'stray'"),
    (["task=encode", "a", "b"], "cannot read argument 'b'"),
    (["--max-length"], "needs a value"),
])
def test_bad_flags_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and needle in err, err


def test_keys_a_task_lacks_are_refused_not_ignored(capsys):
    # top_p is no key of task=encode: one line naming it, never silently dropped
    assert main(["task=encode", "-i", "a.wav", "--top-p", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "has no key 'top_p'" in err and len(err.strip().splitlines()) == 1


def test_tables_are_well_formed():
    assert all(k.startswith("-") for k in FLAGS) and all(k.startswith("--") for k in SWITCHES)
    assert not set(FLAGS) & set(SWITCHES)
    assert set(SCRIPT_TASKS) >= {"tools/llama/generate.py", "tools/api.py", "tools/webui.py", "tools/vqgan/inference.py",
                                 "tools/vqgan/extract_vq.py", "tools/llama/merge_lora.py", "tools/llama/quantize.py"}
