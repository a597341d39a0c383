"""HTTP API (``python infer.py task=serve``): FastAPI routes over the one :class:`speechlm.pipeline.TTS`.

``VoiceStore`` (saved voices) is importable without FastAPI; ``create_app`` needs it.
"""

from speechlm.serving.settings import ServeSettings
from speechlm.serving.voices import Voice, VoiceStore, check_voice_id

__all__ = ["ServeSettings", "Voice", "VoiceStore", "check_voice_id", "create_app"]


def create_app(tts_or_factory, settings: ServeSettings | None = None):
    """See :func:`speechlm.serving.app.create_app`."""
    from speechlm.serving.app import create_app as _create_app

    return _create_app(tts_or_factory, settings)
