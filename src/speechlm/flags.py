"""The original Fish Speech command-line flags, translated into Hydra overrides.

``translate_args(argv)`` accepts ``key=value`` overrides mixed with the flags of the v1.1.2 tools
(``tools/llama/generate.py``, ``tools/api.py``, ``tools/webui.py``, ``tools/vqgan/inference.py``,
``tools/vqgan/extract_vq.py``, ``tools/vits_decoder/inference.py``, ``tools/llama/merge_lora.py``,
``tools/llama/quantize.py``, ``tools/llama/build_dataset.py`` and ``fish_speech/train.py``) and quotes
free-text values so ``text="Hello, world!"`` needs no Hydra escaping. :data:`SCRIPT_TASKS` says which
task replaces which original script. A flag whose meaning depends on the task (``--config-name``,
``--checkpoint-path``, a positional folder) is resolved once the whole line is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from speechlm.config import CONFIG_DIR, quote
from speechlm.stages.decoders.registry import DECODERS, DEFAULT_DECODER, config_names

# Keys whose values are free text or paths: quoted automatically unless already Hydra syntax.
FREE_TEXT_KEYS = {
    "text", "prompt_text", "reference_text", "speaker", "input", "output", "output_dir", "reference",
    "prompt_tokens", "listen", "api_key", "references_dir", "cache_dir", "checkpoint_dir", "name",
    "lora_weight", "filelist",
}
# Flags of the original tools that take a value → the override key they set.
FLAGS: dict[str, str] = {
    "--text": "text", "-t": "text", "--prompt-text": "prompt_text", "--prompt-tokens": "prompt_tokens",
    "--num-samples": "num_samples", "--max-new-tokens": "max_new_tokens", "--top-p": "top_p",
    "--temperature": "temperature", "--repetition-penalty": "repetition_penalty",
    "--chunk-length": "chunk_length", "--seed": "seed", "--speaker": "speaker",
    "--device": "device", "-d": "device",
    "--input-path": "input", "--input": "input", "-i": "input",
    "--output-path": "output", "--output": "output", "-o": "output", "--output-dir": "output_dir",
    "--reference-audio": "reference", "--reference-path": "reference", "-r": "reference",
    "--reference-text": "reference_text", "--listen": "listen", "--api-key": "api_key", "--workers": "workers",
    # 0 = no limit in both originals, as here
    "--max-text-length": "max_text_length", "--max-gradio-length": "max_text_length",
    # the original's --max-length sizes the model's context (KV cache, RoPE table)
    "--max-length": "model.text2semantic.config.max_seq_len",
    "--llama-checkpoint-path": "checkpoints.text2semantic", "--llama-weight": "checkpoints.text2semantic",
    "--vqgan-checkpoint-path": "checkpoints.vqgan", "--vits-checkpoint-path": "checkpoints.vits",
    "--lora-weight": "lora_weight",
    # extract_vq.py (task=encode on a folder), quantize.py, build_dataset.py, create_train_split.py
    "--batch-size": "batch_size", "--num-workers": "num_workers", "--filelist": "filelist",
    "--mode": "mode", "--groupsize": "groupsize", "--text-extension": "text_extension",
    "--shard-size": "shard_size", "--val-ratio": "val_ratio", "--val-count": "val_count",
    "--min-duration": "min_duration", "--max-duration": "max_duration",
}
# On/off flags (click's --x/--no-x and argparse store_true) → (key, value).
SWITCHES: dict[str, tuple[str, str]] = {
    "--compile": ("compile", "true"), "--no-compile": ("compile", "false"),
    "--half": ("half", "true"), "--no-half": ("half", "false"),
    "--iterative-prompt": ("iterative_prompt", "true"), "--no-iterative-prompt": ("iterative_prompt", "false"),
}
# Multi-value flags of the original (click multiple=True) become Hydra lists.
LIST_KEYS = {"prompt_text", "prompt_tokens", "text_extension"}
# Flags naming a configuration; what the name means depends on the flag and the task (see _config_name).
CONFIG_FLAGS = {"--config-name", "-cn", "-cfg", "--llama-config-name", "--llama-config"}
LLAMA_CONFIG_FLAGS = {"--llama-config-name", "--llama-config"}
# --decoder-config-name (and the VQGAN/VITS tools' --config-name) values of the original → our decoder.
DECODER_NAMES = config_names()  # from the decoder registry
# fish_speech/train.py --config-name → our experiment (None: not provided here, with the reason).
TRAIN_CONFIGS: dict[str, str | None] = {
    "text2semantic_finetune": "text2semantic_finetune", "vits_decoder_finetune": "vits_finetune",
    "vqgan_finetune": "vqgan_finetune", "firefly_gan_vq_finetune": "firefly_finetune",
    "text2semantic_pretrain": None, "text2semantic_sft": None, "vits_decoder_pretrain": None,
    "vqgan_pretrain": None,
}
# key=value overrides of the original's config tree → ours.
ORIGINAL_KEYS = {"model@model.model": "model/text2semantic", "+lora@model.lora_config": "lit.lora_config"}
# Which checkpoints slot the original's bare --checkpoint-path fills, per task (decode: the decoder's).
CHECKPOINT_SLOT = {"encode": "vqgan"}
# Tasks whose first positional argument is the input folder (extract_vq.py data, create_train_split.py data).
POSITIONAL_KEY = {"encode": "input", "prepare": "input"}
# The v1.1 tokenizer (rebuilt in code by speechlm.text.tokenizer): the only one these checkpoints use.
TOKENIZER_NAME = "fishaudio/fish-speech-1"
# Original script → the command that replaces it (the flags stay the same).
SCRIPT_TASKS = {
    "tools/llama/generate.py": "infer.py task=generate",
    "tools/vqgan/inference.py": "infer.py task=encode (-i audio) | task=decode decoder=vqgan (-i codes.npy)",
    "tools/vits_decoder/inference.py": "infer.py task=decode",
    "tools/api.py": "infer.py task=serve", "tools/webui.py": "infer.py task=webui",
    "tools/vqgan/extract_vq.py": "infer.py task=encode", "tools/llama/merge_lora.py": "infer.py task=merge_lora",
    "tools/llama/quantize.py": "infer.py task=quantize", "tools/llama/build_dataset.py": "infer.py task=prepare",
    "fish_speech/train.py": "train.py",
}


class UsageError(Exception):
    """Bad command-line syntax."""


def _is_hydra_literal(v: str) -> bool:
    v = v.strip()
    return (len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"") or v.startswith("[") or v == "null"


def format_value(key: str, value: str) -> str:
    """``value`` as a Hydra override value: free text and paths quoted, everything else as typed."""
    base = key.split(".")[-1].lstrip("+~")
    if base in FREE_TEXT_KEYS or key.lstrip("+").startswith("checkpoints."):
        return value if _is_hydra_literal(value) else quote(value)
    return value


def lora_value(name: str) -> str:
    """The original's LoRA config name (``r_8_alpha_16``) as our ``{r: 8, lora_alpha: 16}`` value."""
    m = re.fullmatch(r"r_(\d+)_alpha_(\d+(?:\.\d+)?)", name.strip())
    if not m:
        raise UsageError(f"unknown LoRA config '{name}' (use r_<rank>_alpha_<alpha>, e.g. r_8_alpha_16)")
    return f"{{r:{m.group(1)},lora_alpha:{m.group(2)}}}"


