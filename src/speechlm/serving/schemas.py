"""Request bodies of the HTTP API (pydantic), with the ranges of the original ``tools/api.py``.

Schema violations become 422 JSON bodies naming the field (see :mod:`speechlm.serving.errors`);
limits that depend on the server settings (text length, reference size) are checked by the routes.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

VOICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
VoiceId = Annotated[str, Field(pattern=VOICE_ID_PATTERN, description="a saved voice id (letters, digits, _ . -)")]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


class InvokeRequest(BaseModel):
    """Body of ``POST /v1/invoke`` — the Fish Speech v1.1.2 fields (``text`` is required here)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "examples": [{"text": "Hello world.", "format": "wav", "streaming": False}]})

    text: str = Field(description="text to speak")
    reference_text: Optional[str] = Field(None, description="transcript of reference_audio")
    reference_audio: Optional[str] = Field(None, description="base64-encoded audio file (wav/flac/mp3/ogg)")
    reference_id: Optional[VoiceId] = Field(None, description="a saved voice id (see /v1/references)")
    max_new_tokens: Annotated[int, Field(ge=0, le=100_000)] = Field(
        0, description="token budget per segment (0 = up to the model's context)")
    chunk_length: Annotated[int, Field(ge=0, le=500, strict=True)] = Field(
        150, description="characters per segment (0 = one segment)")
    top_p: Annotated[float, Field(ge=0.1, le=1.0, strict=True)] = 0.7
    repetition_penalty: Annotated[float, Field(ge=0.9, le=2.0, strict=True)] = 1.5
    temperature: Annotated[float, Field(ge=0.1, le=1.0, strict=True)] = 0.7
    speaker: Optional[Annotated[str, Field(max_length=100)]] = Field(None, description="speaker name in the prompt")
    format: Literal["wav", "mp3", "flac"] = "wav"
    streaming: bool = Field(False, description="WAV header, then 16-bit PCM per segment as it is decoded")
    seed: Optional[Annotated[int, Field(ge=0, le=2**32 - 1)]] = Field(None, description="null = random")
    num_samples: Annotated[int, Field(ge=1)] = Field(
        1, description="takes to generate; >1 answers JSON with one base64 audio file per take")

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        return _not_blank(value)


SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


class VoiceRef(BaseModel):
    """OpenAI's custom-voice object form: ``{"id": "<saved voice id>"}``."""

    id: Annotated[str, Field(max_length=64)]


class SpeechRequest(BaseModel):
    """Body of ``POST /v1/audio/speech`` (OpenAI-compatible; ``model``, ``speed``, ``instructions`` ignored;
    ``seed`` is our extension)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "examples": [{"model": "speechlm", "input": "Hello world.", "voice": "alloy", "response_format": "wav"}]})

    model: Optional[str] = Field(None, description="accepted and ignored (the server has one model)")
    input: str = Field(description="text to speak")
    voice: Optional[Union[Annotated[str, Field(max_length=64)], VoiceRef]] = Field(
        None, description="a saved voice id (or {\"id\": ...}); OpenAI's built-in names (alloy, …) mean the "
                          "default voice unless saved under that name")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = Field(
        "mp3", description="aac is not supported (400); pcm is 16-bit little-endian mono at 44.1 kHz")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="audio: the file streamed as it is made; sse: speech.audio.delta/done events")
    speed: Optional[Annotated[float, Field(ge=0.25, le=4.0)]] = Field(None, description="accepted and ignored")
    instructions: Optional[str] = Field(None, description="accepted and ignored")
    seed: Optional[Annotated[int, Field(ge=0, le=2**32 - 1)]] = Field(
        None, description="extension (OpenAI SDK: extra_body={'seed': 1}); null = random")

    @field_validator("input")
    @classmethod
    def _input_not_blank(cls, value: str) -> str:
        return _not_blank(value)

    @property
    def voice_id(self) -> str | None:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice
