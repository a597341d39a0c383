"""Semantic codes for many clips at once through the VQGAN codec (the original's ``tools/vqgan/extract_vq.py``).

Clips are sorted by length and encoded ``batch_size`` at a time: each clip's mel is computed alone (so
its edges are padded as in a one-clip encode), the mels are zero-padded to the longest in the batch and
encoded with length masks, and each clip keeps its own ``n_samples // hop // frames_per_token`` tokens.
As in the original, the encoder's convolutions see the padding near the end of the shorter clips, so
their last tokens (within the encoder's receptive field) can differ from a one-clip encode;
``batch_size=1`` reproduces ``task=encode`` exactly. Sorting keeps that padding short.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from speechlm.stages.codec import VQGANCodec


@torch.inference_mode()
def _encode_batch(codec: VQGANCodec, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
    vq, f = codec.vqgan, codec.frames_per_token
    mels, lengths = [], []
    for audio in clips:
        x = torch.as_tensor(audio, dtype=torch.float32, device=codec.device)[None]  # (1, N)
        frames = len(audio) // codec.hop_length  # as VQGANCodec.encode: every whole frame
        mels.append(vq.encode_mel_transform.frames(x, 0, frames)[0])  # (n_mels, frames)
        lengths.append(frames)
    width = max(lengths)
    batch = torch.stack([torch.nn.functional.pad(m, (0, width - m.shape[-1])) for m in mels])  # (B, n_mels, T)
    codes = vq.encode_mel(batch, torch.tensor(lengths, device=codec.device))  # (B, G, T // f)
    return [codes[i, :, : n // f].cpu().numpy().astype(np.int32) for i, n in enumerate(lengths)]


def encode_clips(codec: VQGANCodec, clips: Sequence[np.ndarray], batch_size: int = 16,
                 progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Codes of every clip, in the order given.

    Args:
        codec: a loaded :class:`~speechlm.stages.codec.VQGANCodec`.
        clips: ``(N_i,)`` float32 audio at ``codec.sample_rate``, each at least ``codec.min_samples`` long.
        batch_size: clips per forward pass; 1 = one-clip encodes (identical to ``task=encode``).
        progress: called with the number of clips finished after each batch.

    Returns:
        ``(num_groups, N_i // hop // frames_per_token)`` int32 arrays.
    """
    out: list[np.ndarray | None] = [None] * len(clips)
    order = sorted(range(len(clips)), key=lambda i: len(clips[i]))
    for a in range(0, len(order), max(1, batch_size)):
        idx = order[a: a + max(1, batch_size)]
        if len(idx) == 1:
            results = [codec.encode(torch.as_tensor(clips[idx[0]])).numpy().astype(np.int32)]
        else:
            results = _encode_batch(codec, [clips[i] for i in idx])
        for i, codes in zip(idx, results):
            out[i] = codes
        if progress is not None:
            progress(len(idx))
    return out  # type: ignore[return-value]
