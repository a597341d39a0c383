"""Official checkpoint registry and name → local file resolution.

A ``checkpoints.<slot>`` value is resolved as:
1. an existing local path (always wins);
2. ``<checkpoint_dir>/<file>`` (the original's ``checkpoints/`` folder);
3. a registry name or file name, fetched through ``huggingface_hub`` (its cache, ``HF_HUB_OFFLINE``,
   ``HF_ENDPOINT`` and tokens are respected).
Anything else is one :class:`CheckpointError` naming the file, where it was looked for, and the
command that fetches it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from speechlm.errors import CheckpointError

HUB_REPO = "fishaudio/fish-speech-1"


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One file of the official release."""

    name: str  # registry name (also accepted: the file name)
    filename: str
    slot: str  # which ``checkpoints.<slot>`` it fills
    config: str  # the model config it needs (``group=option``)
    repo: str = HUB_REPO
    sha256: str | None = None  # unknown here: the hub is unreachable, so no digest was recorded


REGISTRY: dict[str, OfficialCheckpoint] = {
    c.name: c
    for c in [
        OfficialCheckpoint("text2semantic-medium", "text2semantic-sft-medium-v1.1-4k.pth", "text2semantic",
                           "model/text2semantic=dual_ar_2_codebook_medium"),
        OfficialCheckpoint("text2semantic-large", "text2semantic-sft-large-v1.1-4k.pth", "text2semantic",
                           "model/text2semantic=dual_ar_2_codebook_large"),
        OfficialCheckpoint("vqgan", "vq-gan-group-fsq-2x1024.pth", "vqgan", "model/vqgan=group_fsq_2x1024"),
        OfficialCheckpoint("vits", "vits_decoder_v1.1.ckpt", "vits", "model/vits=vits_decoder_v1_1"),
        OfficialCheckpoint("firefly", "firefly-gan-base-generator.ckpt", "firefly", "model/firefly=firefly_gan_base"),
    ]
}

# Who reads the hints of these errors: a Python caller (``TTS.from_pretrained``, the default) or the command
# line (``speechlm.cli`` switches it), so a hint names the argument the reader can actually pass.
_HINTS_FOR = {"reader": "python"}


def hints_for(reader: str) -> str:
    """``"cli"`` or ``"python"``: the interface the checkpoint errors' hints are worded for; returns the previous."""
    previous, _HINTS_FOR["reader"] = _HINTS_FOR["reader"], reader
    return previous


def pass_path(slot: str) -> str:
    """How the reader passes a file for ``slot``: ``checkpoints.vits=PATH`` or ``from_pretrained(vits=...)``."""
    if _HINTS_FOR["reader"] == "cli":
        return f"checkpoints.{slot}=PATH"
    return f"TTS.from_pretrained(..., {slot}='path/to/file')"


DEFAULT_FOR_SLOT = {"text2semantic": "text2semantic-medium", "vqgan": "vqgan", "vits": "vits", "firefly": "firefly"}


def lookup(name_or_file: str) -> OfficialCheckpoint | None:
    """Registry entry by registry name or official file name."""
    if name_or_file in REGISTRY:
        return REGISTRY[name_or_file]
    for c in REGISTRY.values():
        if c.filename == name_or_file:
            return c
    return None


def preset_overrides(files: dict[str, str], presets: dict[str, str] | None = None,
                     explicit: set[str] = frozenset()) -> list[str]:
    """``model/<area>=<preset>`` overrides for checkpoint values that name official files.

    Official files carry the preset they need, so nobody names one for them; ``presets`` (area →
    preset) wins, and areas in ``explicit`` (already chosen by the user) are left alone.
    """
    out = {area: preset for area, preset in (presets or {}).items()}
    for slot, value in files.items():
        entry = lookup(str(value)) or lookup(Path(str(value)).name)
        area = f"model/{slot}"
        if entry is not None and slot not in out and area not in explicit:
            out[slot] = entry.config.split("=", 1)[1]
    return [f"model/{area}={preset}" for area, preset in out.items()]


def download(entry: OfficialCheckpoint, *, local_files_only: bool = False, explicit: bool = False,
             checkpoint_dir: str | os.PathLike | None = None) -> Path:
    """Fetch one official file with ``huggingface_hub`` (cached); returns the local path.

    ``explicit``: the user asked for this download (``task=download``), so a failure is worded as one.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(entry.repo, entry.filename, local_files_only=local_files_only))
    except LocalEntryNotFoundError:
        if explicit:
            from huggingface_hub import constants

            raise CheckpointError(
                f"could not download '{entry.filename}' from {constants.ENDPOINT} (repo {entry.repo}): the hub is "
                "offline (HF_HUB_OFFLINE=1) or unreachable",
                f"check the network or HF_ENDPOINT, or copy the file here and pass {pass_path(entry.slot)}",
            ) from None
        raise _missing(entry, checkpoint_dir, hub_off=local_files_only) from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"could not fetch '{entry.filename}' from the hub repo '{entry.repo}' ({first})",
            "check the network / HF_ENDPOINT / HF_TOKEN, or download it by hand and pass its path: "
            f"{pass_path(entry.slot)}",
        ) from None


def _missing(entry: OfficialCheckpoint, checkpoint_dir: str | os.PathLike | None, hub_off: bool) -> CheckpointError:
    where = f"not in '{checkpoint_dir}', " if checkpoint_dir is not None else ""
    why = ("downloads are off (hub=false, or local files were named)" if hub_off else
           "the hub is offline (HF_HUB_OFFLINE) or unreachable")
    return CheckpointError(
        f"{entry.slot} checkpoint '{entry.filename}' not found: not a local path, {where}"
        f"not in the Hugging Face cache, and {why}",
        f"put the file there, pass its path ({pass_path(entry.slot)}), or fetch it with `speechlm task=download` "
        f"(hub repo {entry.repo})",
    )


def resolve_checkpoint(value: str | os.PathLike | None, slot: str, *, checkpoint_dir: str | os.PathLike = "checkpoints",
                       allow_download: bool = True) -> Path:
    """Resolve a ``checkpoints.<slot>`` value to an existing local file (see module doc)."""
    if value is None or str(value).strip() == "":
        value = REGISTRY[DEFAULT_FOR_SLOT[slot]].filename
    value = str(value)
    p = Path(value).expanduser()
    if p.is_file():
        return p
    if p.exists():
        raise CheckpointError(f"checkpoints.{slot}='{value}' is a folder, not a file", "point to the checkpoint file")
    entry = lookup(value) or lookup(p.name)
    for name in {p.name, entry.filename if entry else p.name}:
        in_dir = Path(checkpoint_dir) / name
        if in_dir.is_file():
            return in_dir
    if entry is None:
        raise CheckpointError(
            f"checkpoints.{slot}='{value}' is neither an existing file nor an official checkpoint name",
            "pass an existing path, or one of: " + ", ".join(sorted(REGISTRY)),
        )
    return download(entry, local_files_only=not allow_download, checkpoint_dir=checkpoint_dir)
