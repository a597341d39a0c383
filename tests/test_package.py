"""The package stands on its own: a built wheel installed non-editable runs tasks from any folder, core only.

The wheel is built from a copy of the source (``pip wheel --no-build-isolation``: no network), installed
with ``--no-deps`` into a fresh venv that sees only the wheel's *core* requirements and what they require
(linked from the test venv, found through the installed distributions' metadata) — so no gradio, FastAPI
or Lightning — and ``speechlm task=generate`` / ``task=tts`` run on tiny checkpoints from a folder outside
the checkout. A task that needs an extra says which one in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, timeout=300, env=None):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src-copy"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", work / "dist",
              src], cwd=work)
    assert r.returncode == 0, r.stderr[-2000:]
    wheels = list((work / "dist").glob("speechlm-*.whl"))
    assert len(wheels) == 1
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).stdout.strip())
    # the core requirements (and theirs) only, linked from this venv: a core install without the network
    core = _link_core_distributions(_core_requirements(wheels[0]), work / "core-site")
    (site / "_core_deps.pth").write_text(f"{core}\n")
    r = _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheels[0]],
             cwd=work)
    assert r.returncode == 0, r.stderr[-2000:]
    return env_dir


def _core_requirements(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist lines that belong to no extra."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    reqs = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Requires-Dist:")]
    return [r for r in reqs if "extra ==" not in r]


def _link_core_distributions(requirements: list[str], folder: Path) -> Path:
    """Symlink into ``folder`` every installed distribution the requirements need, transitively."""
    from packaging.requirements import Requirement

    folder.mkdir()
    todo, seen = [Requirement(r) for r in requirements], set()
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        dist = metadata.distribution(req.name)
        todo += [Requirement(r) for r in dist.requires or []]
        root = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            if top.startswith("..") or top.endswith(".pth") or top == "__pycache__" or (folder / top).exists():
                continue
            if (root / top).exists():
                (folder / top).symlink_to(root / top)
    return folder


def _tiny_overrides(reference_dir: Path) -> list[str]:
    fixture = reference_dir / "text2semantic" / "tiny"
    conf = json.loads((fixture / "config.json").read_text())
    cfg = [f"++model.text2semantic.config.{k}={v}" for k, v in conf["constructor_kwargs"].items()]
    cls = {"DualARTransformer": "dual_ar_2_codebook_small", "NaiveTransformer": "naive_2_codebook_small"}
    return [f"model/text2semantic={cls[conf['model_class']]}", *cfg,
            f"checkpoints.text2semantic={fixture / conf['checkpoint']}"]


def test_wheel_installs_and_runs_outside_the_checkout(wheel_venv, reference_dir, tmp_path):
    py, script = wheel_venv / "bin" / "python", wheel_venv / "bin" / "speechlm"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = _run([py, "-c", "import speechlm, speechlm.config as c; print(speechlm.__file__); "
                  "print(c.CONFIG_DIR.is_dir())"], tmp_path, env=env).stdout.split()
    assert where[0].startswith(str(wheel_venv)) and where[1] == "True", where  # the wheel's copy, configs inside
    r = _run([script, "task=generate", "text=Hello from the wheel.", "device=cpu", "max_new_tokens=8",
              "num_samples=2", "output_dir=out", *_tiny_overrides(reference_dir)], tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    for i in range(2):
        codes = np.load(tmp_path / "out" / f"codes_{i}.npy")
        assert codes.ndim == 2 and codes.shape[0] == 2 and codes.dtype == np.int64
    r = _run([script, "task=encode", "input=a.wav", "top_p=0.3"], tmp_path, env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "task=encode has no key 'top_p'" in r.stderr and "max_seconds" in r.stderr


CORE_ONLY_ABSENT = ("gradio", "fastapi", "uvicorn", "lightning", "wandb", "tensorboard", "matplotlib", "pedalboard")


def test_core_wheel_runs_tts_without_the_extras(wheel_venv, tiny_dir, tmp_path):
    from speechlm.testing.tiny import make_tiny_checkpoints, tiny_overrides

    py, script = wheel_venv / "bin" / "python", wheel_venv / "bin" / "speechlm"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = "import importlib.util as u; print([m for m in %r if u.find_spec(m)])" % (CORE_ONLY_ABSENT,)
    assert _run([py, "-c", probe], tmp_path, env=env).stdout.strip() == "[]"  # really a core-only install
    ckpts = tiny_overrides(make_tiny_checkpoints(tiny_dir / "checkpoints"), tmp_path / "cache")  # the session's set
    r = _run([script, "task=tts", "text=Hello from the core wheel.", "max_new_tokens=8", "output=out.wav",
              *[o for o in ckpts if not o.startswith("max_new_tokens")]], tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "out.wav").stat().st_size > 1000
    # a task that needs an extra: one line naming it
    for args, extra in [(["task=webui"], "webui"), (["task=serve"], "serve")]:
        r = _run([script, *args, *ckpts[:8]], tmp_path, env=env)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert len(r.stderr.strip().splitlines()) == 1 and f"pip install 'speechlm[{extra}]'" in r.stderr, r.stderr


def test_wheel_metadata_core_is_light_and_ranged(wheel_venv, tmp_path):
    wheel = next((wheel_venv.parent / "dist").glob("speechlm-*.whl"))
    core = _core_requirements(wheel)
    names = {c.split(">")[0].split("<")[0].split("~")[0].split("=")[0].split(";")[0].strip().lower() for c in core}
    assert not names & {"gradio", "fastapi", "uvicorn", "lightning", "wandb", "tensorboard", "matplotlib", "av"}
    assert {"torch", "hydra-core", "omegaconf", "numpy", "tokenizers", "soundfile", "soxr", "rich",
            "huggingface-hub", "num2words", "cn2an"} <= {n.replace("_", "-") for n in names}
    assert not [c for c in core if "==" in c], core  # ranges; exact pins live in constraints.txt


def test_train_console_script_is_installed(wheel_venv, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = _run([wheel_venv / "bin" / "speechlm-train", "--help"], tmp_path, env=env)
    assert r.returncode == 0 and "speechlm-train" in r.stdout
