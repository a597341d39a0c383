"""Speaking rate: time-stretch synthesised audio with the pitch kept.

Uses the Rubber Band library as shipped inside ``pedalboard`` (a wheel, no system package): its
phase-vocoder stretcher keeps pitch and formants, which a plain resampling would shift.
"""

from __future__ import annotations

import numpy as np

from speechlm.errors import AudioError
from speechlm.params import PARAMS


def change_speed(audio: np.ndarray, sample_rate: int, speed: float) -> np.ndarray:
    """``audio`` played ``speed`` times as fast, same pitch.

    Args:
        audio: (N,) float32 mono samples.
        sample_rate: samples per second of ``audio``.
        speed: 0.25–4.0 (``PARAMS["speed"]``); 2 halves the duration, 1 returns ``audio`` unchanged.

    Returns:
        (M,) float32, M ≈ N / speed.

    Raises:
        InputError: ``speed`` is out of range or not a number.
        AudioError: ``audio`` is not one-dimensional or ``sample_rate`` is not positive.
    """
    speed = PARAMS["speed"].check(speed)
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise AudioError(f"change_speed takes mono (N,) audio, got shape {tuple(audio.shape)}",
                         "mix the channels down first")
    if not sample_rate or sample_rate <= 0:
        raise AudioError(f"sample_rate={sample_rate} is not a positive rate", "pass the audio's sample rate")
    audio = audio.astype(np.float32, copy=False)
    if speed == 1.0 or audio.size == 0:
        return audio
    from speechlm.extras import require

    time_stretch = require("pedalboard", "speed").time_stretch  # optional: speechlm[speed]

    # stretch_factor > 1 shortens the audio (= faster), the meaning of speed here
    out = time_stretch(audio[None, :], float(sample_rate), stretch_factor=speed, pitch_shift_in_semitones=0.0)
    return np.ascontiguousarray(out[0], dtype=np.float32)