def check_tokenizer(value: str) -> None:
    """Accept the v1.1 tokenizer's hub name or a local copy of it; refuse any other tokenizer."""
    if value.strip().rstrip("/") == TOKENIZER_NAME:
        return
    path = Path(value).expanduser()
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise UsageError(f"--tokenizer '{value}' is neither '{TOKENIZER_NAME}' nor a folder/file with its "
                         "tokenizer.json — drop the flag: the v1.1 tokenizer is built in")
    from tokenizers import Tokenizer

    from speechlm.text.tokenizer import build_tokenizer

    try:
        vocab = Tokenizer.from_file(str(file)).get_vocab()
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise UsageError(f"--tokenizer '{value}': cannot read {file} ({type(e).__name__}) — drop the flag: "
                         "the v1.1 tokenizer is built in") from None
    if vocab != build_tokenizer().backend.get_vocab():
        raise UsageError(f"--tokenizer '{value}' is not the Fish Speech v1.1 tokenizer — these checkpoints only "
                         "work with it; drop the flag (it is built in)")


@dataclass
class Translation:
    """What the command line asked for (task-dependent parts kept until the task is known)."""

    overrides: list[str] = field(default_factory=list)
    config_name: str | None = None
    print_cfg: bool = False
    lists: dict[str, list[str]] = field(default_factory=dict)
    checkpoint_path: str | None = None
    decoder_checkpoint: str | None = None
    config_names: list[tuple[str, str]] = field(default_factory=list)
    positional: list[str] = field(default_factory=list)

    def value_of(self, key: str, default: str | None) -> str | None:
        return next((o.split("=", 1)[1] for o in self.overrides if o.startswith(f"{key}=")), default)


