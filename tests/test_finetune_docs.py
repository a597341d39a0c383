"""``docs/finetune.md`` runs as written: prepare → encode → train → resume → merge → VITS → infer on tiny models.

The page marks each ``bash`` block with an HTML comment right before it:

* ``<!-- test: run; add: K=V ...; creates: PATH ...; expect: TEXT -->``: every command of the block is run,
  in page order, in one scratch folder (a raw data set is written there first, see :func:`make_raw`).
  ``add:`` overrides are appended to each command (replacing the same key); afterwards each ``creates:``
  path must exist and the ``expect:`` text must be in the command's output.
* ``<!-- test: compose -->``: GPU / multi-node commands, composed by the CLI (every key checked, the
  strategy built) but not run.

The tiny mapping (also described at the end of the page): ``python infer.py|train.py`` → this interpreter and
checkout; ``model/<area>=tiny`` for the four areas and ``checkpoints.<slot>=<tiny random file>`` for every slot
the command does not set; ``device=cpu`` (``infer.py``) or ``trainer.accelerator=cpu
trainer.enable_progress_bar=false`` (``train.py``). The walk-through takes ~90 s on 2 cores.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from speechlm.config import quote
from speechlm.data.text2semantic import TextToSemanticData
from speechlm.errors import InputError
from speechlm.testing.tiny import make_tiny_checkpoints
from tests.finetune_data import make_two_speakers

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "finetune.md"
AREAS = ("text2semantic", "vqgan", "firefly", "vits")
BLOCK_RE = re.compile(r"^<!--\s*test:\s*(?P<marker>[^\n]*?)\s*-->\n```bash\n(?P<body>.*?)^```", re.S | re.M)
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# What the raw folder holds: (speaker, path, transcript file or None, transcript).
RAW = [("alice", "0001.wav", ".lab", "Hello, this is Alice."), ("alice", "0002.flac", ".lab", "Good morning."),
       ("alice", "day2/0003.wav", ".txt", "See you soon."), ("bob", "0001.wav", ".lab", "Bob speaking here."),
       ("bob", "0002.wav", ".lab", "It is raining."), ("bob", "0003.flac", ".lab", "Thanks a lot.")]


@dataclass
class Block:
    """One marked ``bash`` block of the page."""

    mode: str
    line: int
    commands: list[list[str]]
    add: list[str] = field(default_factory=list)
    creates: list[str] = field(default_factory=list)
    expect: list[str] = field(default_factory=list)


def split_commands(body: str) -> list[list[str]]:
    """The commands of a block body: ``\\``-continued lines joined, ``#`` comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", body)
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def parse_marker(marker: str) -> dict[str, list[str]]:
    """``run; add: a=1 b=2; creates: x`` → ``{"mode": ["run"], "add": ["a=1", "b=2"], "creates": ["x"]}``."""
    mode, *parts = [p.strip() for p in marker.split(";")]
    out = {"mode": [mode]}
    for part in parts:
        key, _, value = part.partition(":")
        out[key.strip()] = [value.strip()] if key.strip() == "expect" else value.split()
    return out


