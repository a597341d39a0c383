"""speechlm: voice-cloning text-to-speech compatible with Fish Speech 1.1 checkpoints."""

from speechlm.errors import SpeechLMError

__version__ = "0.1.0"

__all__ = ["TTS", "SpeechLMError", "__version__"]


def __getattr__(name: str):
    # The pipeline pulls in torch and the models; import it only when asked for.
    if name == "TTS":
        from speechlm.pipeline import TTS

        return TTS
    raise AttributeError(f"module 'speechlm' has no attribute {name!r}")
