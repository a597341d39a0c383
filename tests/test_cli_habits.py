"""The Hydra habits on the command line: did-you-mean, ``+key`` refusals, one-line unknown task, ``-m`` sweeps,
``task=X --help``, ``--cfg`` order, a quiet closed pipe, input files checked before any model loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from speechlm.cli import main
from speechlm.testing.tiny import make_tiny_checkpoints, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("args, needle", [
    (["task=tts", "text=Hi", "temprature=0.5"], "did you mean 'temperature'"),
    (["task=tts", "text=Hi", "++temprature=0.5"], "did you mean 'temperature'"),
    (["task=tts", "text=Hi", "+foo=1"], "task=tts has no key 'foo'"),
    (["task=encode", "input=a.wav", "+top_p=0.5"], "task=encode has no key 'top_p'"),
    (["task=tts", "text=Hi", "model.text2semantic.config.dimm=3"], "did you mean 'model.text2semantic.config.dim'"),
    (["task=tsk"], "unknown task 'tsk' — did you mean 'tts'? (tasks: decode, download, encode"),
    (["task=tts", "text=Hi", "temperature=0.3,0.7"], "add -m"),
])
def test_refusals_are_one_line_with_a_suggestion(args, needle, capsys):
    assert main(args) == 2
    assert needle in _err(capsys)


def test_model_fields_may_still_be_added():
    seen = []
    assert main(["task=generate", "text=Hi", "++model.text2semantic.config.max_seq_len=64"],
                dispatch=lambda cfg: seen.append(cfg.model.text2semantic.config.max_seq_len)) == 0
    assert seen == [64]


def test_task_help_lists_keys_with_defaults_and_meaning(capsys):
    assert main(["task=tts", "--help"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines()[1:] if ln.startswith("  ") and "=" in ln.split()[0]}
    assert "temperature=0.7" in lines and "sampling temperature" in lines["temperature=0.7"]
    assert "text=null" in lines and "what to say" in lines["text=null"]    # task key: meaning from its YAML
    assert "output=out.wav" in lines and "top_p=0.7" in lines
    assert "max_seconds=600.0" not in out                                 # another task's key is not listed
    keys = [k.split("=")[0] for k in lines]
    assert keys.index("text") < keys.index("device")                      # the task's own keys first


def test_cfg_prints_user_keys_before_the_model(capsys):
    assert main(["task=tts", "text=Hi", "--cfg"]) == 0
    out = capsys.readouterr().out
    top = [ln.split(":")[0] for ln in out.splitlines() if ln and not ln.startswith(" ")]
    assert top.index("text") < top.index("checkpoints") < top.index("model"), top
    assert top.index("temperature") < top.index("model")


def _cli(args, cwd, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, str(ROOT / "infer.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("args", [["--help"], ["task=tts", "--help"], ["task=tts", "text=Hi", "--cfg"]])
def test_closed_pipe_is_quiet(args, tmp_path):
    p = _cli(args, tmp_path)
    p.stdout.close()  # the reader (`| head`) is gone before anything is written
    err = p.stderr.read()
    assert p.wait(timeout=120) == 0 and err == "", err


def test_input_files_are_checked_before_any_model_loads(tmp_path, capsys, monkeypatch):
    # the checkpoints named here do not exist: a model load would fail on them first
    monkeypatch.chdir(tmp_path)
    for args, key in [(["task=tts", "text=Hi", "reference=missing.wav"], "reference"),
                      (["task=encode", "input=missing.wav"], "input"),
                      (["task=decode", "input=codes.npy"], "input"),
                      (["task=encode", "filelist=list.txt"], "filelist")]:
        assert main([*args, "checkpoints.vqgan=/nowhere/vq.pth", "checkpoints.text2semantic=/nowhere/t.pth"]) == 2
        err = _err(capsys)
        assert f"{key} '" in err and "does not exist" in err, err


def test_multirun_writes_one_output_per_combination(tmp_path, monkeypatch, capsys):
    paths = make_tiny_checkpoints(tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    args = ["-m", "task=tts", "text=Hi", "temperature=0.3,0.7", "seed=1,2", "max_new_tokens=8",
            *[o for o in tiny_overrides(paths, tmp_path / "cache") if not o.startswith("max_new_tokens")]]
    assert main(args) == 0, capsys.readouterr().err
    written = sorted(p.name for p in tmp_path.glob("out*.wav"))
    assert written == ["out_temperature=0.3_seed=1.wav", "out_temperature=0.3_seed=2.wav",
                       "out_temperature=0.7_seed=1.wav", "out_temperature=0.7_seed=2.wav"]
    for name in written:
        audio, sr = sf.read(tmp_path / name)
        assert sr == 44100 and len(audio) > 0
    # different seeds are different takes
    assert sf.read(tmp_path / written[0])[0].tobytes() != sf.read(tmp_path / written[1])[0].tobytes()


def test_missing_extra_is_one_line_naming_it(monkeypatch, capsys):
    import builtins

    from speechlm.extras import MissingExtra, require

    real_import = builtins.__import__

    def no_gradio(name, *args, **kwargs):
        if name.split(".")[0] == "gradio":
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    for mod in [m for m in sys.modules if m.startswith(("gradio", "speechlm.webui"))]:
        monkeypatch.delitem(sys.modules, mod)
    assert main(["task=webui", "checkpoints.text2semantic=/nowhere/t.pth"]) == 2
    err = _err(capsys)
    assert "needs speechlm[webui]" in err and "pip install 'speechlm[webui]'" in err, err
    with pytest.raises(MissingExtra, match=r"speechlm\[speed\]"):
        require("no_such_module_for_speed", "speed")