def doc_blocks(path: Path = DOC) -> list[Block]:
    """Every marked block, in page order."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for m in BLOCK_RE.finditer(text):
        spec = parse_marker(m.group("marker"))
        blocks.append(Block(spec["mode"][0], text.count("\n", 0, m.start()) + 1, split_commands(m.group("body")),
                            spec.get("add", []), spec.get("creates", []), spec.get("expect", [])))
    return blocks


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def with_overrides(args: list[str], extra: list[str]) -> list[str]:
    """``args`` with each of ``extra`` replacing the override of the same key, or appended."""
    out = list(args)
    for o in extra:
        same = [i for i, a in enumerate(out) if _key(a) == _key(o)]
        if same:
            out[same[0]] = o
        else:
            out.append(o)
    return out


def tiny_args(script: str, args: list[str], tiny: dict[str, Path]) -> list[str]:
    """The documented tiny mapping: tiny presets, tiny checkpoints for the slots not set, CPU."""
    keys = {_key(a) for a in args}
    out = list(args) + [f"model/{area}=tiny" for area in AREAS]
    out += [f"checkpoints.{slot}={quote(str(p))}" for slot, p in tiny.items() if f"checkpoints.{slot}" not in keys]
    if script == "infer.py":
        return out + ["device=cpu"]
    return out + ["trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]


def entry_point(words: list[str]) -> tuple[str, list[str]]:
    """``(infer.py | train.py, overrides)`` of a documented command; environment and launcher words dropped."""
    for i, word in enumerate(words):
        if Path(word).name in ("infer.py", "train.py") and not ENV_ASSIGNMENT.match(word):
            return Path(word).name, words[i + 1:]
    raise AssertionError(f"no infer.py / train.py in {shlex.join(words)}")


def speech_like(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Noise "syllables" (4 Hz envelope) between 0.3 s of silence on each side."""
    t = np.arange(int(seconds * sr)) / sr
    voiced = 0.1 * rng.standard_normal(t.size) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    pad = np.zeros(int(0.3 * sr))
    return np.concatenate([pad, voiced, pad]).astype(np.float32)


def make_raw(root: Path) -> Path:
    """``root/<speaker>/...`` recordings with transcripts (:data:`RAW`) and a silent ``bob/silent.wav``."""
    rng = np.random.default_rng(0)
    for i, (speaker, rel, suffix, text) in enumerate(RAW):
        path = root / speaker / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sr = (44100, 22050, 48000)[i % 3]
        sf.write(path, speech_like(1.5 + 0.1 * i, sr, rng), sr)
        path.with_suffix(suffix).write_text(text, encoding="utf-8")
    sf.write(root / "bob" / "silent.wav", np.zeros(44100, np.float32), 44100)
    (root / "bob" / "silent.lab").write_text("Nothing at all.", encoding="utf-8")
    return root


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(block: Block, words: list[str], cwd: Path, tiny: dict[str, Path]) -> str:
    assert words[0] == "python", f"line {block.line}: commands start with python: {shlex.join(words)}"
    script, args = entry_point(words)
    args = with_overrides(tiny_args(script, args, tiny), block.add)
    env = {**os.environ, "COLUMNS": "240", "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src")}
    start, cpu = time.perf_counter(), _child_cpu()
    r = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
    print(f"{time.perf_counter() - start:6.1f} s wall {_child_cpu() - cpu:6.1f} s cpu  {shlex.join(words)[:90]}")
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"docs/finetune.md line {block.line}: {shlex.join(words)}\n{out[-3000:]}"
    return out


def test_every_bash_block_is_marked():
    text = DOC.read_text(encoding="utf-8")
    blocks = doc_blocks()
    assert len(blocks) == text.count("```bash"), "a ```bash block of docs/finetune.md has no <!-- test: --> marker"
    assert {b.mode for b in blocks} == {"run", "compose"}
    assert all(b.commands for b in blocks)
    assert "resume_from" not in text


def test_marker_and_mapping_helpers():
    assert split_commands("python a.py x=1 \\\n    y='two words'  # note\n\n# only a comment\npython b.py\n") == [
        ["python", "a.py", "x=1", "y=two words"], ["python", "b.py"]]
    spec = parse_marker("run; add: a=1 +b=2; creates: x y; expect: resuming from")
    assert spec == {"mode": ["run"], "add": ["a=1", "+b=2"], "creates": ["x", "y"], "expect": ["resuming from"]}
    assert with_overrides(["a=1", "c=3"], ["a=9", "+b=2"]) == ["a=9", "c=3", "+b=2"]
    tiny = {"text2semantic": Path("t.pth"), "vits": Path("v.ckpt")}
    args = tiny_args("infer.py", ["checkpoints.vits=mine.ckpt"], tiny)
    assert "checkpoints.text2semantic='t.pth'" in args and "checkpoints.vits='v.ckpt'" not in args
    assert entry_point(["MASTER_ADDR=h", "NODE_RANK=1", "torchrun", "--nnodes=2", "train.py", "x=1"]) == (
        "train.py", ["x=1"])


