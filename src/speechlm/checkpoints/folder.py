"""A folder of checkpoint files, recognised by content: which slot each file fills and which preset it needs.

``scan_folder(folder)`` reads every ``.pth``/``.ckpt``/``.pt`` file in the folder (memory-mapped, no
pickled code), tells its slot from its keys (:func:`~speechlm.checkpoints.loading.detect_kind`) and
picks the ``model/<slot>`` preset whose parameter shapes the file holds. A text2semantic file that fits
no preset gets its sizes read from the state dict (layers, width, vocabulary, codebooks) on top of the
preset of the same width. File names do not matter, so a fine-tuned or renamed file is found too.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from speechlm.checkpoints.loading import detect_kind, read_checkpoint, unwrap_lightning
from speechlm.checkpoints.registry import REGISTRY, lookup
from speechlm.errors import CheckpointError

log = logging.getLogger(__name__)

SUFFIXES = (".pth", ".ckpt", ".pt")
# weight-norm magnitudes: (C, 1, 1) whichever way the norm is stored; the direction has the weight's shape
_NORM_PARTS = (".weight_g", ".parametrizations.weight.original0")


@dataclass
class Recognised:
    """One file of the folder: its slot, the preset it fits and any size overrides on top of it."""

    path: Path
    slot: str
    preset: str
    sizes: dict[str, int] = field(default_factory=dict)  # model.<slot>.config.<key> overrides

    def overrides(self) -> list[str]:
        """Hydra overrides selecting this file, its preset and its sizes."""
        from speechlm.config import quote

        out = [f"checkpoints.{self.slot}={quote(str(self.path))}", f"model/{self.slot}={self.preset}"]
        return out + [f"model.{self.slot}.config.{k}={v}" for k, v in self.sizes.items()]


def _shapes(sd) -> Counter:
    """Multiset of tensor shapes, weight-norm magnitudes left out (they are stored in several ways)."""
    return Counter(tuple(v.shape) for k, v in sd.items() if not k.endswith(_NORM_PARTS))


def _preset_shapes(area: str, name: str, sizes: dict[str, int] | None = None) -> Counter:
    return _cached_preset_shapes(area, name, tuple(sorted((sizes or {}).items())))


@functools.lru_cache(maxsize=64)
def _cached_preset_shapes(area: str, name: str, sizes: tuple) -> Counter:
    from speechlm.config import compose_preset
    from speechlm.models.loading import build_on_meta

    model = build_on_meta(compose_preset(area, name, [f"config.{k}={v}" for k, v in sizes]))
    return _shapes(dict(model.named_parameters()))


def _fits(model: Counter, ckpt: Counter) -> bool:
    return all(ckpt[s] >= n for s, n in model.items())


def _match_preset(area: str, ckpt: Counter) -> str | None:
    """The preset whose parameters the file holds (the largest such, so ``small`` never shadows ``medium``)."""
    from speechlm.config import presets

    fitting = []
    for name in presets(area):
        model = _preset_shapes(area, name)
        if _fits(model, ckpt):
            fitting.append((sum(model.values()), name))
    return max(fitting)[1] if fitting else None


def _text2semantic_sizes(sd) -> dict[str, int]:
    """Sizes of a text2semantic model read from its state dict (keys without envelope prefix)."""
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k))}
    fast = {int(m.group(1)) for k in sd if (m := re.match(r"fast_layers\.(\d+)\.", k))}
    vocab, dim = sd["output.weight"].shape
    sizes = {"vocab_size": int(vocab), "dim": int(dim), "n_layer": len(layers)}
    if "fast_output.weight" in sd:
        codebook_size = int(sd["fast_output.weight"].shape[0])
        sizes["n_fast_layer"] = len(fast)
    else:  # naive model: one output head for every codebook
        codebook_size = int(sd["codebook_embeddings.weight"].shape[0]) if "codebook_embeddings.weight" in sd else 0
    if codebook_size:
        sizes["codebook_size"] = codebook_size
        sizes["num_codebooks"] = (int(sd["embeddings.weight"].shape[0]) - int(vocab)) // codebook_size
    return sizes


def _text2semantic_by_size(sd, ckpt: Counter, path: Path) -> tuple[str, dict[str, int]] | None:
    """A preset of the same width (so its head count) with the sizes read from the file, if that fits."""
    from omegaconf import OmegaConf

    from speechlm.config import compose_preset, presets

    stripped = {k[len("model."):] if k.startswith("model.") else k: v for k, v in sd.items()}
    try:
        sizes = _text2semantic_sizes(stripped)
    except (KeyError, IndexError, ValueError, ZeroDivisionError):
        return None
    kind = "naive" if "n_fast_layer" not in sizes else "dual_ar"
    for name in presets("text2semantic"):
        cfg = compose_preset("text2semantic", name)
        same_family = ("Naive" in str(cfg._target_)) == (kind == "naive")
        if same_family and OmegaConf.select(cfg, "config.dim") == sizes["dim"]:
            if _fits(_preset_shapes("text2semantic", name, sizes), ckpt):
                log.info("%s: text2semantic sizes read from the file (%s) on model/text2semantic=%s", path.name,
                         ", ".join(f"{k}={v}" for k, v in sizes.items()), name)
                return name, sizes
    return None


def recognise(path: Path) -> Recognised | None:
    """What ``path`` is, or None when it is no checkpoint of these models."""
    try:
        sd = unwrap_lightning(read_checkpoint(path))
    except CheckpointError:
        return None
    slot = detect_kind(sd)
    if slot is None:
        return None
    ckpt = _shapes(sd)
    preset = _match_preset(slot, ckpt)
    if preset is not None:
        return Recognised(path, slot, preset)
    if slot == "text2semantic":
        found = _text2semantic_by_size(sd, ckpt, path)
        if found is not None:
            return Recognised(path, slot, found[0], found[1])
    raise CheckpointError(f"'{path}' is a {slot} checkpoint whose tensor shapes fit no model/{slot} preset",
                          f"pass presets={{'{slot}': '<preset>'}} to TTS.from_pretrained, or add a preset file "
                          f"under configs/model/{slot}/")


def scan_folder(folder: str | Path) -> dict[str, Recognised]:
    """``{slot: Recognised}`` for the checkpoint files in ``folder`` (not recursive).

    Raises:
        CheckpointError: the folder does not exist, holds none of the files, or two files for one slot
            (an official file name wins over other names).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"'{folder}' is not a folder", "pass the folder that holds the checkpoint files")
    official = {c.filename for c in REGISTRY.values()}
    found: dict[str, list[Recognised]] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in SUFFIXES):
        if path.name.endswith((".int8.pth", ".int4.pth")):
            continue  # quantized copies load with quantize=int8/int4, beside their full-precision source
        r = recognise(path)
        if r is not None:
            found.setdefault(r.slot, []).append(r)
    out = {}
    for slot, rs in found.items():
        named = [r for r in rs if r.path.name in official]
        if len(rs) > 1 and len(named) != 1:
            raise CheckpointError(f"'{folder}' holds {len(rs)} {slot} checkpoints ({', '.join(r.path.name for r in rs)})",
                                  f"pass the one to use as {slot}='path/to/file'")
        out[slot] = named[0] if len(rs) > 1 else rs[0]
    if not out:
        raise CheckpointError(f"'{folder}' holds no checkpoint of these models (.pth/.ckpt/.pt files)",
                              "pass the folder with the downloaded checkpoint files")
    return out


