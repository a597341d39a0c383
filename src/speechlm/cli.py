"""Command-line front end shared by ``infer.py`` and ``train.py``.

It translates the original Fish Speech flags into Hydra overrides, quotes free-text values so
``text="Hello, world!"`` needs no Hydra escaping, composes the one config tree, dispatches to the
task's ``run(cfg)`` and turns every user error into one line on stderr with exit code 2.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Callable, Sequence

from speechlm.config import CONFIG_DIR, compose, quote


# Keys whose values are free text or paths: quoted automatically unless already Hydra syntax.
FREE_TEXT_KEYS = {
    "text", "prompt_text", "reference_text", "speaker", "input", "output", "output_dir", "reference",
    "prompt_tokens", "listen", "api_key", "references_dir", "cache_dir", "checkpoint_dir", "name",
}
# Flags of the original tools → override keys. A value of None means "consumes no argument, set true".
_FLAGS: dict[str, tuple[str, bool]] = {
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
_LIST_KEYS = {"prompt_text", "prompt_tokens"}
# --decoder-config-name values of the original → our decoder key.
_DECODER_NAMES = {"vits_decoder_finetune": "vits", "vits_decoder_pretrain": "vits", "vits": "vits",
                  "firefly_gan_vq": "vqgan", "vqgan_pretrain": "vqgan", "vqgan_finetune": "vqgan", "vqgan": "vqgan"}

log = logging.getLogger("speechlm")


class UsageError(Exception):
    """Bad command-line syntax."""


def _is_hydra_literal(v: str) -> bool:
    v = v.strip()
    return (len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"") or v.startswith("[") or v == "null"


def _fmt_value(key: str, value: str) -> str:
    base = key.split(".")[-1].lstrip("+~")
    if base in FREE_TEXT_KEYS or key.startswith("checkpoints.") or key.startswith("+checkpoints."):
        return value if _is_hydra_literal(value) else quote(value)
    return value


def translate_args(argv: Sequence[str]) -> tuple[list[str], str | None, bool]:
    """Turn argv into (hydra overrides, config name, print_cfg).

    Accepts ``key=value`` overrides and the original tool flags (``--prompt-tokens x``,
    ``--compile``, ``--checkpoint-path p``, ``--config-name c``, …).
    """
    overrides: list[str] = []
    lists: dict[str, list[str]] = {}
    config_name: str | None = None
    print_cfg = False
    checkpoint_path: str | None = None
    decoder_ckpt: str | None = None
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        flag, eq, inline = a.partition("=") if a.startswith("--") else (a, "", "")
        if not eq:
            inline = None

        def take() -> str:
            nonlocal i
            if inline is not None:
                return inline
            if i + 1 >= len(args):
                raise UsageError(f"flag {flag} needs a value")
            i += 1
            return args[i]

        if flag in ("--cfg", "-c"):
            print_cfg = True
            if inline is None and i + 1 < len(args) and args[i + 1] in ("job", "all", "hydra"):
                i += 1
        elif flag in ("--config-name", "-cn"):
            config_name = take()
            # The original generate.py's --config-name names the text2semantic model preset.
            if (CONFIG_DIR / "model" / "text2semantic" / f"{config_name}.yaml").is_file():
                overrides.append(f"model/text2semantic={config_name}")
                config_name = None
        elif flag in ("--checkpoint-path", "-ckpt"):
            checkpoint_path = take()
        elif flag == "--decoder-checkpoint-path":
            decoder_ckpt = take()
        elif flag == "--decoder-config-name":
            name = take()
            if name not in _DECODER_NAMES:
                raise UsageError(f"unknown --decoder-config-name '{name}' (use vits_decoder_finetune or firefly_gan_vq)")
            overrides.append(f"decoder={_DECODER_NAMES[name]}")
        elif flag in _FLAGS:
            key, has_value = _FLAGS[flag]
            if not has_value:
                overrides.append(f"{key}=true")
            else:
                v = take()
                if key in _LIST_KEYS:
                    lists.setdefault(key, []).append(v)
                else:
                    overrides.append(f"{key}={_fmt_value(key, v)}")
        elif a.startswith("-") and "=" not in a:
            raise UsageError(f"unknown flag '{a}' (use key=value overrides; see `python infer.py --help`)")
        elif "=" in a:
            key, _, v = a.partition("=")
            overrides.append(f"{key}={_fmt_value(key, v)}")
        else:
            raise UsageError(f"cannot read argument '{a}' (expected key=value)")
        i += 1
    for key, values in lists.items():
        overrides.append(f"{key}=[{','.join(quote(v) for v in values)}]")
    task = next((o.split("=", 1)[1] for o in overrides if o.startswith("task=")), "generate")
    decoder = next((o.split("=", 1)[1] for o in overrides if o.startswith("decoder=")), "vits")
    if checkpoint_path is not None:
        slot = {"generate": "text2semantic", "encode": "vqgan"}.get(task)
        if slot is None and task == "decode":
            slot = "vits" if decoder == "vits" else "vqgan"
        overrides.append(f"checkpoints.{slot or 'text2semantic'}={quote(checkpoint_path)}")
    if decoder_ckpt is not None:
        overrides.append(f"checkpoints.{'vits' if decoder == 'vits' else 'vqgan'}={quote(decoder_ckpt)}")
    return overrides, config_name, print_cfg


def _setup_logging(level: str = "INFO") -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=getattr(logging, str(level).upper(), logging.INFO), format="%(message)s",
                        datefmt="[%X]", handlers=[RichHandler(show_path=False, rich_tracebacks=False)], force=True)
    for noisy in ("lightning", "lightning.pytorch", "pytorch_lightning", "httpx", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # its retry warnings would precede our one-line error; the error itself says what failed
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def _one_line(e: BaseException) -> str:
    text = str(e).strip().replace("\n", " ")
    text = re.sub(r"\s+", " ", text)
    return text or type(e).__name__


USAGE = """usage: python infer.py task=<name> [key=value ...] [original flags]

