"""Optional transcription of clips without a transcript (the original's ``tools/whisper_asr.py``).

The backend is faster-whisper (CTranslate2 Whisper), an optional extra: ``pip install 'speechlm[asr]'``.
It is imported only when ``asr=whisper`` is asked for; a missing package or model stops the run before
any file is touched, with one line that says how to get it.
"""

from __future__ import annotations

import numpy as np

from speechlm.audio.io import resample
from speechlm.errors import CheckpointError, InputError

WHISPER_RATE = 16000
INSTALL_HINT = "pip install 'speechlm[asr]' (faster-whisper==1.2.1)"


def _model_hint(model: str) -> str:
    repo = f"Systran/faster-whisper-{model}" if "/" not in model else model
    return (f"download it once with `huggingface-cli download {repo} --local-dir checkpoints/whisper-{model}` "
            f"and pass asr_model=checkpoints/whisper-{model}")


class WhisperASR:
    """Transcribe ``(N,)`` float32 clips with a faster-whisper model.

    Args:
        model: a model name (``large-v3``, ``medium``, ...) or a local folder of a converted model.
        device: ``cpu``, ``cuda`` or ``auto``.
        language: ISO code (``en``, ``zh``, ...) or None to detect it per clip.
    """

    def __init__(self, model: str = "large-v3", device: str = "auto", language: str | None = None,
                 compute_type: str = "default"):
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise InputError("asr=whisper needs the faster-whisper package, which is not installed",
                             INSTALL_HINT, field="asr") from None
        try:
            self.model = WhisperModel(model, device=device, compute_type=compute_type)
        except Exception as e:  # noqa: BLE001 - download/IO/format errors of a third-party loader
            detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"the Whisper model '{model}' is not available ({detail})",
                                  _model_hint(model)) from None
        self.language = language or None

    def transcribe(self, audio: np.ndarray, sr: int) -> str:
        """The transcript of one clip (segments joined by spaces; empty when nothing was heard)."""
        clip = resample(audio.astype(np.float32), sr, WHISPER_RATE)
        segments, _info = self.model.transcribe(clip, language=self.language, beam_size=5)
        return " ".join(s.text.strip() for s in segments).strip()


def build_asr(name: str | None, model: str, device: str, language: str | None) -> WhisperASR | None:
    """The backend named by ``asr=`` (None: no transcription)."""
    if not name:
        return None
    if name != "whisper":
        raise InputError(f"asr={name} is not a transcription backend", "use asr=whisper or asr=null", field="asr")
    return WhisperASR(model, device=device, language=language)
