"""Every synthesis parameter, once: its default, range and help text.

The CLI (the ``params/*`` config groups registered here and composed into the tasks that use them),
the HTTP API schemas (:func:`api_field`), the web UI controls and the README table all derive from
:data:`PARAMS`; :meth:`SynthesisParams.make` validates a request once and the pipeline trusts the
result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Optional

from speechlm.errors import InputError
from speechlm.stages.decoders.registry import DEFAULT_DECODER, decoder_help, decoder_names

SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class Param:
    """One parameter: ``kind`` is int, float, bool, str or ``choice`` (one of ``choices``)."""

    name: str
    kind: str
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False
    step: float | None = None  # web UI slider step

    @property
    def range_text(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if self.lo is None and self.hi is None:
            return ""
        return f"[{'-inf' if self.lo is None else _num(self.lo)}, {'inf' if self.hi is None else _num(self.hi)}]"

    def check(self, value: Any) -> Any:
        """``value`` converted to the parameter's type, or one :class:`InputError` naming it."""
        if value is None:
            if self.nullable:
                return None
            raise InputError(f"{self.name} must be set", f"pass {self.name}=<value>", field=self.name)
        value = self._convert(value)
        if self.choices and value not in self.choices:
            raise InputError(f"{self.name}='{value}' is not one of {', '.join(self.choices)}",
                             f"use {self.name}={self.choices[0]}", field=self.name)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise InputError(f"{self.name}={value} is out of range {self.range_text}",
                             f"choose {self.name} in {self.range_text}", field=self.name)
        return value

    def _convert(self, value: Any) -> Any:
        bad = InputError(f"{self.name}={value!r} is not {_KIND_WORDS[self.kind]}",
                         f"pass {self.name}=<{_KIND_WORDS[self.kind]}>", field=self.name)
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise bad
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise bad
            return int(value)
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise bad
            return float(value)
        if not isinstance(value, str):
            raise bad
        return value


_KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
               "choice": "a string"}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


PARAMS: dict[str, Param] = {p.name: p for p in [
    Param("num_samples", "int", 1, "independent takes", 1, 16, step=1),
    Param("max_new_tokens", "int", 0, "tokens per segment; 0 = up to the model's context", 0, 100_000, step=8),
    Param("chunk_length", "int", 150, "iterative prompting: characters per text segment (0 = one segment)",
          0, 500, step=8),
    Param("top_p", "float", 0.7, "nucleus sampling (applied before temperature, as the original)", 0.1, 1.0,
          step=0.01),
    Param("temperature", "float", 0.7, "sampling temperature", 0.1, 1.0, step=0.01),
    Param("repetition_penalty", "float", 1.5, "penalty over a 16-token window of each codebook", 0.9, 2.0,
          step=0.01),
    Param("seed", "int", 42, "same inputs + seed + checkpoints + device => identical audio on CPU; "
          "null = unseeded", 0, SEED_MAX, nullable=True),
    Param("speaker", "str", None, "speaker name in the prompt (null = 'assistant', as the original); "
          "use the name you fine-tuned with", nullable=True),
    Param("iterative_prompt", "bool", True, "split long text into chunk_length segments (false: one segment)"),
    Param("decoder", "choice", DEFAULT_DECODER, decoder_help(),
          choices=decoder_names()),
    Param("noise_scale", "float", 0.5, "VITS prior noise (0 = the deterministic mean)", 0.0, 10.0, step=0.05),
    Param("stream_chunk_tokens", "int", 22, "streaming: code columns per audio chunk; the first chunk comes "
          "after this many (21.5 columns = 1 s of speech)", 1, 1000, step=1),
    Param("normalize", "bool", True, "NFKC, accent folding, and numbers, dates, times, money and units "
          "spelled out (English, Chinese) before the original's text cleaning"),
    Param("speed", "float", 1.0, "speaking rate of the output (2 = twice as fast, 0.5 = half); pitch kept "
          "(Rubber Band time stretching)", 0.25, 4.0, step=0.05),
]}

# Pipeline limits (per process, not per request). 0 = no limit for max_text_length.
LIMITS: dict[str, Param] = {p.name: p for p in [
    Param("max_text_length", "int", 10000, "characters of text; longer input is refused (0 = no limit)", 0, None),
    Param("max_reference_seconds", "float", 90.0, "reference audio longer than this is refused", 0.0, None),
    Param("cache_dir", "str", None, "encoded-reference cache (null: ~/.cache/speechlm)", nullable=True),
    Param("max_batch_size", "int", 1, "text2semantic requests whose per-token steps run batched together "
          "(concurrent callers of one pipeline; 1 = one at a time)", 1, 1024),
    Param("prefix_cache_mb", "float", None, "prefix KV cache bound in MiB: reference prompts and earlier "
          "segments are not prefilled again (0 = off; null = sized for the device)", 0.0, None, nullable=True),
]}

# Which parameters each ``params/<group>`` config group holds; a task composes only the groups it uses,
# so an override of a parameter the task does not use is refused.
GROUPS: dict[str, tuple[str, ...]] = {
    "sampling": ("num_samples", "max_new_tokens", "chunk_length", "top_p", "temperature", "repetition_penalty",
                 "speaker", "iterative_prompt"),
    "seed": ("seed",),
    "decoding": ("decoder", "noise_scale"),
    "streaming": ("stream_chunk_tokens",),
    "text": ("normalize",),
    "output": ("speed",),
    "limits": ("max_text_length",),
    "reference": ("max_reference_seconds",),
    "cache": ("cache_dir",),
}
# The whole synthesis surface (task=tts, serve, webui): every group above.
GROUPS["synthesis"] = tuple(n for names in list(GROUPS.values()) for n in names)


