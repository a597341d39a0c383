"""``speechlm task=generate``: text (+ reference codes) → ``codes_0.npy … codes_{N-1}.npy``.

The text2semantic stage of the one :class:`speechlm.TTS` pipeline; every bad input is one
:class:`~speechlm.errors.SpeechLMError` (the CLI prints one line, exit 2).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig

from speechlm.errors import InputError
from speechlm.params import check_text
from speechlm.pipeline import TTS
from speechlm.utils.device import seed_everything
from speechlm.utils.io import ensure_writable_dir, save_npy_atomic

log = logging.getLogger(__name__)


def as_list(value, name: str) -> list[str]:
    """A config value that may be null, a string or a list → list of strings."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(v) for v in value]
    if isinstance(value, (str, int, float)):
        return [str(value)]
    raise InputError(f"{name} must be a string or a list of strings", f"pass {name}=... or {name}=[a,b]", field=name)


def read_prompt_tokens(path: str) -> np.ndarray:
    """One prompt-tokens ``.npy`` file as written (shape and ids are checked against the model)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"prompt_tokens file '{p}' does not exist", "pass the .npy written by task=encode",
                         field="prompt_tokens")
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"prompt_tokens file '{p}' is not a readable .npy array ({str(e).splitlines()[0][:120]})",
                         "pass the .npy written by task=encode", field="prompt_tokens") from None


def run(cfg: DictConfig) -> list[Path]:
    """Generate ``num_samples`` samples and write ``codes_{i}.npy`` to ``output_dir``; returns the paths."""
    text = check_text(cfg.text, cfg.max_text_length)
    prompt_texts = as_list(cfg.prompt_text, "prompt_text")
    token_files = as_list(cfg.prompt_tokens, "prompt_tokens")
    if len(prompt_texts) != len(token_files):
        raise InputError(f"got {len(prompt_texts)} prompt_text value(s) but {len(token_files)} prompt_tokens file(s)",
                         "give one prompt_text per prompt_tokens file, in the same order", field="prompt_text")
    tts = TTS(cfg)  # validates every sampling parameter before a model is loaded
    out_dir = ensure_writable_dir(cfg.output_dir or ".", "output_dir")
    codes_in = [read_prompt_tokens(f) for f in token_files]
    gen = tts.generator
    gen.encode_prompts(prompt_texts, codes_in, tts.defaults.speaker)  # validate before any work

    seed_everything(tts.defaults.seed)
    written = []
    for i in range(tts.defaults.num_samples):
        segments = list(gen.generate(text, prompt_texts=prompt_texts, prompt_tokens=codes_in, params=tts.defaults))
        codes = torch.cat([s.codes for s in segments], dim=1).numpy().astype(np.int64)
        target = save_npy_atomic(out_dir / f"codes_{i}.npy", codes)
        log.info("sample %d/%d: %d frames → %s", i + 1, tts.defaults.num_samples, codes.shape[1], target)
        written.append(target)
    return written
