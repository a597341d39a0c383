"""The package stands on its own: a built wheel installed non-editable runs a task from any folder.

The wheel is built from a copy of the source (``pip wheel --no-build-isolation``: no network), installed
with ``--no-deps`` into a fresh venv that sees the test venv's packages (torch & co.) through a ``.pth``
path entry, and ``speechlm task=generate`` runs on the reference tiny text2semantic fixture from a folder
outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
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
    # reuse this venv's dependencies (torch, hydra, ...) without its editable speechlm (.pth files of an
    # added path entry are not processed, so the editable finder of the test venv stays out)
    (site / "_test_venv_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheels[0]],
             cwd=work)
    assert r.returncode == 0, r.stderr[-2000:]
    return env_dir


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


def test_train_console_script_is_installed(wheel_venv, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = _run([wheel_venv / "bin" / "speechlm-train", "--help"], tmp_path, env=env)
    assert r.returncode == 0 and "speechlm-train" in r.stdout