@dataclass(frozen=True)
class SynthesisParams:
    """A validated set of synthesis parameters (build it with :meth:`make`)."""

    num_samples: int = PARAMS["num_samples"].default
    max_new_tokens: int = PARAMS["max_new_tokens"].default
    chunk_length: int = PARAMS["chunk_length"].default
    top_p: float = PARAMS["top_p"].default
    temperature: float = PARAMS["temperature"].default
    repetition_penalty: float = PARAMS["repetition_penalty"].default
    seed: Optional[int] = PARAMS["seed"].default
    speaker: Optional[str] = PARAMS["speaker"].default
    iterative_prompt: bool = PARAMS["iterative_prompt"].default
    decoder: str = PARAMS["decoder"].default
    noise_scale: float = PARAMS["noise_scale"].default
    stream_chunk_tokens: int = PARAMS["stream_chunk_tokens"].default
    normalize: bool = PARAMS["normalize"].default
    speed: float = PARAMS["speed"].default

    @classmethod
    def make(cls, values: Mapping[str, Any] | None = None, **overrides: Any) -> "SynthesisParams":
        """Validate ``values`` (+ ``overrides``); missing ones take their default.

        Raises:
            InputError: a value out of range or of the wrong type, or a name that is no parameter.
        """
        merged = {**dict(values or {}), **overrides}
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - names)
        if unknown:
            raise InputError(f"unknown synthesis parameter(s): {', '.join(unknown)}",
                             f"use one of: {', '.join(sorted(names))}", field=unknown[0])
        return cls(**{k: PARAMS[k].check(v) for k, v in merged.items()})

    @classmethod
    def from_config(cls, cfg) -> "SynthesisParams":
        """The parameters a composed config holds (the ``params/*`` groups its task uses)."""
        names = {f.name for f in fields(cls)}
        return cls.make({k: cfg[k] for k in names if k in cfg})

    def replace(self, **changes: Any) -> "SynthesisParams":
        """A validated copy with ``changes`` applied."""
        return SynthesisParams.make(asdict(self), **changes)

    @property
    def sampling(self) -> dict:
        """Keyword arguments of :meth:`SemanticGenerator.generate`."""
        return {k: getattr(self, k) for k in ("max_new_tokens", "chunk_length", "top_p", "temperature",
                                               "repetition_penalty", "iterative_prompt")}


def check_text(text: Any, max_length: int | None = None, *, hint: str | None = None) -> str:
    """The one check of the text to speak: a non-blank string of at most ``max_length`` characters (0/None = any)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("text is empty", hint or "pass the text to speak, e.g. text=\"Hello\"", field="text")
    if max_length and len(text) > max_length:
        raise InputError(f"text is {len(text)} characters, more than max_text_length={max_length}",
                         "split it into smaller parts or raise max_text_length (0 = no limit)", field="text")
    return text


def _whole_number(value: Any) -> Any:
    """The API's integer rule: a JSON number without a fraction (19 or 19.0); never a string or a boolean."""
    from pydantic_core import PydanticCustomError

    if value is None:  # nullable fields: the type says whether None is allowed
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float)
                                                                          and not value.is_integer()):
        raise PydanticCustomError("int_type", "Input should be an integer (a number without a fraction, not a "
                                              "string or a boolean)")
    return int(value)


def api_type(kind: str, nullable: bool = False) -> Any:
    """The pydantic type of an API field of ``kind`` (int, float, bool) under the one type rule.

    No strings for numbers or booleans, no booleans for numbers, and integral floats accepted where
    the JSON Schema says integer (as :meth:`Param.check` does for the CLI and the Python API).
    ``nullable``: ``null`` allowed too (the bounds of the field still apply to numbers).
    """
    from typing import Annotated

    from pydantic import BeforeValidator, Strict

    if kind == "int":
        return Annotated[Optional[int] if nullable else int, BeforeValidator(_whole_number)]
    base = {"float": float, "bool": bool}[kind]
    return Optional[Annotated[base, Strict()]] if nullable else Annotated[base, Strict()]


def api_field(name: str, default: Any = ..., **extra):
    """A pydantic ``Field`` for parameter ``name`` (default, bounds and description from :data:`PARAMS`)."""
    from pydantic import Field

    p = PARAMS[name]
    bounds = {}
    if p.lo is not None:
        bounds["ge"] = p.lo
    if p.hi is not None:
        bounds["le"] = p.hi
    description = p.help + (f"; range {p.range_text}" if p.range_text else "")
    return Field(p.default if default is ... else default, description=description, **bounds, **extra)


def markdown_table(names=tuple(PARAMS)) -> str:
    """The README's parameter table (a test keeps README.md equal to it)."""
    rows = ["| parameter | default | range | meaning |", "|---|---|---|---|"]
    for n in names:
        p = PARAMS[n]
        default = "null" if p.default is None else str(p.default).lower() if p.kind == "bool" else str(p.default)
        rows.append(f"| `{n}` | {default} | {p.range_text} | {p.help} |")
    return "\n".join(rows)


_registered = False


def register_config_groups() -> None:
    """Register the ``params/<group>`` config groups with Hydra's ConfigStore (idempotent)."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, names in GROUPS.items():
        cs.store(group="params", name=group, node={n: {**PARAMS, **LIMITS}[n].default for n in names})
    from speechlm.serving.settings import register_config_groups as register_serve_groups

    register_serve_groups()
    _registered = True
