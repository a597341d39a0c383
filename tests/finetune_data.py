"""Synthetic fine-tuning data with two speakers whose semantic codes differ in a measurable way.

``alice`` speaks in low codes, ``bob`` in high ones: each utterance's codebook-0 row cycles through
its speaker's four codes (a random phase), codebook 1 follows codebook 0 (+ 1). Both read the same
sentences, so only the speaker name in the prompt tells the patterns apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PATTERNS = {"alice": (40, 52, 64, 76), "bob": (600, 640, 680, 720)}
SENTENCES = ["Good morning.", "See you soon.", "It is raining.", "Where is it?", "That was fun.",
             "Call me later.", "Not today.", "Thanks a lot."]


def speaker_codes(speaker: str, length: int, phase: int) -> np.ndarray:
    """``(2, length)`` int32 codes in ``speaker``'s pattern."""
    cycle = np.array(PATTERNS[speaker])
    row = cycle[(np.arange(length) + phase) % len(cycle)]
    return np.stack([row, row + 1]).astype(np.int32)


def make_two_speakers(root: str | Path, per_speaker: int = 8, seed: int = 0) -> Path:
    """Write ``root/<speaker>/u<i>.npy`` + ``.lab`` for alice and bob."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for speaker in PATTERNS:
        (root / speaker).mkdir(parents=True, exist_ok=True)
        for i in range(per_speaker):
            codes = speaker_codes(speaker, int(rng.integers(12, 20)), int(rng.integers(0, 4)))
            np.save(root / speaker / f"u{i}.npy", codes)
            (root / speaker / f"u{i}.lab").write_text(SENTENCES[i % len(SENTENCES)], encoding="utf-8")
    return root


def share_of_speaker(codes, speaker: str) -> float:
    """Share of codebook-0 codes that are one of ``speaker``'s four (a random model: ~4 / 1000)."""
    row = np.asarray(codes)[0]
    return float(np.isin(row, PATTERNS[speaker]).mean()) if row.size else 0.0
