"""Every command line of the v1.1.2 docs runs here with its original flags.

The command lines of ``docs/en/inference.md``, ``docs/en/finetune.md`` and ``API_FLAGS.txt`` are kept
below as data, verbatim (line continuations joined). Each runs, in the order a user follows the page,
through ``speechlm.cli.main`` (in-process) as ``infer.py task=<task> <its flags>`` (or ``train.py <its
flags>``), in a folder holding the files the docs name (``paimon.wav``, ``data/SPK1/...``): the model
paths are replaced by tiny checkpoints, the model presets by ``tiny``, and the tiny presets plus
``device=cpu`` are appended. A run checks exit code 0 and the files the docs say appear.

Not run, and why (each asserted below):
- ``task=prepare`` (build_dataset.py) is not in this branch yet: the exact overrides of ``translate_args``
  are asserted.
- ``huggingface-cli download``: not our command; each file must be a registry name ``task=download`` fetches.
- ``fap loudness-norm``: fish-audio-preprocess, a separate tool.
- ``create_train_split.py``: not needed: the data modules split by ``data.val_fraction``.
- ``task=serve`` / ``task=webui``: the composed config builds the pipeline they serve (no port is opened).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlm.cli import main
from speechlm.config import compose, quote
from speechlm.flags import translate_args
from speechlm.testing.tiny import make_tiny_checkpoints

INFERENCE_MD = [
    "huggingface-cli download fishaudio/fish-speech-1 vq-gan-group-fsq-2x1024.pth --local-dir checkpoints",
    "huggingface-cli download fishaudio/fish-speech-1 text2semantic-sft-medium-v1.1-4k.pth --local-dir checkpoints",
    "huggingface-cli download fishaudio/fish-speech-1 vits_decoder_v1.1.ckpt --local-dir checkpoints",
    "huggingface-cli download fishaudio/fish-speech-1 firefly-gan-base-generator.ckpt --local-dir checkpoints",
    'python tools/vqgan/inference.py -i "paimon.wav" --checkpoint-path "checkpoints/vq-gan-group-fsq-2x1024.pth"',
    'python tools/llama/generate.py --text "The text you want to convert" --prompt-text "Your reference text" '
    '--prompt-tokens "fake.npy" --config-name dual_ar_2_codebook_medium '
    '--checkpoint-path "checkpoints/text2semantic-sft-medium-v1.1-4k.pth" --num-samples 2 --compile',
    "python tools/vits_decoder/inference.py --checkpoint-path checkpoints/vits_decoder_v1.1.ckpt "
    '-i codes_0.npy -r ref.wav --text "The text you want to generate"',
    'python tools/vqgan/inference.py -i "codes_0.npy" --checkpoint-path "checkpoints/vq-gan-group-fsq-2x1024.pth"',
    'python -m tools.api --listen 0.0.0.0:8000 --llama-checkpoint-path "checkpoints/text2semantic-sft-medium-v1.1-4k.pth" '
    '--llama-config-name dual_ar_2_codebook_medium --decoder-checkpoint-path "checkpoints/vq-gan-group-fsq-2x1024.pth" '
    "--decoder-config-name vqgan_pretrain",
    'python -m tools.webui --llama-checkpoint-path "checkpoints/text2semantic-sft-medium-v1.1-4k.pth" '
    '--llama-config-name dual_ar_2_codebook_medium --vqgan-checkpoint-path "checkpoints/vq-gan-group-fsq-2x1024.pth" '
    '--vits-checkpoint-path "checkpoints/vits_decoder_v1.1.ckpt"',
]
# "You should use following parameters to start VITS decoder" (for the API and the web UI), and the
# generate.py flags the notes name (--half for GPUs without bf16, --speaker for a fine-tuned model).
VITS_DECODER_FLAGS = '--decoder-config-name vits_decoder_finetune --decoder-checkpoint-path "checkpoints/vits_decoder_v1.1.ckpt"'
FINETUNE_MD = [
    "python tools/vqgan/inference.py -i test.wav",
    "python tools/vits_decoder/inference.py -ckpt checkpoints/vits_decoder_v1.1.ckpt -i fake.npy -r test.wav "
    '--text "The text you want to generate"',
    "fap loudness-norm data-raw data --clean",
    "huggingface-cli download fishaudio/fish-speech-1 vq-gan-group-fsq-2x1024.pth --local-dir checkpoints",
    'python tools/vqgan/extract_vq.py data --num-workers 1 --batch-size 16 --config-name "vqgan_pretrain" '
    '--checkpoint-path "checkpoints/vq-gan-group-fsq-2x1024.pth"',
    'python tools/llama/build_dataset.py --input "data" --output "data/quantized-dataset-ft.protos" '
    "--text-extension .lab --num-workers 16",
    "huggingface-cli download fishaudio/fish-speech-1 text2semantic-sft-medium-v1.1-4k.pth --local-dir checkpoints",
    "python fish_speech/train.py --config-name text2semantic_finetune model@model.model=dual_ar_2_codebook_medium",
    "python tools/llama/merge_lora.py --llama-config dual_ar_2_codebook_medium --lora-config r_8_alpha_16 "
    "--llama-weight checkpoints/text2semantic-sft-medium-v1.1-4k.pth "
    "--lora-weight results/text2semantic-finetune-medium-lora/checkpoints/step_000000200.ckpt "
    "--output checkpoints/merged.ckpt",
    "python tools/vqgan/create_train_split.py data",
    "python fish_speech/train.py --config-name vits_decoder_finetune",
    "python tools/vits_decoder/inference.py --checkpoint-path results/vits_decoder_finetune/checkpoints/step_000010000.ckpt "
    '-i test.npy -r test.wav --text "The text you want to generate"',
    "python tools/vqgan/create_train_split.py data",
    "python fish_speech/train.py --config-name vqgan_finetune",
    "python tools/vqgan/inference.py -i test.wav --checkpoint-path results/vqgan_finetune/checkpoints/step_000010000.ckpt",
]
LORA_FLAG = "+lora@model.lora_config=r_8_alpha_16"   # "please add the following parameter"
GLOO_FLAG = "trainer.strategy.process_group_backend=gloo"  # "For Windows users"
API_FLAGS_TXT = ('--listen 0.0.0.0:8000 --llama-checkpoint-path "checkpoints/text2semantic-sft-medium-v1.1-4k.pth" '
                 '--llama-config-name dual_ar_2_codebook_medium --decoder-checkpoint-path '
                 '"checkpoints/vq-gan-group-fsq-2x1024.pth" --decoder-config-name vqgan_finetune')

# Original script → the task it becomes (tools/vqgan/inference.py: by its input, see task_for()).
SCRIPTS = {"tools/llama/generate.py": ["task=generate"], "tools/vits_decoder/inference.py": ["task=decode"],
           "tools.api": ["task=serve"], "tools.webui": ["task=webui"], "tools/vqgan/extract_vq.py": ["task=encode"],
           "tools/llama/build_dataset.py": ["task=prepare"], "tools/llama/merge_lora.py": ["task=merge_lora"],
           "fish_speech/train.py": []}
SR = 44100
QUIET_TRAIN = ["trainer.logger=false", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
               "+trainer.enable_model_summary=false", "log_level=WARNING", "data.root=data", "data.batch_size=2",
               "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1"]
SMALL_DISC = ["lit.discriminator.periods=[2,3]", "+lit.discriminator.msd_channels=[4,8,8,8,8,8]",
              "+lit.discriminator.msd_groups=[1,4,4,4,4,1]", "+lit.discriminator.mpd_channels=[4,8,8,8,8]"]


def speechlike(path: Path, seconds: float, f0: float = 120.0) -> None:
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 + 30 * np.sin(2 * np.pi * 1.3 * t)) / SR
    wave = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * wave / np.abs(wave).max()).astype(np.float32), SR)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """A folder with the docs' files: paimon.wav, ref.wav, test.wav and data/SPK1, data/SPK2 (+ .lab)."""
    root = tmp_path_factory.mktemp("docs")
    for name in ("paimon.wav", "ref.wav", "test.wav"):
        speechlike(root / name, 1.0)
    for i, stem in enumerate(["SPK1/21.15-26.44", "SPK1/27.51-29.98", "SPK1/30.1-32.71", "SPK2/38.79-40.85"]):
        speechlike(root / "data" / f"{stem}.wav", 0.6 + 0.1 * i, 110 + 20 * i)
        (root / "data" / f"{stem}.lab").write_text(f"Line number {i} of the data.", encoding="utf-8")
    return root, make_tiny_checkpoints(root / "tiny")


