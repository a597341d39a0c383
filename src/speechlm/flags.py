"""The original Fish Speech command-line flags, translated into Hydra overrides.

``translate_args(argv)`` accepts ``key=value`` overrides mixed with the flags of the v1.1.2 tools
(``--prompt-tokens x``, ``--compile``, ``--checkpoint-path p``, ``--config-name c``, …) and quotes
free-text values so ``text="Hello, world!"`` needs no Hydra escaping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from speechlm.config import CONFIG_DIR, quote

# Keys whose values are free text or paths: quoted automatically unless already Hydra syntax.
FREE_TEXT_KEYS = {
    "text", "prompt_text", "reference_text", "speaker", "input", "output", "output_dir", "reference",
    "prompt_tokens", "listen", "api_key", "references_dir", "cache_dir", "checkpoint_dir", "name",
}
# Flags of the original tools → (override key, takes a value). A flag without a value sets the key true.
FLAGS: dict[str, tuple[str, bool]] = {
    "--text": ("text", True), "-t": ("text", True),
    "--prompt-text": ("prompt_text", True), "--prompt-tokens": ("prompt_tokens", True),
    "--num-samples": ("num_samples", True), "--max-new-tokens": ("max_new_tokens", True),
    "--top-p": ("top_p", True), "--temperature": ("temperature", True),
    "--repetition-penalty": ("repetition_penalty", True), "--chunk-length": ("chunk_length", True),
    "--seed": ("seed", True), "--speaker": ("speaker", True), "--device": ("device", True),
    "--compile": ("compile", False), "--half": ("half", False),
    "--input-path": ("input", True), "--input": ("input", True), "-i": ("input", True),
    "--output-path": ("output", True), "--output": ("output", True), "-o": ("output", True),
    "--reference-audio": ("reference", True), "--reference-path": ("reference", True), "-r": ("reference", True),
    "--reference-text": ("reference_text", True),
    "--listen": ("listen", True), "--api-key": ("api_key", True),
    "--max-text-length": ("max_text_length", True), "--workers": ("workers", True),
    "--llama-checkpoint-path": ("checkpoints.text2semantic", True),
    "--vqgan-checkpoint-path": ("checkpoints.vqgan", True),
    "--output-dir": ("output_dir", True),
}
# Multi-value flags of the original (click multiple=True) become Hydra lists.
LIST_KEYS = {"prompt_text", "prompt_tokens"}
# --decoder-config-name values of the original → our decoder key.
DECODER_NAMES = {"vits_decoder_finetune": "vits", "vits_decoder_pretrain": "vits", "vits": "vits",
                 "firefly_gan_vq": "vqgan", "vqgan_pretrain": "vqgan", "vqgan_finetune": "vqgan", "vqgan": "vqgan"}
# Which checkpoints slot the original's bare --checkpoint-path fills, per task.
CHECKPOINT_SLOT = {"generate": "text2semantic", "encode": "vqgan"}


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


@dataclass
class Translation:
    """What the command line asked for."""

    overrides: list[str] = field(default_factory=list)
    config_name: str | None = None
    print_cfg: bool = False
    lists: dict[str, list[str]] = field(default_factory=dict)
    checkpoint_path: str | None = None
    decoder_checkpoint: str | None = None

    def value_of(self, key: str, default: str) -> str:
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
    elif flag in ("--config-name", "-cn"):
        name = args.value(flag, inline)
        # The original generate.py's --config-name names the text2semantic model preset.
        if (CONFIG_DIR / "model" / "text2semantic" / f"{name}.yaml").is_file():
            t.overrides.append(f"model/text2semantic={name}")
        else:
            t.config_name = name
    elif flag in ("--checkpoint-path", "-ckpt"):
        t.checkpoint_path = args.value(flag, inline)
    elif flag == "--decoder-checkpoint-path":
        t.decoder_checkpoint = args.value(flag, inline)
    elif flag == "--decoder-config-name":
        name = args.value(flag, inline)
        if name not in DECODER_NAMES:
            raise UsageError(f"unknown --decoder-config-name '{name}' (use vits_decoder_finetune or firefly_gan_vq)")
        t.overrides.append(f"decoder={DECODER_NAMES[name]}")
    else:
        return False
    return True


def _mapped(t: Translation, args: _Args, flag: str, inline: str | None) -> None:
    key, has_value = FLAGS[flag]
    if not has_value:
        t.overrides.append(f"{key}=true")
        return
    v = args.value(flag, inline)
    if key in LIST_KEYS:
        t.lists.setdefault(key, []).append(v)
    else:
        t.overrides.append(f"{key}={format_value(key, v)}")


def _finish(t: Translation) -> None:
    """Lists and the slot-dependent checkpoint flags, once the task and decoder are known."""
    for key, values in t.lists.items():
        t.overrides.append(f"{key}=[{','.join(quote(v) for v in values)}]")
    task = t.value_of("task", "generate")
    decoder = t.value_of("decoder", "vits")
    decoder_slot = "vits" if decoder == "vits" else "vqgan"
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
        if flag in FLAGS:
            _mapped(t, args, flag, inline)
        elif raw.startswith("-") and "=" not in raw:
            raise UsageError(f"unknown flag '{raw}' (use key=value overrides; see `speechlm --help`)")
        elif "=" in raw:
            key, _, v = raw.partition("=")
            t.overrides.append(f"{key}={format_value(key, v)}")
        else:
            raise UsageError(f"cannot read argument '{raw}' (expected key=value)")
    _finish(t)
    return t.overrides, t.config_name, t.print_cfg
