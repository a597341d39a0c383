"""speechlm: voice-cloning text-to-speech compatible with Fish Speech 1.1 checkpoints."""

from speechlm.errors import SpeechLMError

__version__ = "0.1.0"

__all__ = ["SpeechLMError", "__version__"]