tasks: tts, generate, encode, decode, download, serve, webui, merge_lora
training: python train.py experiment=<text2semantic_finetune|vits_finetune|vqgan_finetune|firefly_finetune> data.root=DIR
examples:
  python infer.py task=tts text="Hello there." reference=ref.wav reference_text="..." output=out.wav
  python infer.py task=generate text="Hi" prompt_tokens=fake.npy num_samples=2
  python infer.py task=encode input=ref.wav output=ref.npy
  python infer.py task=decode input=codes_0.npy output=out.wav reference=ref.wav text="Hi"
Print the composed config with --cfg. README.md lists every parameter."""


def main(argv: Sequence[str] | None = None, default_config: str = "infer",
         dispatch: Callable | None = None) -> int:
    """Entry point: returns the process exit code."""
    from speechlm.errors import SpeechLMError

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    debug = os.environ.get("SPEECHLM_DEBUG") == "1"
    try:
        overrides, config_name, print_cfg = translate_args(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        from hydra.errors import HydraException
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            cfg = compose(config_name or default_config, overrides)
        except (HydraException, OmegaConfBaseException) as e:
            msg = _one_line(e)
            if "Could not override" in msg or "Key '" in msg and "is not in struct" in msg:
                msg += " (check the key name; `python infer.py --cfg` prints every key)"
            print(f"error: bad configuration: {msg}", file=sys.stderr)
            return 2
        if print_cfg:
            print(OmegaConf.to_yaml(cfg))
            return 0
        _setup_logging(cfg.get("log_level", "INFO"))
        if dispatch is not None:
            return int(dispatch(cfg) or 0)
        from hydra.utils import get_method

        fn = get_method(cfg.task_fn)
        log.debug("task %s → %s", cfg.get("task_name"), cfg.task_fn)
        result = fn(cfg)
        return int(result) if isinstance(result, int) else 0
    except SpeechLMError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last resort: one line, traceback on request
        from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

        if debug:
            raise
        if isinstance(e, MissingMandatoryValue):
            key = getattr(e, "full_key", None) or _one_line(e)
            print(f"error: missing required parameter '{key}' — pass {key}=<value>", file=sys.stderr)
            return 2
        if isinstance(e, OmegaConfBaseException):
            print(f"error: bad configuration: {_one_line(e)}", file=sys.stderr)
            return 2
        if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
            print("error: out of memory — use a smaller model, shorter text/audio, or half=true on GPU",
                  file=sys.stderr)
            return 1
        print(f"error: internal error ({type(e).__name__}: {_one_line(e)[:300]}) — rerun with SPEECHLM_DEBUG=1 "
              "for the traceback and report it", file=sys.stderr)
        return 1


def infer_main() -> None:
    """Console script ``speechlm`` (= ``python infer.py``)."""
    sys.exit(main(default_config="infer"))


def train_main() -> None:
    """Console script ``speechlm-train`` (= ``python train.py``)."""
    sys.exit(main(default_config="train"))
