"""``python infer.py task=generate``: text (+ reference codes) → ``codes_0.npy … codes_{N-1}.npy``.

The same :class:`~speechlm.stages.generate.SemanticGenerator` the API and web UI use; every
bad input is one :class:`~speechlm.errors.SpeechLMError` (the CLI prints one line, exit 2).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig

from speechlm.checkpoints.registry import resolve_checkpoint
from speechlm.errors import InputError
from speechlm.stages.generate import SemanticGenerator, check_sampling
from speechlm.utils.device import resolve_device, resolve_precision, seed_everything
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


def load_codes(path: str) -> np.ndarray:
    """Read one prompt-tokens ``.npy`` file (shape and values are checked by the generator)."""
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
    text = cfg.get("text")
    if text is None or not str(text).strip():
        raise InputError("text is empty", "pass the text to speak: text=\"Hello\"", field="text")
    limit = cfg.get("max_text_length")
    if limit and len(str(text)) > int(limit):
        raise InputError(f"text is {len(str(text))} characters, more than max_text_length={limit}",
                         "split it into several runs or raise max_text_length", field="text")
    prompt_texts = as_list(cfg.get("prompt_text"), "prompt_text")
    token_files = as_list(cfg.get("prompt_tokens"), "prompt_tokens")
    if len(prompt_texts) != len(token_files):
        raise InputError(f"got {len(prompt_texts)} prompt_text value(s) but {len(token_files)} prompt_tokens file(s)",
                         "give one prompt_text per prompt_tokens file, in the same order", field="prompt_text")
    num_samples = int(cfg.get("num_samples", 1))
    if num_samples < 1:
        raise InputError(f"num_samples={num_samples} must be >= 1", "pass num_samples=1 or more", field="num_samples")
    params = dict(top_p=float(cfg.top_p), temperature=float(cfg.temperature),
                  repetition_penalty=float(cfg.repetition_penalty))
    check_sampling(chunk_length=cfg.chunk_length, max_new_tokens=cfg.max_new_tokens, **params)
    out_dir = ensure_writable_dir(cfg.get("output_dir") or ".", "output_dir")
    codes_in = [load_codes(f) for f in token_files]

    device = resolve_device(cfg.get("device", "auto"))
    dtype = resolve_precision(device, bool(cfg.get("half", False)))
    path = resolve_checkpoint(cfg.checkpoints.text2semantic, "text2semantic", checkpoint_dir=cfg.checkpoint_dir)
    log.info("text2semantic: %s on %s (%s)", path, device, str(dtype).replace("torch.", ""))
    gen = SemanticGenerator.from_config(cfg.model.text2semantic, path, device=device, dtype=dtype,
                                        compile=bool(cfg.get("compile", False)))
    gen.encode_prompts(prompt_texts, codes_in, cfg.get("speaker"))  # validate before any work

    seed_everything(cfg.get("seed"))
    written = []
    for i in range(num_samples):
        segments = list(gen.generate(str(text), prompt_texts=prompt_texts, prompt_tokens=codes_in,
                                     speaker=cfg.get("speaker"), max_new_tokens=int(cfg.max_new_tokens),
                                     chunk_length=int(cfg.chunk_length),
                                     iterative_prompt=bool(cfg.get("iterative_prompt", True)), **params))
        codes = torch.cat([s.codes for s in segments], dim=1).numpy().astype(np.int64)
        target = save_npy_atomic(out_dir / f"codes_{i}.npy", codes)
        log.info("sample %d/%d: %d frames → %s", i + 1, num_samples, codes.shape[1], target)
        written.append(target)
    return written
