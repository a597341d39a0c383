"""Command-line front end: ``speechlm`` / ``speechlm-train`` (and ``infer.py`` / ``train.py``).

Translates the original Fish Speech flags (:mod:`speechlm.flags`), composes the one config tree,
refuses keys the chosen task does not declare, dispatches to the task's ``run(cfg)`` and turns every
user error into one line on stderr with exit code 2.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Callable, Sequence

from speechlm.config import compose
from speechlm.flags import UsageError, translate_args

log = logging.getLogger("speechlm")

USAGE = """usage: speechlm task=<name> [key=value ...] [original flags]     (or: python infer.py ...)

tasks: tts, generate, encode, decode, quantize, download, serve, webui, merge_lora, prepare
training: speechlm-train experiment=<text2semantic_finetune|vits_finetune|vqgan_finetune|firefly_finetune> data.root=DIR
examples:
  speechlm task=tts text="Hello there." reference=ref.wav reference_text="..." output=out.wav
  speechlm task=tts text="Hello there." quantize=int8 precision=auto     # fastest on a CPU
  speechlm task=quantize checkpoints.text2semantic=model.pth mode=int8  # writes model.int8.pth
  speechlm task=generate text="Hi" prompt_tokens=fake.npy num_samples=2
  speechlm task=encode input=ref.wav output=ref.npy
  speechlm task=decode input=codes_0.npy output=out.wav reference=ref.wav text="Hi"
`speechlm task=<name> --cfg` prints that task's keys with their values. README.md lists every parameter."""

_OVERRIDE_RE = re.compile(r"Could not override '([^']+)'|Key '([^']+)' is not in struct")


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
    return re.sub(r"\s+", " ", str(e).strip()) or type(e).__name__


def _unknown_key_message(e: BaseException, config_name: str, overrides: Sequence[str]) -> str:
    """'task=X has no key K — its keys: ...' for an override the task does not declare."""
    msg = _one_line(e)
    m = _OVERRIDE_RE.search(msg)
    if not m:
        return f"bad configuration: {msg}"
    key = m.group(1) or m.group(2)
    if "." in key:
        return (f"there is no key '{key}' in this config — check the name (`--cfg` prints every key; "
                f"++{key}=<value> adds one)")
    task = [o for o in overrides if o.startswith("task=")]
    try:
        keys = sorted(k for k in compose(config_name, task) if k not in ("task_fn", "task_name", "model", "checkpoints"))
    except Exception:  # noqa: BLE001 - the task itself is broken: fall back to Hydra's words
        return f"bad configuration: {msg}"
    where = task[0] if task else f"{config_name}.yaml"
    return (f"{where} has no key '{key}' — its keys: {', '.join(keys)} "
            "(plus model/<area>=<preset> and checkpoints.<slot>=PATH; `--cfg` prints them with their values)")


def _with_registry_presets(overrides: Sequence[str]) -> list[str]:
    """Add the preset an official checkpoint needs (``checkpoints.text2semantic=text2semantic-large``
    selects ``model/text2semantic=dual_ar_2_codebook_large``) unless the user chose one."""
    from speechlm.checkpoints.registry import preset_overrides

    files, chosen = {}, set()
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+")
        if key.startswith("checkpoints."):
            files[key.split(".", 1)[1]] = value.strip("'\"")
        elif key.startswith("model/"):
            chosen.add(key)
    return list(overrides) + preset_overrides(files, explicit=chosen)


def _compose(config_name: str, overrides: Sequence[str]):
    """Compose, or raise UsageError with one line (unknown key, bad value)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose(config_name, _with_registry_presets(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise UsageError(_unknown_key_message(e, config_name, overrides)) from None


def _dispatch(cfg, dispatch: Callable | None) -> int:
    _setup_logging(cfg.log_level)
    if dispatch is not None:
        return int(dispatch(cfg) or 0)
    from hydra.utils import get_method

    log.debug("task %s → %s", cfg.task_name, cfg.task_fn)
    result = get_method(cfg.task_fn)(cfg)
    return int(result) if isinstance(result, int) else 0


def _report(e: Exception) -> int:
    """One stderr line for an unexpected exception; returns the exit code."""
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    if isinstance(e, MissingMandatoryValue):
        key = getattr(e, "full_key", None) or _one_line(e)
        print(f"error: missing required parameter '{key}' — pass {key}=<value>", file=sys.stderr)
        return 2
    if isinstance(e, OmegaConfBaseException):
        print(f"error: bad configuration: {_one_line(e)}", file=sys.stderr)
        return 2
    if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
        print("error: out of memory — use a smaller model, shorter text/audio, or half=true on GPU", file=sys.stderr)
        return 1
    print(f"error: internal error ({type(e).__name__}: {_one_line(e)[:300]}) — rerun with SPEECHLM_DEBUG=1 "
          "for the traceback and report it", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None, default_config: str = "infer",
         dispatch: Callable | None = None) -> int:
    """Entry point: returns the process exit code."""
    from omegaconf import OmegaConf

    from speechlm.errors import SpeechLMError

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    debug = os.environ.get("SPEECHLM_DEBUG") == "1"
    try:
        overrides, config_name, print_cfg = translate_args(argv)
        cfg = _compose(config_name or default_config, overrides)
        if print_cfg:
            print(OmegaConf.to_yaml(cfg))
            return 0
        return _dispatch(cfg, dispatch)
    except (UsageError, SpeechLMError) as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last resort: one line, traceback on request
        if debug:
            raise
        return _report(e)


def infer_main() -> None:
    """Console script ``speechlm`` (= ``python infer.py``)."""
    sys.exit(main(default_config="infer"))


def train_main() -> None:
    """Console script ``speechlm-train`` (= ``python train.py``)."""
    sys.exit(main(default_config="train"))