class _Args:
    """A cursor over argv: the current flag and its value (``--flag v`` or ``--flag=v``)."""

    def __init__(self, argv: Sequence[str]):
        self.items, self.i = list(argv), 0

    def __bool__(self) -> bool:
        return self.i < len(self.items)

    def next(self) -> tuple[str, str, str | None]:
        a = self.items[self.i]
        self.i += 1
        flag, eq, inline = a.partition("=") if a.startswith("--") else (a, "", "")
        return a, flag, inline if eq else None

    def value(self, flag: str, inline: str | None) -> str:
        if inline is not None:
            return inline
        if self.i >= len(self.items):
            raise UsageError(f"flag {flag} needs a value")
        self.i += 1
        return self.items[self.i - 1]

    def peek(self) -> str | None:
        return self.items[self.i] if self.i < len(self.items) else None


def _special(t: Translation, args: _Args, flag: str, inline: str | None) -> bool:
    """Flags that are not a plain key mapping; returns False if ``flag`` is none of them."""
    if flag in ("--cfg", "-c"):
        t.print_cfg = True
        if inline is None and args.peek() in ("job", "all", "hydra"):
            args.i += 1
    elif flag in CONFIG_FLAGS:
        t.config_names.append((flag, args.value(flag, inline)))
    elif flag in ("--checkpoint-path", "-ckpt"):
        t.checkpoint_path = args.value(flag, inline)
    elif flag == "--decoder-checkpoint-path":
        t.decoder_checkpoint = args.value(flag, inline)
    elif flag == "--decoder-config-name":
        name = args.value(flag, inline)
        if name not in DECODER_NAMES:
            raise UsageError(f"unknown --decoder-config-name '{name}' (use one of {', '.join(DECODER_NAMES)})")
        t.overrides.append(f"decoder={DECODER_NAMES[name]}")
    elif flag == "--lora-config":
        t.overrides.append(f"lora_config={lora_value(args.value(flag, inline))}")
    elif flag == "--tokenizer":
        check_tokenizer(args.value(flag, inline))
    else:
        return False
    return True


def _mapped(t: Translation, args: _Args, flag: str, inline: str | None) -> None:
    if flag in SWITCHES:
        key, value = SWITCHES[flag]
        t.overrides.append(f"{key}={value}")
        return
    key, v = FLAGS[flag], args.value(flag, inline)
    if key in LIST_KEYS:
        t.lists.setdefault(key, []).append(v)
    else:
        t.overrides.append(f"{key}={format_value(key, v)}")


def _key_value(t: Translation, raw: str) -> None:
    key, _, v = raw.partition("=")
    if key == "trainer.strategy.process_group_backend":  # finetune.md's note for Windows (no NCCL)
        t.overrides.append(f"++trainer.strategy={{_target_:lightning.pytorch.strategies.DDPStrategy,"
                           f"process_group_backend:{v}}}")
        return
    if key in ORIGINAL_KEYS:
        key = ORIGINAL_KEYS[key]
        v = lora_value(v) if key == "lit.lora_config" else v
    t.overrides.append(f"{key}={format_value(key, v)}")


