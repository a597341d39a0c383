"""Request and response bodies of the Fish Speech 1.4/1.5 routes (``/v1/tts``, ``/v1/vqgan/*``).

Field names follow Fish Speech's ``ServeTTSRequest`` / ``ServeVQGAN*`` so its clients work unchanged.
Bodies come as msgpack (audio as raw bytes, what Fish's ``tools/api_client.py`` sends) or JSON (audio as
base64 strings); both are validated by these models (see :mod:`speechlm.serving.bodies`). Sampling
fields take their range and help from :data:`speechlm.params.PARAMS`; a field left out keeps the server's
default. Unknown fields are refused (422), never dropped.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from speechlm.params import api_field
from speechlm.serving.schemas import VoiceId
from speechlm.serving.voices import MAX_CLIPS

FISH_FORMATS = ("wav", "pcm", "mp3", "opus", "flac")
MAX_CODEC_ITEMS = 16        # audios per /v1/vqgan/* request
MAX_DECODE_TOKENS = 4096    # frames per decoded item (~190 s at 21.5 frames/s): bounds the work of one request


def _audio_bytes(value: Any) -> Any:
    """msgpack gives raw bytes; JSON gives a base64 string (optionally a data: URL)."""
    if isinstance(value, str):
        data = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
        try:
            return base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64 — in JSON send the audio file's bytes base64-encoded "
                             "(msgpack: raw bytes)") from None
    return value


AudioBytes = Annotated[bytes, BeforeValidator(_audio_bytes),
                       Field(json_schema_extra={"format": "byte"},
                             description="an audio file (wav/flac/mp3/ogg): raw bytes in msgpack, base64 in JSON")]


class FishReference(BaseModel):
    """One reference clip: ``ServeReferenceAudio``."""

    model_config = ConfigDict(extra="forbid")

    audio: AudioBytes
    text: str = Field(description="what the clip says")


class FishTTSRequest(BaseModel):
    """Body of ``POST /v1/tts`` — Fish Speech 1.5's ``ServeTTSRequest`` (1.4's extra fields accepted)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "Hello world.", "format": "wav", "references": [], "reference_id": None}]})

    text: str = Field(description="text to speak")
    chunk_length: int = api_field("chunk_length", strict=True)
    format: Literal[FISH_FORMATS] = Field("wav", description="wav, pcm (16-bit little-endian mono at 44.1 kHz), "
                                                             "mp3, opus (Ogg, 48 kHz) or flac")
    references: list[FishReference] = Field(
        [], max_length=MAX_CLIPS, description="reference clips with their transcripts (all prompt the model, "
                                              "the first gives the timbre); empty = none")
    reference_id: Optional[VoiceId] = Field(None, description="a saved voice id (see /v1/references), instead "
                                                               "of references")
    seed: Optional[int] = api_field("seed", None)
    use_memory_cache: Literal["on", "off", "on-demand", "never"] = Field(
        "off", description="accepted for Fish clients; no effect: encoded references are always cached by content")
    normalize: bool = api_field("normalize")
    streaming: bool = Field(False, description="send the audio while it is generated (every format; wav: a "
                                               "header of unknown length, then 16-bit PCM)")
    max_new_tokens: int = api_field("max_new_tokens")
    top_p: float = api_field("top_p", strict=True)
    repetition_penalty: float = api_field("repetition_penalty", strict=True)
    temperature: float = api_field("temperature", strict=True)
    # Fish 1.4 clients send these with every request: accepted and documented as having no effect.
    mp3_bitrate: Optional[int] = Field(None, description="Fish 1.4; accepted, no effect (mp3 has one bitrate here)")
    opus_bitrate: Optional[int] = Field(None, description="Fish 1.4; accepted, no effect")
    latency: Literal["normal", "balanced"] = Field("normal", description="Fish 1.4; accepted, no effect")


Code = Annotated[int, Field(ge=0, le=65535)]
Tokens = Annotated[list[list[list[Code]]], Field(
    min_length=1, max_length=MAX_CODEC_ITEMS,
    description="per audio, its codes as (num_codebooks, T) lists of ints")]


class VQGANEncodeRequest(BaseModel):
    """Body of ``POST /v1/vqgan/encode`` (``ServeVQGANEncodeRequest``)."""

    model_config = ConfigDict(extra="forbid")

    audios: list[AudioBytes] = Field(min_length=1, max_length=MAX_CODEC_ITEMS)


class VQGANEncodeResponse(BaseModel):
    tokens: list[list[list[int]]] = Field(description="per audio, its codes (num_codebooks, T)")


class VQGANDecodeRequest(BaseModel):
    """Body of ``POST /v1/vqgan/decode`` (``ServeVQGANDecodeRequest``)."""

    model_config = ConfigDict(extra="forbid")

    tokens: Tokens


class VQGANDecodeResponse(BaseModel):
    audios: list[bytes] = Field(description="per item, mono float16 little-endian PCM at sample_rate (as Fish "
                                            "answers): raw bytes in msgpack, base64 in JSON")
    sample_rate: int = Field(description="the rate of every audio (44100)")