def test_gpu_and_multinode_commands_compose():
    """The shown-only commands: the CLI composes them (unknown keys refused) and their strategy builds."""
    from speechlm.cli import main

    built = []

    def check(cfg) -> int:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        strategy = resolved["trainer"]["strategy"]
        built.append(instantiate(strategy, _convert_="partial") if isinstance(strategy, dict) else strategy)
        return 0

    commands = [w for b in doc_blocks() if b.mode == "compose" for w in b.commands]
    assert len(commands) >= 8
    for words in commands:
        script, args = entry_point(words)
        assert main(args, default_config=script.removesuffix(".py"), dispatch=check) == 0, shlex.join(words)
    kinds = {type(s).__name__ if not isinstance(s, str) else s for s in built}
    assert {"DDPStrategy", "FSDPStrategy", "ddp"} <= kinds, kinds


def test_text2semantic_data_uses_the_prepare_split(tmp_path):
    root = make_two_speakers(tmp_path / "data", per_speaker=4)
    train = ["alice/u0.wav", "alice/u1.wav", "alice/u2.wav", "bob/u0.wav", "bob/u1.wav", "bob/u3.wav"]
    (root / "train_filelist.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (root / "val_filelist.txt").write_text("alice/u3.wav\nbob/u2.wav\n", encoding="utf-8")

    def split(**kw) -> tuple[list[str], list[str]]:
        dm = TextToSemanticData(str(root), codebook_size=1032, **kw)
        dm.setup()
        return tuple([u.codes.relative_to(root).with_suffix(".wav").as_posix() for u in ds.items]
                     for ds in (dm.train_set, dm.val_set))

    listed_train, listed_val = split()
    assert listed_train == train and listed_val == ["alice/u3.wav", "bob/u2.wav"]
    dm = TextToSemanticData(str(root), codebook_size=1032)
    dm.setup()
    assert [u.speaker for u in dm.val_set.items] == ["alice", "bob"] and dm.val_set.items[0].text == "Where is it?"
    own_train, own_val = split(use_filelists=False, val_fraction=0.25)  # the seeded split of the whole folder
    assert len(own_train) == 6 and len(own_val) == 2 and (own_train, own_val) != (listed_train, listed_val)

    (root / "val_filelist.txt").write_text("", encoding="utf-8")
    assert split() == (train, train)  # one clip prepared: validate on the training clips
    (root / "val_filelist.txt").unlink()
    assert len(sum(split(val_fraction=0.25), [])) == 8  # one list missing: the folder is split
    (root / "val_filelist.txt").write_text("alice/u3.wav\ncarol/u9.wav\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"'carol/u9.wav' of val_filelist.txt has no .npy.*task=encode"):
        split()


def test_walkthrough_runs_as_written(tmp_path):
    tiny = make_tiny_checkpoints(tmp_path / "tiny")
    work = tmp_path / "work"
    make_raw(work / "data" / "raw")
    runs = [b for b in doc_blocks() if b.mode == "run"]
    assert len(runs) >= 7
    for block in runs:
        for words in block.commands:
            out = _run(block, words, work, tiny)
            for text in block.expect:
                assert text in out, f"line {block.line}: '{text}' not in the output of {shlex.join(words)}\n{out[-3000:]}"
        for rel in block.creates:
            assert (work / rel).exists(), f"line {block.line}: {rel} was not created"

    data = work / "data" / "my_voice"
    lists = [(data / n).read_text().split() for n in ("train_filelist.txt", "val_filelist.txt")]
    assert sorted(sum(lists, [])) == sorted(f"{s}/{r.replace('/', '_')}".rsplit(".", 1)[0] + ".wav"
                                            for s, r, _, _ in RAW)
    ckpts = work / "runs" / "t2s" / "checkpoints"
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"] == 6  # resumed from step 4
    merged = torch.load(work / "checkpoints" / "alice-t2s.pth", weights_only=True)
    assert merged and all(k.startswith("model.") for k in merged)
    audio, sr = sf.read(work / "alice.wav")
    assert sr == 44100 and audio.size > 0 and np.isfinite(audio).all()
    codes = np.load(work / "codes" / "codes_0.npy")
    assert codes.ndim == 2 and codes.shape[0] == 2