def fixture_paths(ckpts: dict[str, Path], produced: dict[str, Path]) -> dict[str, str]:
    """The docs' paths → the tiny checkpoints (and the files earlier steps produced)."""
    return {"checkpoints/vq-gan-group-fsq-2x1024.pth": str(ckpts["vqgan"]),
            "checkpoints/text2semantic-sft-medium-v1.1-4k.pth": str(ckpts["text2semantic"]),
            "checkpoints/vits_decoder_v1.1.ckpt": str(ckpts["vits"]), "dual_ar_2_codebook_medium": "tiny",
            **{k: str(v) for k, v in produced.items()}}


def task_for(script: str, args: list[str]) -> list[str]:
    if script == "tools/vqgan/inference.py":  # one tool for both directions, chosen by its input
        source = args[args.index("-i") + 1]
        return ["task=decode", "decoder=vqgan"] if source.endswith(".npy") else ["task=encode"]
    return SCRIPTS[script]


def to_argv(command: str, paths: dict[str, str]) -> tuple[list[str], str]:
    """``python <script> <flags>`` → (our argv, default config) with the docs' paths replaced."""
    words = shlex.split(command)
    assert words[0] == "python", command
    script, args = (words[2], words[3:]) if words[1] == "-m" else (words[1], words[2:])
    args = [paths.get(a, a) for a in args]
    args = [f"{a.split('=')[0]}={paths.get(a.split('=', 1)[1], a.split('=', 1)[1])}" if "=" in a else a
            for a in args]
    return [*task_for(script, args), *args], "train" if script == "fish_speech/train.py" else "infer"


