"""``python infer.py task=prepare input=RAW output=DATA``: raw recordings → the fine-tuning layout.

``RAW/<speaker>/<any>/<name>.<audio>`` (+ optional ``<name>.lab``/``.txt``) becomes
``DATA/<speaker>/<name>.wav`` (44.1 kHz mono, loudness-normalised, trimmed, padded), ``<name>.lab`` and
``<name>.npy`` (semantic codes, batched through the VQGAN of ``checkpoints.vqgan``), plus
``train_filelist.txt`` / ``val_filelist.txt`` (a seeded split) and ``prepare_summary.json``. The steps
follow the original's fine-tuning guide (``fap loudness-norm``, ``tools/smart_pad.py``,
``tools/whisper_asr.py``, ``tools/vqgan/extract_vq.py``); see :mod:`speechlm.data.prepare`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from speechlm.audio.io import MODEL_SAMPLE_RATE, save_audio
from speechlm.checkpoints.registry import resolve_checkpoint
from speechlm.data.prepare.asr import build_asr
from speechlm.data.prepare.codes import encode_clips
from speechlm.data.prepare.folder import Collected, PrepareOptions, collect, split_names
from speechlm.errors import InputError
from speechlm.utils.device import resolve_device
from speechlm.utils.io import atomic_path, ensure_writable_dir, save_npy_atomic

log = logging.getLogger(__name__)
# task keys recorded in prepare_summary.json beside the PrepareOptions
_RECORDED = ("input", "asr", "asr_model", "asr_language", "encode", "encode_batch_size", "val_fraction")


def options(cfg: DictConfig) -> PrepareOptions:
    """The :class:`PrepareOptions` of the task keys."""
    pad = cfg.tail_pad
    return PrepareOptions(loudness=cfg.loudness, peak=float(cfg.peak), silence_db=float(cfg.silence_db),
                          keep_silence=float(cfg.keep_silence), tail_pad=tuple(pad) if pad else None,
                          min_duration=float(cfg.min_duration), max_duration=float(cfg.max_duration),
                          split_long=bool(cfg.split_long), min_split_silence=float(cfg.min_split_silence),
                          transcripts=tuple(cfg.transcripts), require_transcript=bool(cfg.require_transcript),
                          seed=int(cfg.seed))


def _folders(cfg: DictConfig) -> tuple[Path, Path]:
    for key in ("input", "output"):
        if not cfg.get(key) or not str(cfg[key]).strip():
            raise InputError(f"{key} is not set", "pass input=<raw folder> output=<data folder>", field=key)
    src, dst = Path(str(cfg.input)).resolve(), Path(str(cfg.output)).resolve()
    if not src.is_dir():
        raise InputError(f"input '{cfg.input}' is not a folder", "pass input=<folder of <speaker>/ sub-folders>",
                         field="input")
    if dst == src or src in dst.parents:
        raise InputError(f"output '{cfg.output}' lies inside input '{cfg.input}'",
                         "write the prepared data to a folder outside the raw one", field="output")
    return src, ensure_writable_dir(dst, "output")


def _load_codec(cfg: DictConfig):
    from speechlm.stages.codec import VQGANCodec

    path = resolve_checkpoint(cfg.checkpoints.vqgan, "vqgan", checkpoint_dir=cfg.checkpoint_dir)
    device = resolve_device(cfg.device)
    log.info("vqgan: %s on %s", path, device)
    return VQGANCodec.from_config(cfg.model.vqgan, path, device=device, dtype=torch.float32)


def _write(found: Collected, dst: Path, codec, batch_size: int) -> None:
    for clip in found.clips:
        save_audio(dst / clip.rel, clip.audio, MODEL_SAMPLE_RATE)
        if clip.text:
            with atomic_path(dst / clip.rel.with_suffix(".lab")) as tmp:
                tmp.write_text(clip.text + "\n", encoding="utf-8")
    if codec is not None:
        codes = encode_clips(codec, [c.audio for c in found.clips], batch_size)
        for clip, c in zip(found.clips, codes):
            save_npy_atomic(dst / clip.rel.with_suffix(".npy"), c)


def summarize(found: Collected, train: list[str], val: list[str]) -> dict:
    """Speakers (clips, hours), totals, the rejected files with their reasons, and the split sizes."""
    speakers: dict[str, dict] = {}
    for c in found.clips:
        s = speakers.setdefault(c.speaker, {"clips": 0, "hours": 0.0})
        s["clips"] += 1
        s["hours"] += len(c.audio) / MODEL_SAMPLE_RATE / 3600
    return {"raw_files": found.raw_files, "clips": len(found.clips),
            "hours": sum(s["hours"] for s in speakers.values()), "speakers": speakers,
            "train": len(train), "val": len(val),
            "rejected": [{"file": r.source, "reason": r.reason} for r in found.rejected]}


def report_lines(summary: dict) -> list[str]:
    lines = [f"prepared {summary['clips']} clip(s), {summary['hours'] * 60:.2f} min, from {summary['raw_files']} "
             f"raw file(s); {len(summary['rejected'])} rejected; split {summary['train']} train / {summary['val']} val"]
    lines += [f"  speaker {name}: {s['clips']} clip(s), {s['hours'] * 60:.2f} min"
              for name, s in sorted(summary["speakers"].items())]
    lines += [f"  rejected {r['file']}: {r['reason']}" for r in summary["rejected"]]
    return lines


def run(cfg: DictConfig) -> int:
    src, dst = _folders(cfg)
    opts = options(cfg)
    asr = build_asr(cfg.asr, cfg.asr_model, str(resolve_device(cfg.device).type), cfg.asr_language)
    codec = _load_codec(cfg) if cfg.encode else None  # fail on a missing checkpoint before any work
    start = time.perf_counter()
    found = collect(src, opts, asr)
    if not found.clips:
        first = "; ".join(f"{r.source}: {r.reason}" for r in found.rejected[:3]) or "no audio files"
        raise InputError(f"no usable clip under '{cfg.input}' ({found.raw_files} file(s): {first})",
                         "see the layout in docs/finetune.md (RAW/<speaker>/<name>.wav + <name>.lab)", field="input")
    _write(found, dst, codec, int(cfg.encode_batch_size))
    train, val = split_names([c.rel.as_posix() for c in found.clips], float(cfg.val_fraction), opts.seed)
    for name, rels in (("train_filelist.txt", train), ("val_filelist.txt", val)):
        with atomic_path(dst / name) as tmp:
            tmp.write_text("".join(f"{r}\n" for r in rels), encoding="utf-8")
    summary = summarize(found, train, val)
    summary["wall_seconds"] = time.perf_counter() - start
    summary["settings"] = asdict(opts) | {k: OmegaConf.to_container(cfg)[k] for k in _RECORDED}
    with atomic_path(dst / "prepare_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print("\n".join(report_lines(summary)))
    return 0