def _train_config(t: Translation, name: str) -> None:
    experiment = TRAIN_CONFIGS[name]
    if experiment is None:
        raise UsageError(f"--config-name {name}: training from scratch is not provided — fine-tune with "
                         "experiment=text2semantic_finetune, vits_finetune or vqgan_finetune")
    t.config_name = "train"
    t.overrides.append(f"experiment={experiment}")
    # the original's text2semantic_finetune is a full fine-tune unless +lora@model.lora_config=... is given
    if experiment == "text2semantic_finetune" and t.value_of("lit.lora_config", None) is None:
        t.overrides.append("lit.lora_config=null")


def _config_name(t: Translation, flag: str, name: str, task: str | None) -> None:
    """Resolve one ``--config-name``-like flag now that the task is known."""
    is_preset = (CONFIG_DIR / "model" / "text2semantic" / f"{name}.yaml").is_file()
    if flag in LLAMA_CONFIG_FLAGS or (is_preset and task not in ("encode", "decode")):
        if not is_preset:
            raise UsageError(f"{flag} '{name}' is not a text2semantic preset (e.g. dual_ar_2_codebook_medium)")
        t.overrides.append(f"model/text2semantic={name}")
    elif task in ("encode", "decode") and name in DECODER_NAMES:
        # one VQGAN (and one VITS) architecture in v1.1: the name only picks the decoder of task=decode
        if task == "decode" and t.value_of("decoder", None) is None:
            t.overrides.append(f"decoder={DECODER_NAMES[name]}")
    elif name in TRAIN_CONFIGS and task is None:
        _train_config(t, name)
    elif name in ("infer", "train"):
        t.config_name = name
    else:
        raise UsageError(f"unknown {flag} '{name}' (a text2semantic preset such as dual_ar_2_codebook_medium, "
                         f"{', '.join(n for n, e in TRAIN_CONFIGS.items() if e)} for training, or "
                         "vqgan_pretrain / vits_decoder_finetune for the codec tools)")


def _finish(t: Translation) -> None:
    """Lists, config names, positionals and the slot-dependent checkpoint flags, once the task is known."""
    for key, values in t.lists.items():
        t.overrides.append(f"{key}=[{','.join(quote(v) for v in values)}]")
    task = t.value_of("task", None)
    for flag, name in t.config_names:
        _config_name(t, flag, name, task)
    task = task or ("train" if t.config_name == "train" else "generate")
    if t.positional:
        if task not in POSITIONAL_KEY or len(t.positional) > 1:
            raise UsageError(f"cannot read argument '{t.positional[-1]}' (expected key=value)")
        t.overrides.append(f"{POSITIONAL_KEY[task]}={quote(t.positional[0])}")
    decoder = t.value_of("decoder", DEFAULT_DECODER)
    decoder_slot = DECODERS[decoder].slots[0] if decoder in DECODERS else DECODERS[DEFAULT_DECODER].slots[0]
    if t.checkpoint_path is not None:
        slot = CHECKPOINT_SLOT.get(task) or (decoder_slot if task == "decode" else "text2semantic")
        t.overrides.append(f"checkpoints.{slot}={quote(t.checkpoint_path)}")
    if t.decoder_checkpoint is not None:
        t.overrides.append(f"checkpoints.{decoder_slot}={quote(t.decoder_checkpoint)}")


def translate_args(argv: Sequence[str]) -> tuple[list[str], str | None, bool]:
    """Turn argv into (hydra overrides, config name or None, print_cfg)."""
    t, args = Translation(), _Args(argv)
    while args:
        raw, flag, inline = args.next()
        if _special(t, args, flag, inline):
            continue
        if flag in FLAGS or flag in SWITCHES:
            _mapped(t, args, flag, inline)
        elif raw.startswith("-") and "=" not in raw:
            raise UsageError(f"unknown flag '{raw}' (use key=value overrides; see `speechlm --help`)")
        elif "=" in raw:
            _key_value(t, raw)
        else:
            t.positional.append(raw)
    _finish(t)
    return t.overrides, t.config_name, t.print_cfg