def tiny_tail(ckpts: dict[str, Path], train: bool = False, sampling: bool = False) -> list[str]:
    out = [f"model/{a}=tiny" for a in ("vqgan", "firefly", "vits")] + ([] if train else ["device=cpu"])
    out += [f"checkpoints.{s}={quote(str(p))}" for s, p in ckpts.items()]
    return out + (QUIET_TRAIN if train else ["log_level=WARNING"]) + (["max_new_tokens=16"] if sampling else [])


def run(argv: list[str], default: str, ckpts, capfd, extra=()) -> None:
    overrides, _, _ = translate_args(argv)
    tail = tiny_tail(ckpts, default == "train", sampling="task=generate" in argv)
    if not any(o.startswith("model/text2semantic=") for o in overrides):
        tail.append("model/text2semantic=tiny")
    code = main([*argv, *tail, *extra], default_config=default)
    err = capfd.readouterr().err
    assert code == 0, f"{argv}\n{err[-3000:]}"


def serve_pipeline(argv: list[str], ckpts, capfd):
    """Compose the serve/webui command and build the pipeline it would serve."""
    from speechlm.pipeline import TTS

    built = {}

    def dispatch(cfg):
        built["cfg"], built["tts"] = cfg, TTS.from_config(cfg)
        return 0

    given = {o.split("=")[0] for o in translate_args(argv)[0] if o.startswith("checkpoints.")}
    tail = [o for o in tiny_tail(ckpts, sampling=True) if o.split("=")[0] not in given]  # slots the line leaves
    code = main([*argv, *tail], default_config="infer", dispatch=dispatch)
    assert code == 0, capfd.readouterr().err
    return built["cfg"], built["tts"]


def test_downloads_are_registry_files():
    from speechlm.checkpoints.registry import HUB_REPO, REGISTRY

    by_file = {e.filename: name for name, e in REGISTRY.items()}
    for line in [c for c in INFERENCE_MD + FINETUNE_MD if c.startswith("huggingface-cli")]:
        _, _, repo, filename, _, local = shlex.split(line)
        assert repo == HUB_REPO and filename in by_file, line  # task=download names=[<name>] fetches it
        cfg = compose("infer", ["task=download", f"names=[{by_file[filename]}]", f"local_dir={local}"])
        assert list(cfg.names) == [by_file[filename]]


