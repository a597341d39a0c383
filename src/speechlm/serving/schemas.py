"""Request bodies of the HTTP API (pydantic); each synthesis parameter's default, range and help
text come from :data:`speechlm.params.PARAMS` (``api_field``), never restated here.

Schema violations, unknown fields included, become 422 JSON bodies naming the field (see
:mod:`speechlm.serving.errors`); limits that depend on the server settings (text length, reference size,
takes, token budget), the text itself (empty, nothing speakable) and fields that cannot take effect
(``ref_json``, ``ref_base``, ``instructions``, an ``emotion`` no clip has) are checked by the routes,
which answer 400. Nothing a client sends is silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from speechlm.params import api_field, api_type
from speechlm.serving.formats import OUTPUT_RATES
from speechlm.serving.voices import MAX_CLIPS, MAX_TAG_CHARS, VOICE_ID_PATTERN

# A speaker name follows the saved voices' rule (voice_meta.check_tag): at most MAX_TAG_CHARS characters,
# none of them a control character (the name goes into the model's prompt).
_SPEAKER_RULE = dict(max_length=MAX_TAG_CHARS, pattern=r"^\s*[^\x00-\x1f]*\s*$")

# JSON Schema (ECMA) and pydantic's Rust regex read "$" as the end of the string, unlike Python's re
# (which the voice store therefore uses with fullmatch); a trailing newline does not pass either.
VoiceId = Annotated[str, Field(pattern=f"^{VOICE_ID_PATTERN}$",
                               description="a saved voice id (letters, digits, _ . -)")]
# The one type rule (speechlm.params.api_types): no strings for numbers or booleans, no booleans for
# numbers, 19.0 is the integer 19. Every number or boolean field of a request body uses these.
Int, Float, Bool = api_type("int"), api_type("float"), api_type("bool")
OptionalInt, OptionalFloat = api_type("int", nullable=True), api_type("float", nullable=True)
# The request fields that are synthesis parameters, by their speechlm.params name.
SAMPLING_FIELDS = ("max_new_tokens", "chunk_length", "top_p", "repetition_penalty", "temperature", "speaker",
                   "num_samples", "speed", "noise_scale")
Tag = Annotated[str, Field(max_length=MAX_TAG_CHARS)]
_EMOTION_HELP = ("pick the clips of the saved voice (or of `references`) tagged with this emotion; 400 when "
                 "none is")


class InlineReference(BaseModel):
    """One reference clip sent with the request (``references``)."""

    model_config = ConfigDict(extra="forbid")

    audio: str = Field(description="base64-encoded audio file (wav/flac/mp3/ogg)")
    text: str = Field(description="what the clip says")
    emotion: Optional[Tag] = Field(None, description="optional emotion tag (see the request's `emotion`)")


class InvokeRequest(BaseModel):
    """Body of ``POST /v1/invoke`` — the Fish Speech v1.1.2 fields (``text`` is required here)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "Hello world.", "format": "wav", "streaming": False}]})

    text: str = Field(description="text to speak")
    reference_text: Optional[str] = Field(None, description="transcript of reference_audio; without it the clip "
                                                             "gives only the timbre (give it for full cloning)")
    reference_audio: Optional[str] = Field(None, description="base64-encoded audio file (wav/flac/mp3/ogg)")
    reference_id: Optional[VoiceId] = Field(None, description="a saved voice id (see /v1/references): all its "
                                                              "clips prompt the model")
    references: Optional[list[InlineReference]] = Field(
        None, min_length=1, max_length=MAX_CLIPS, description="several reference clips at once (instead of "
        "reference_audio / reference_id); all prompt the model, the first gives the timbre")
    emotion: Optional[Tag] = Field(None, description=_EMOTION_HELP)
    ref_json: Optional[str] = Field(None, description="refused (400): v1.1.2 read reference files from a server "
                                                      "folder; save the voice with POST /v1/references and pass "
                                                      "reference_id")
    ref_base: Optional[str] = Field(None, description="refused (400), as ref_json")
    max_new_tokens: Int = api_field("max_new_tokens")
    chunk_length: Int = api_field("chunk_length")
    top_p: Float = api_field("top_p")
    repetition_penalty: Float = api_field("repetition_penalty")
    temperature: Float = api_field("temperature")
    speaker: Optional[str] = api_field("speaker", **_SPEAKER_RULE)
    speed: Float = api_field("speed")
    noise_scale: Float = api_field("noise_scale")
    format: Literal["wav", "mp3", "flac", "opus", "aac", "pcm"] = Field(
        "wav", description="opus: Ogg Opus at 48 kHz; aac: ADTS; pcm: raw 16-bit little-endian mono at 44.1 kHz")
    streaming: Bool = Field(False, description="send the audio while it is generated (wav: a header of unknown "
                                               "length, then 16-bit PCM; other formats: encoded incrementally)")
    # The API's seed defaults to null (a random take per request, as the original's API), not the CLI's.
    seed: OptionalInt = api_field("seed", None)
    num_samples: Int = api_field("num_samples")


SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


class VoiceRef(BaseModel):
    """OpenAI's custom-voice object form: ``{"id": "<saved voice id>"}``."""

    id: Annotated[str, Field(max_length=64)]


class SpeechRequest(BaseModel):
    """Body of ``POST /v1/audio/speech`` (OpenAI-compatible; ``model`` is accepted and not used, ``instructions``
    is refused; ``seed``, ``speaker`` and ``emotion`` are our extensions, OpenAI SDK: ``extra_body``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"model": "speechlm", "input": "Hello world.", "voice": "alloy", "response_format": "wav"}]})

    model: Optional[str] = Field(None, description="accepted, any value (the OpenAI SDK requires it); the server "
                                                   "has one model")
    input: str = Field(description="text to speak")
    voice: Optional[Union[Annotated[str, Field(max_length=64)], VoiceRef]] = Field(
        None, description="a saved voice id (or {\"id\": ...}); OpenAI's built-in names (alloy, …) mean the "
                          "default voice unless saved under that name")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = Field(
        "mp3", description="pcm is raw 16-bit little-endian mono at 24 kHz, as OpenAI's (sample_rate=44100 for the "
                           "model's rate); opus is Ogg Opus at 48 kHz; aac is ADTS; the others at 44.1 kHz")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="audio: the file streamed as it is made; sse: speech.audio.delta/done events")
    speed: OptionalFloat = api_field("speed", None)  # null = the server's default (1.0 unless configured)
    instructions: Optional[str] = Field(None, description="not supported (this model takes no style prompt): a "
                                                          "non-empty value is refused with 400")
    # extensions (OpenAI SDK: extra_body={'seed': 1, 'speaker': 'alice'}); seed null = random
    seed: OptionalInt = api_field("seed", None)
    speaker: Optional[str] = api_field("speaker", **_SPEAKER_RULE)
    emotion: Optional[Tag] = Field(None, description=_EMOTION_HELP.replace(" (or of `references`)", ""))
    sample_rate: Optional[Literal[OUTPUT_RATES]] = Field(
        None, description="output rate in Hz (not for opus, always 48 kHz); null = 24000 for pcm (OpenAI's), "
                          "the model's 44100 for the other formats")

    @property
    def voice_id(self) -> str | None:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice
