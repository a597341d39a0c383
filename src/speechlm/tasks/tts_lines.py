"""The input file of batch synthesis (``task=tts input=...``): one request per line, checked before any model loads.

Two forms, told apart by the extension:

* ``lines.txt``: one text per line (blank lines are skipped); outputs are named by line number.
* ``lines.jsonl``: one JSON object per line with ``text`` and optionally ``voice`` (a saved voice id of the
  server's store) or ``reference`` (an audio file, relative to the input file's folder) with
  ``reference_text``, ``seed``, ``speaker`` and ``output`` (a file name inside ``output_dir``, with an audio
  extension).

A line that cannot be used becomes a :class:`BadLine` naming its line number and the reason; the rest go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from speechlm.audio.io import OUTPUT_FORMATS, check_audio_path
from speechlm.errors import InputError, SpeechLMError
from speechlm.params import PARAMS, check_text

TEXT_SUFFIXES = (".txt",)
JSON_SUFFIXES = (".jsonl", ".ndjson")
JSON_KEYS = ("text", "voice", "reference", "reference_text", "seed", "speaker", "output")
_UNSET = object()


@dataclass(frozen=True)
class Line:
    """One request of the batch.

    ``seed`` / ``speaker`` are ``_UNSET`` when the line does not name them (the config's value applies).
    """

    number: int  # 1-based line number in the input file
    text: str
    output: Path  # the file to write (inside output_dir)
    voice: str | None = None
    reference: str | None = None
    reference_text: str | None = None
    seed: object = _UNSET
    speaker: object = _UNSET

    def overrides(self) -> dict:
        """The synthesis parameters this line sets (for ``TTS.synthesize(**overrides)``)."""
        return {k: v for k, v in (("seed", self.seed), ("speaker", self.speaker)) if v is not _UNSET}


@dataclass(frozen=True)
class BadLine:
    number: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.reason}"


def check_input_file(path: str | Path) -> Path:
    """The batch input file, or one :class:`InputError` saying why it cannot be read."""
    p = Path(path)
    if p.suffix.lower() not in TEXT_SUFFIXES + JSON_SUFFIXES:
        raise InputError(f"input='{p}' is neither a .txt nor a .jsonl file",
                         "pass input=lines.txt (one text per line) or input=lines.jsonl", field="input")
    if not p.is_file():
        raise InputError(f"input file '{p}' does not exist" if not p.exists() else f"input '{p}' is not a file",
                         "check the path", field="input")
    try:
        p.read_bytes()[:1]
    except OSError as e:
        raise InputError(f"input file '{p}' cannot be read ({e.strerror})", "check its permissions",
                         field="input") from None
    return p


def _output(value, output_dir: Path, default_format: str) -> Path:
    """``value`` (a relative file name) inside ``output_dir``; refuses absolute paths and ``..``."""
    if not isinstance(value, str) or not value.strip():
        raise InputError("'output' must be a file name", f"e.g. \"output\": \"line_1.{default_format}\"")
    rel = PurePosixPath(value.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise InputError(f"output '{value}' leaves output_dir", "give a file name relative to output_dir")
    return check_audio_path(output_dir / Path(*rel.parts), field="output")


def _json_line(raw: str, number: int, width: int, output_dir: Path, fmt: str) -> dict:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg} at column {e.colno})",
                         "write one JSON object per line, e.g. {\"text\": \"Hello\"}") from None
    if not isinstance(obj, dict):
        raise InputError(f"a JSON {type(obj).__name__}, not an object", "write {\"text\": \"...\", ...}")
    unknown = sorted(set(obj) - set(JSON_KEYS))
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(unknown)}", f"use {', '.join(JSON_KEYS)}")
    if not isinstance(obj.get("text"), str):
        raise InputError("no \"text\" string" if obj.get("text") is None else
                         f"'text' must be a string, not {type(obj['text']).__name__}", "give each line a \"text\"")
    fields: dict = {"text": obj["text"]}
    if obj.get("voice") is not None and obj.get("reference") is not None:
        raise InputError("both 'voice' and 'reference' given", "use one of them")
    for key in ("voice", "reference", "reference_text"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise InputError(f"'{key}' must be a string, not {type(value).__name__}")
        fields[key] = value
    if "seed" in obj:
        fields["seed"] = PARAMS["seed"].check(obj["seed"])
    if "speaker" in obj:
        fields["speaker"] = PARAMS["speaker"].check(obj["speaker"])
    out = obj.get("output")
    fields["output"] = _output(out, output_dir, fmt) if out is not None else \
        output_dir / f"{number:0{width}d}.{fmt}"
    return fields


def read_lines(path: Path, output_dir: Path, fmt: str = "wav", max_text_length: int | None = None,
               check_voice: Callable[[str], None] | None = None,
               check_reference: Callable[[str], None] | None = None) -> tuple[list[Line], list[BadLine]]:
    """Parse and check every line of ``path`` (no model is needed).

    Args:
        path: a ``.txt`` or ``.jsonl`` file (see :func:`check_input_file`).
        output_dir: folder of the outputs; default names are the zero-padded line number + ``.fmt``.
        fmt: extension of default output names (one of :data:`~speechlm.audio.io.OUTPUT_FORMATS`).
        check_voice: raises :class:`SpeechLMError` for a voice id that cannot be used.
        check_reference: raises :class:`SpeechLMError` for a reference audio file that cannot be used.

    Returns:
        The usable lines and the bad ones, each in file order.
    """
    if fmt not in OUTPUT_FORMATS:
        raise InputError(f"output_format='{fmt}' is not one of {', '.join(OUTPUT_FORMATS)}",
                         "use output_format=wav", field="output_format")
    try:
        raw_lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"input file '{path}' is not UTF-8 text (byte {e.start})", "save it as UTF-8",
                         field="input") from None
    width = max(4, len(str(len(raw_lines))))
    as_json = path.suffix.lower() in JSON_SUFFIXES
    good: list[Line] = []
    bad: list[BadLine] = []
    taken: dict[Path, int] = {}
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        try:
            fields = _json_line(raw, number, width, output_dir, fmt) if as_json else \
                {"text": raw.strip(), "output": output_dir / f"{number:0{width}d}.{fmt}"}
            check_text(fields["text"], max_length=max_text_length, hint="give each line a non-empty \"text\"")
            if fields.get("reference"):  # relative to the input file, wherever the command runs
                fields["reference"] = str(path.parent / Path(fields["reference"]).expanduser())
            if fields.get("voice") and check_voice is not None:
                check_voice(fields["voice"])
            if fields.get("reference") and check_reference is not None:
                check_reference(fields["reference"])
            key = fields["output"].resolve()
            if key in taken:
                raise InputError(f"output '{fields['output']}' is also written by line {taken[key]}",
                                 "give every line its own \"output\"")
            taken[key] = number
            good.append(Line(number=number, **fields))
        except SpeechLMError as e:
            bad.append(BadLine(number, str(e)))
    return good, bad