def test_inference_md(workspace, capfd, monkeypatch):
    root, ckpts = workspace
    monkeypatch.chdir(root)
    paths = fixture_paths(ckpts, {})
    encode, generate, vits, vqgan, api, webui = [c for c in INFERENCE_MD if c.startswith("python")]

    run(*to_argv(encode, paths), ckpts, capfd)
    assert np.load("fake.npy").shape[0] == 2                                # "You should get a fake.npy file"
    # "if you do not plan to use acceleration, you can comment out the --compile parameter": the
    # compiled run is test_generate_with_compile (slow); the notes' --half and --speaker run here too
    argv, default = to_argv(generate, paths)
    run([a for a in argv if a != "--compile"], default, ckpts, capfd)
    assert sorted(p.name for p in root.glob("codes_*.npy")) == ["codes_0.npy", "codes_1.npy"]
    run([a for a in argv if a != "--compile"] + ["--half", "--speaker", "SPK1"], default, ckpts, capfd)

    for decode in (vits, vqgan):
        Path("fake.wav").unlink(missing_ok=True)
        run(*to_argv(decode, paths), ckpts, capfd)
        audio, sr = sf.read("fake.wav")
        assert sr == SR and audio.size == 2048 * np.load("codes_0.npy").shape[1]

    cfg, tts = serve_pipeline(to_argv(api, paths)[0], ckpts, capfd)
    assert (cfg.listen, cfg.decoder, cfg.task_name) == ("0.0.0.0:8000", "vqgan", "serve")
    assert cfg.checkpoints.vqgan == str(ckpts["vqgan"]) and cfg.checkpoints.text2semantic == str(ckpts["text2semantic"])
    cfg, _ = serve_pipeline(to_argv(api + " " + VITS_DECODER_FLAGS, paths)[0], ckpts, capfd)
    assert cfg.decoder == "vits" and cfg.checkpoints.vits == str(ckpts["vits"])
    for line in (webui, webui + " " + VITS_DECODER_FLAGS):
        cfg, _ = serve_pipeline(to_argv(line, paths)[0], ckpts, capfd)
        assert cfg.task_name == "webui" and cfg.decoder == "vits" and cfg.checkpoints.vits == str(ckpts["vits"])


@pytest.mark.slow
def test_generate_with_compile(workspace, capfd, monkeypatch, tmp_path):
    root, ckpts = workspace
    monkeypatch.chdir(tmp_path)
    np.save("fake.npy", np.random.default_rng(0).integers(0, 1000, (2, 20)))
    generate = [c for c in INFERENCE_MD if "generate.py" in c][0]
    run(*to_argv(generate, fixture_paths(ckpts, {})), ckpts, capfd)
    assert sorted(p.name for p in tmp_path.glob("codes_*.npy")) == ["codes_0.npy", "codes_1.npy"]


def test_api_flags_txt(workspace, capfd):
    _, ckpts = workspace
    argv = ["task=serve", *[fixture_paths(ckpts, {}).get(a, a) for a in shlex.split(API_FLAGS_TXT)]]
    cfg, tts = serve_pipeline(argv, ckpts, capfd)
    assert cfg.decoder == "vqgan" and cfg.checkpoints.vqgan == str(ckpts["vqgan"])


def _translation_only(command: str, paths: dict[str, str]) -> list[str]:
    argv, _ = to_argv(command, paths)
    return translate_args(argv)[0]


