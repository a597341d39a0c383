"""The prompt grid fed to the text-to-semantic model (Fish Speech v1.1.2 ``encode_tokens`` layout).

Grid rows: ``[0]`` text token ids, ``[1..NC]`` codebook values, where 0 = PAD, 1 = EOS and
``2 + q`` is VQ code ``q``. A turn is ``[<bos>]<|im_start|>user<|im_sep|>TEXT<|im_end|>
<|im_start|>SPEAKER<|im_sep|>``; reference codes, when given, follow as ``<|semantic|>`` × L with the
codes (+2) in the codebook rows, then one ``<|im_end|>`` column whose codebook values are EOS.
"""

from __future__ import annotations

import numpy as np
import torch

from speechlm.errors import InputError
from speechlm.text.clean import clean_text
from speechlm.text.tokenizer import BOS, IM_END, IM_SEP, IM_START, FishTokenizer

CODEBOOK_PAD = 0
CODEBOOK_EOS = 1
CODE_OFFSET = 2  # VQ index q is stored as q + 2 in the grid
DEFAULT_SPEAKER = "assistant"


def turn_text(text: str, speaker: str | None = None, bos: bool = False) -> str:
    """The chat-formatted string of one user turn followed by the speaker's (empty) answer header."""
    s = f"{IM_START}user{IM_SEP}{text}{IM_END}{IM_START}{speaker or DEFAULT_SPEAKER}{IM_SEP}"
    return BOS + s if bos else s


def check_prompt_codes(codes, num_codebooks: int, *, max_code: int | None = None,
                       name: str = "prompt_tokens") -> torch.Tensor:
    """Validate VQ codes given as a prompt and return the first ``num_codebooks`` rows.

    Args:
        codes: (K, L) or (1, K, L) integer array/tensor of VQ indices, K >= ``num_codebooks``.
        max_code: exclusive upper bound of a VQ index (``codebook_size - 2``), if known.

    Returns:
        (num_codebooks, L) int64 tensor.

    Raises:
        InputError: wrong rank, too few codebooks, non-integer dtype, empty, or values out of range.
    """
    t = torch.from_numpy(np.asarray(codes)) if not isinstance(codes, torch.Tensor) else codes
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{name} must hold integer VQ codes, got dtype {t.dtype}",
                         "pass the codes_N.npy / encode output (an int array of shape (codebooks, frames))",
                         field=name)
    if t.dim() == 3 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 2:
        raise InputError(f"{name} must have shape (codebooks, frames) or (1, codebooks, frames), got {tuple(t.shape)}",
                         "pass the codes produced by task=encode", field=name)
    k, length = t.shape
    if k < num_codebooks:
        raise InputError(f"{name} has {k} codebook rows but the model needs {num_codebooks}",
                         f"pass codes with at least {num_codebooks} rows (shape ({num_codebooks}, frames))",
                         field=name)
    if length == 0:
        raise InputError(f"{name} has no frames", "pass a non-empty code file", field=name)
    t = t[:num_codebooks].long()
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or (max_code is not None and hi >= max_code):
        rng = f"[0, {max_code})" if max_code is not None else "[0, inf)"
        raise InputError(f"{name} values must be VQ indices in {rng}, found values in [{lo}, {hi}]",
                         "pass codes produced by task=encode for this model", field=name)
    return t


def encode_prompt(tokenizer: FishTokenizer, text: str, *, bos: bool, prompt_tokens=None,
                  speaker: str | None = None, num_codebooks: int = 2, max_code: int | None = None) -> torch.Tensor:
    """Build the prompt grid of one turn.

    Args:
        tokenizer: the :class:`FishTokenizer`.
        text: user text (cleaned here with :func:`clean_text`).
        bos: prefix ``<|begin_of_sequence|>`` (first turn of a sequence).
        prompt_tokens: optional (K, L) / (1, K, L) VQ codes spoken in reply to ``text``.
        speaker: speaker name in the answer header (``None`` → ``"assistant"``).
        num_codebooks: NC, the number of codebook rows.
        max_code: exclusive bound for prompt VQ indices (checked when given).

    Returns:
        (1 + NC, T) int64 grid; T = len(text tokens) [+ L + 1 with prompt_tokens].
    """
    ids = tokenizer.encode(turn_text(clean_text(text), speaker, bos))
    grid = torch.zeros(1 + num_codebooks, len(ids), dtype=torch.long)
    grid[0] = torch.tensor(ids, dtype=torch.long)
    if prompt_tokens is None:
        return grid
    codes = check_prompt_codes(prompt_tokens, num_codebooks, max_code=max_code)
    length = codes.shape[1]
    answer = torch.full((1 + num_codebooks, length + 1), CODEBOOK_EOS, dtype=torch.long)
    answer[0, :length] = tokenizer.semantic_id
    answer[0, length] = tokenizer.im_end_id
    answer[1:, :length] = codes + CODE_OFFSET
    return torch.cat([grid, answer], dim=1)
