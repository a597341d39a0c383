"""Command-line front end: ``speechlm`` / ``speechlm-train`` (and ``infer.py`` / ``train.py``).

Translates the original Fish Speech flags (:mod:`speechlm.flags`), composes the one config tree,
refuses keys the chosen task does not declare (with a "did you mean", :mod:`speechlm.cli_keys`), checks
the input files, dispatches to the task's ``run(cfg)`` — once per combination with ``-m``
(:mod:`speechlm.multirun`) — and turns every user error into one line on stderr with exit code 2.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from speechlm.cli_keys import check_added_keys, check_task, message_from_hydra, ordered_yaml, task_help
from speechlm.config import compose
from speechlm.flags import UsageError, translate_args

log = logging.getLogger("speechlm")

USAGE = """usage: speechlm [-m] task=<name> [key=value ...] [original flags]     (or: python infer.py ...)

tasks: tts, generate, encode, decode, quantize, download, serve, webui, merge_lora, prepare
training: speechlm-train experiment=<text2semantic_finetune|vits_finetune|vqgan_finetune|firefly_finetune> data.root=DIR
examples:
  speechlm task=tts text="Hello there." reference=ref.wav reference_text="..." output=out.wav
  speechlm task=tts text="Hello there." quantize=int8 precision=auto     # fastest on a CPU
  speechlm -m task=tts text="Hi" temperature=0.3,0.7 seed=1,2           # one output per combination
  speechlm task=quantize checkpoints.text2semantic=model.pth mode=int8  # writes model.int8.pth
  speechlm task=generate text="Hi" prompt_tokens=fake.npy num_samples=2
  speechlm task=encode input=ref.wav output=ref.npy
  speechlm task=decode input=codes_0.npy output=out.wav reference=ref.wav text="Hi"
`speechlm task=<name> --help` lists that task's keys with defaults and meaning; `--cfg` prints their values
and the model configs. README.md lists every parameter."""

# Keys naming files a task reads: checked before any model loads.
INPUT_KEYS = ("reference", "input", "filelist")


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
    """Compose, or raise UsageError with one line (unknown task or key, bad value)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    check_task(overrides)
    try:
        check_added_keys(config_name, overrides)
        return compose(config_name, _with_registry_presets(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise UsageError(message_from_hydra(e, config_name, overrides)) from None


def _check_inputs(cfg) -> None:
    """Input files named on the command line exist: checked before any model loads."""
    from speechlm.errors import InputError

    for key in INPUT_KEYS:
        value = cfg.get(key) if key in cfg else None
        if isinstance(value, str) and value.strip() and not Path(value).expanduser().exists():
            raise InputError(f"{key} '{value}' does not exist", f"pass an existing file as {key}=PATH", field=key)


def _dispatch(cfg, dispatch: Callable | None) -> int:
    _setup_logging(cfg.log_level)
    _check_inputs(cfg)
    if dispatch is not None:
        return int(dispatch(cfg) or 0)
    import importlib

    from hydra.utils import get_method

    log.debug("task %s → %s", cfg.task_name, cfg.task_fn)
    importlib.import_module(str(cfg.task_fn).rsplit(".", 1)[0])  # a missing extra surfaces as itself, unwrapped
    result = get_method(cfg.task_fn)(cfg)
    return int(result) if isinstance(result, int) else 0


def _multirun(config_name: str, overrides: Sequence[str], dispatch: Callable | None) -> int:
    """One run per sweep combination, outputs named by it; stops at the first failing run."""
    from speechlm.multirun import expand, rename_outputs, tag

    runs = expand(overrides)
    cfgs = [(_compose(config_name, ov), choice) for ov, choice in runs]  # every combination valid before any runs
    for i, (cfg, choice) in enumerate(cfgs):
        target = rename_outputs(cfg, tag(choice))
        print(f"[{i + 1}/{len(cfgs)}] {' '.join(choice) or '(no sweep)'}" + (f" → {target}" if target else ""))
        code = _dispatch(cfg, dispatch)
        if code:
            return code
    return 0


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


def _run(argv: list[str], default_config: str, dispatch: Callable | None) -> int:
    from speechlm.multirun import split_flag

    argv, multirun = split_flag(argv)
    help_asked = any(a in ("-h", "--help") for a in argv)
    if help_asked and not any(a.startswith("task=") for a in argv):
        print(USAGE)
        return 0
    overrides, config_name, print_cfg = translate_args([a for a in argv if a not in ("-h", "--help")])
    config_name = config_name or default_config
    if help_asked:
        check_task(overrides)
        print(task_help(config_name, overrides))
        return 0
    if multirun:
        return _multirun(config_name, overrides, dispatch)
    cfg = _compose(config_name, overrides)
    if print_cfg:
        print(ordered_yaml(cfg))
        return 0
    return _dispatch(cfg, dispatch)


def main(argv: Sequence[str] | None = None, default_config: str = "infer",
         dispatch: Callable | None = None) -> int:
    """Entry point: returns the process exit code."""
    from speechlm.errors import SpeechLMError
    from speechlm.extras import missing_extra_message

    from speechlm.checkpoints.registry import hints_for

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("SPEECHLM_DEBUG") == "1"
    previous = hints_for("cli")  # checkpoint hints name checkpoints.<slot>=PATH, not Python arguments
    try:
        return _run(argv, default_config, dispatch)
    except (UsageError, SpeechLMError) as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `speechlm --help | head`: the reader left; say nothing, and keep the interpreter's final flush quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last resort: one line, traceback on request
        if debug:
            raise
        cause = _missing_module(e)
        if cause is not None and missing_extra_message(cause):
            print(f"error: {missing_extra_message(cause)}", file=sys.stderr)
            return 2
        return _report(e)
    finally:
        hints_for(previous)


def _missing_module(e: BaseException) -> ModuleNotFoundError | None:
    """The ModuleNotFoundError behind ``e`` (Hydra wraps the one raised while instantiating a target)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, ModuleNotFoundError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def infer_main() -> None:
    """Console script ``speechlm`` (= ``python infer.py``)."""
    sys.exit(main(default_config="infer"))


def train_main() -> None:
    """Console script ``speechlm-train`` (= ``python train.py``)."""
    sys.exit(main(default_config="train"))