def latest(folder: str) -> Path:
    found = sorted(Path(folder).rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    assert found, f"no checkpoint under {folder}"
    return found[-1]


def test_finetune_md(workspace, capfd, monkeypatch):
    root, ckpts = workspace
    monkeypatch.chdir(root)
    paths = fixture_paths(ckpts, {})
    lines = iter(FINETUNE_MD)

    # "conduct the following test": VQGAN round trip, then VITS
    run(*to_argv(next(lines), paths), ckpts, capfd)
    assert Path("fake.npy").is_file()
    Path("fake.wav").unlink(missing_ok=True)
    run(*to_argv(next(lines), paths), ckpts, capfd)
    assert sf.info("fake.wav").samplerate == SR
    assert next(lines).startswith("fap ")  # fish-audio-preprocess, not part of Fish Speech
    assert next(lines).startswith("huggingface-cli")  # see test_downloads_are_registry_files

    extract = next(lines)
    assert _translation_only(extract, paths) == [
        "task=encode", "num_workers=1", "batch_size=16", "input='data'", f"checkpoints.vqgan={quote(str(ckpts['vqgan']))}"]
    run(*to_argv(extract, paths), ckpts, capfd)
    assert sorted(p.relative_to("data").as_posix() for p in Path("data").rglob("*.npy")) == [
        "SPK1/21.15-26.44.npy", "SPK1/27.51-29.98.npy", "SPK1/30.1-32.71.npy", "SPK2/38.79-40.85.npy"]

    build = next(lines)  # task=prepare is not in this branch: the translation it will get
    assert _translation_only(build, paths) == ["task=prepare", "input='data'", "output='data/quantized-dataset-ft.protos'",
                                               "num_workers=16", "text_extension=['.lab']"]
    assert next(lines).startswith("huggingface-cli")

    train = next(lines)  # full fine-tune (as the original without the LoRA flag), then with LoRA
    run(*to_argv(train, paths), ckpts, capfd, extra=["output_dir=results/text2semantic-finetune-medium"])
    full = latest("results/text2semantic-finetune-medium")
    run(*to_argv(f"{train} {LORA_FLAG}", paths), ckpts, capfd,
        extra=["output_dir=results/text2semantic-finetune-medium-lora"])
    lora = latest("results/text2semantic-finetune-medium-lora")
    _finetune_rest(lines, paths, ckpts, capfd, full, lora)


def _finetune_rest(lines, paths, ckpts, capfd, full: Path, lora: Path) -> None:
    import torch

    assert not any("lora_" in k for k in torch.load(full, weights_only=False)["state_dict"])
    assert all("lora_" in k for k in torch.load(lora, weights_only=False)["state_dict"])
    paths = {**paths, "results/text2semantic-finetune-medium-lora/checkpoints/step_000000200.ckpt": str(lora)}
    run(*to_argv(next(lines), paths), ckpts, capfd)  # merge_lora
    assert set(torch.load("checkpoints/merged.ckpt", weights_only=True)) == {
        k for k in torch.load(ckpts["text2semantic"], weights_only=True) if k.startswith("model.")}
    # "use --speaker SPK1 to generate speech" with the fine-tuned model
    run(["task=generate", "--text", "Hi", "--speaker", "SPK1", "--checkpoint-path", "checkpoints/merged.ckpt",
         "--config-name", "tiny", "--output-dir", "after"], "infer", ckpts, capfd)
    assert Path("after/codes_0.npy").is_file()

    split = next(lines)  # the data modules split train/val themselves
    assert split.endswith("create_train_split.py data")
    assert compose("train", ["experiment=vits_finetune"]).data.val_fraction > 0

    run(*to_argv(next(lines), paths), ckpts, capfd, extra=[*SMALL_DISC, "data.val_batch_size=1",
                                                          "data.min_duration=0.5", "trainer.val_check_interval=1",
                                                          "output_dir=results/vits_decoder_finetune"])
    vits = latest("results/vits_decoder_finetune")
    np.save("test.npy", np.load("fake.npy"))
    Path("fake.wav").unlink(missing_ok=True)
    paths["results/vits_decoder_finetune/checkpoints/step_000010000.ckpt"] = str(vits)
    run(*to_argv(next(lines), paths), ckpts, capfd)
    assert sf.info("fake.wav").frames == 2048 * np.load("test.npy").shape[1]

    assert next(lines).endswith("create_train_split.py data")
    run(*to_argv(next(lines), paths), ckpts, capfd, extra=["output_dir=results/vqgan_finetune",
                                                          "trainer.val_check_interval=1"])
    vq = latest("results/vqgan_finetune")
    Path("fake.npy").unlink()
    paths["results/vqgan_finetune/checkpoints/step_000010000.ckpt"] = str(vq)
    run(*to_argv(next(lines), paths), ckpts, capfd)
    assert np.load("fake.npy").shape[0] == 2
    assert next(lines, None) is None  # every line of the page was handled


def test_training_fragments():
    overrides, config, _ = translate_args(shlex.split(FINETUNE_MD[7])[2:] + [LORA_FLAG, GLOO_FLAG])
    assert config == "train" and "lit.lora_config={r:8,lora_alpha:16}" in overrides
    cfg = compose("train", overrides)
    assert dict(cfg.lit.lora_config) == {"r": 8, "lora_alpha": 16}
    from hydra.utils import instantiate

    strategy = instantiate(cfg.trainer.strategy)
    assert type(strategy).__name__ == "DDPStrategy" and strategy._process_group_backend == "gloo"


def test_script_table_and_console_script():
    import tomllib

    from speechlm.flags import SCRIPT_TASKS

    for script, prefix in SCRIPTS.items():  # the tasks used here are the ones flags.SCRIPT_TASKS documents
        documented = SCRIPT_TASKS[script.replace("tools.", "tools/") + (".py" if script.startswith("tools.") else "")]
        assert all(p in documented for p in prefix), (script, documented)
    root = Path(__file__).resolve().parents[1]
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["speechlm"] == "speechlm.cli:infer_main"  # `speechlm <flags>` = `python infer.py <flags>`