def pretrained_overrides(source: str | Path | None, files: dict, presets: dict[str, str]) -> list[str]:
    """The overrides :meth:`speechlm.TTS.from_pretrained` composes for a folder and/or per-slot files.

    Each file is recognised by content unless ``presets`` names its preset; a file passed per slot wins
    over the folder's. Local files named by the caller mean local only: ``hub=false`` (a slot the folder
    lacks is still taken from ``<folder>/<official name>`` or the Hugging Face cache, never downloaded).
    """
    from speechlm.config import quote

    chosen: dict[str, Recognised | Path] = {}
    if source is not None:
        folder = Path(source).expanduser()
        if folder.is_dir():
            chosen.update(scan_folder(folder))
        elif folder.is_file():
            files = {"text2semantic": folder, **files}
        else:
            raise CheckpointError(f"'{source}' is neither a folder nor a file",
                                  "pass the folder that holds the checkpoint files, or None for the official models")
    for slot, path in files.items():
        chosen[slot] = Path(path).expanduser()
    out = []
    for slot, item in chosen.items():
        if slot in presets:
            path = item.path if isinstance(item, Recognised) else item
            out += [f"checkpoints.{slot}={quote(str(path))}", f"model/{slot}={presets[slot]}"]
            continue
        if isinstance(item, Path) and not item.is_file():
            entry = lookup(item.name)  # an official file not fetched yet: the registry knows its preset
            if entry is None:
                raise CheckpointError(f"{slot}='{item}' is not a file", f"pass the path of the {slot} checkpoint file")
            item = Recognised(item, slot, entry.config.split("=", 1)[1])
        elif isinstance(item, Path):
            item = recognise(item) or Recognised(item, slot, "")
            if item.slot != slot:
                raise CheckpointError(f"{slot}='{item.path}' is a {item.slot} checkpoint, not a {slot} one",
                                      f"pass it as {item.slot}='{item.path}'")
        out += item.overrides() if item.preset else [f"checkpoints.{slot}={quote(str(item.path))}"]
    out += [f"model/{area}={name}" for area, name in presets.items() if area not in chosen]
    if source is not None and Path(source).expanduser().is_dir():
        out.append(f"checkpoint_dir={quote(str(Path(source).expanduser()))}")
    if chosen:
        out.append("hub=false")
    return out
