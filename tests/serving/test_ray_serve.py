"""``task=serve backend=ray``: config checks (fast, no Ray instance) and a real local Ray Serve
deployment with two tiny-model replicas answering concurrent requests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from speechlm.cli import main
from speechlm.testing.tiny import make_tiny_checkpoints, tiny_config, tiny_overrides
from tests.serving.conftest import decode, wav_bytes

CONCURRENT = 8
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(capsys, *args: str, tiny_dir: Path | None = None) -> tuple[int, str]:
    """Run the CLI in-process; returns (exit code, stderr)."""
    extra = tiny_overrides(make_tiny_checkpoints(tiny_dir / "checkpoints")) if tiny_dir is not None else []
    code = main(["task=serve", *args, *extra])
    return code, capsys.readouterr().err.strip()


def _serve_cfg(tiny_dir: Path, tmp_path: Path, *overrides: str):
    return tiny_config(tiny_dir, ["backend=ray", "warmup=false", "access_log=false", "max_new_tokens=16",
                                  f"references_dir={tmp_path / 'voices'}", *overrides], task="serve")


# ---------------------------------------------------------------------------------------------- fast


def test_backend_ray_composes_into_deployment_options(tiny_dir, tmp_path, monkeypatch):
    from ray.serve import Application

    from speechlm.serving import ServeSettings
    from speechlm.serving.ray_app import _replica_config, application, deployment_options
    from speechlm.serving.ray_options import RayOptions

    monkeypatch.chdir(tmp_path)
    cfg = _serve_cfg(tiny_dir, tmp_path, "replicas=2", "queue_size=3", "ray.num_cpus=0.5",
                     "ray.max_queued_requests=10", "cache_dir=rel-cache")
    assert cfg.backend == "ray" and cfg.ray.num_replicas == 2
    kwargs = deployment_options(RayOptions.from_mapping(cfg.ray), ServeSettings.from_mapping(cfg))
    assert kwargs["num_replicas"] == 2 and kwargs["max_ongoing_requests"] == 1 + 3  # workers + queue_size
    assert kwargs["max_queued_requests"] == 10 and kwargs["ray_actor_options"]["num_cpus"] == 0.5
    assert str(Path(sys.modules["speechlm"].__file__).parents[1]) in kwargs["ray_actor_options"]["runtime_env"][
        "env_vars"]["PYTHONPATH"]
    assert isinstance(application(cfg), Application)
    plain = _replica_config(cfg)  # what the replicas get: no interpolations, absolute local paths
    assert plain["cache_dir"] == str(tmp_path / "rel-cache") and plain["ray"]["num_replicas"] == 2
    assert all(Path(plain["checkpoints"][slot]).is_absolute() for slot in ("text2semantic", "vits"))


def test_autoscaling_replaces_the_fixed_count(tiny_dir, tmp_path):
    from speechlm.serving import ServeSettings
    from speechlm.serving.ray_app import deployment_options
    from speechlm.serving.ray_options import RayOptions

    cfg = _serve_cfg(tiny_dir, tmp_path, "ray.autoscaling={min_replicas:1,max_replicas:3,target_ongoing_requests:2}",
                     "ray.max_ongoing_requests=6")
    kwargs = deployment_options(RayOptions.from_mapping(cfg.ray), ServeSettings.from_mapping(cfg))
    assert "num_replicas" not in kwargs and kwargs["max_ongoing_requests"] == 6
    assert kwargs["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 2}


@pytest.mark.parametrize("args, words", [
    (["backend=k8s"], ["backend='k8s'", "uvicorn, ray"]),
    (["replicas=2"], ["needs backend=ray", "workers="]),
    (["backend=ray", "replicas=0"], ["replicas=0", "at least 1"]),
    (["backend=ray", "replicas=two"], ["replicas='two'", "whole number"]),
    (["backend=ray", "ray.num_cpus=lots"], ["ray.num_cpus='lots'", "a number"]),
    (["backend=ray", "ray.max_ongoing_requests=0"], ["ray.max_ongoing_requests=0"]),
    (["backend=ray", "ray.max_queued_requests=-5"], ["ray.max_queued_requests=-5", "-1"]),
    (["backend=ray", "ray.num_cpus=-1"], ["ray.num_cpus=-1"]),
    (["backend=ray", "ray.route_prefix=api"], ["ray.route_prefix", "'/'"]),
    (["backend=ray", "ray.autoscaling={min_replicas:3,max_replicas:1}"], ["ray.autoscaling", "max_replicas"]),
    (["backend=ray", "ray.autoscaling={max_replica:2}"], ["unknown key", "max_replica", "min_replicas"]),
    (["backend=ray", "ray.bogus=1"], ["ray.bogus"]),
    (["backend=ray", "listen=nowhere"], ["HOST:PORT"]),
])
def test_bad_ray_settings_are_one_line(capsys, tiny_dir, args, words):
    code, err = _cli(capsys, *args, tiny_dir=tiny_dir)
    assert code == 2 and err.startswith("error: ") and "\n" not in err, err
    for w in words:
        assert w in err, (w, err)


def test_missing_checkpoint_fails_before_ray_starts(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _cli(capsys, "backend=ray", f"checkpoints.text2semantic={tmp_path / 'nope.pth'}")
    assert code == 2 and "\n" not in err and "checkpoints.text2semantic" in err, err


def test_without_ray_one_line_says_how_to_install(capsys, tiny_dir, monkeypatch):
    for name in ("ray", "ray.serve"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: `import ray.serve` fails
    code, err = _cli(capsys, "backend=ray", tiny_dir=tiny_dir)
    assert code == 2 and "\n" not in err and "pip install 'speechlm[ray]'" in err, err


# ------------------------------------------------------------------------------------- real Ray Serve


@pytest.fixture()
def local_ray():
    """A fresh local Ray instance (2 CPUs, no dashboard, a short temp dir for its sockets)."""
    import ray
    from ray import serve

    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _invoke(base: str, k: int) -> httpx.Response:
    return httpx.post(f"{base}/v1/invoke", json={"text": f"Request {k}.", "seed": k, "reference_id": "shared"},
                      timeout=120)


@pytest.mark.slow(reason="about 2.5 min on 2 shared CPU cores: ray.init 25 s, two replicas up 70 s, requests 10 s")
def test_two_replicas_answer_concurrent_requests(local_ray, tiny_dir, tmp_path):
    from speechlm.serving.ray_app import deploy

    start = time.monotonic()
    cfg = _serve_cfg(tiny_dir, tmp_path, "replicas=2", f"listen=127.0.0.1:{_free_port()}", "ray.num_cpus=0.5",
                     "ray.max_ongoing_requests=2")
    base = deploy(cfg)  # returns once both replicas have their models loaded
    deployed = time.monotonic() - start
    with httpx.Client(base_url=base, timeout=60) as c:
        health = c.get("/v1/health")
        assert health.status_code == 200 and health.json()["replica"] == health.headers["x-replica-id"]
        r = c.post("/v1/references", data={"id": "shared", "text": "a short tone"},
                   files={"audio": ("a.wav", wav_bytes(0.6), "audio/wav")})
        assert r.status_code == 201, r.text  # saved through one replica, used by both (one shared store)
    with ThreadPoolExecutor(CONCURRENT) as pool:
        responses = list(pool.map(lambda k: _invoke(base, k), range(CONCURRENT)))
    for r in responses:
        assert r.status_code == 200, r.text[:300]
        audio, sr = decode(r.content)
        assert sr == 44100 and len(audio) > 0
    replicas = {r.headers["x-replica-id"] for r in responses}
    assert len(replicas) == 2, replicas
    print(f"ray: deployed 2 replicas in {deployed:.1f}s, {CONCURRENT} requests in "
          f"{time.monotonic() - start - deployed:.1f}s")


@pytest.mark.slow(reason="about 2.5 min on 2 shared CPU cores (Ray start, two replicas loading, clean stop)")
def test_infer_task_serve_backend_ray_serves_and_stops(tiny_dir, tmp_path):
    port, temp = _free_port(), tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    cmd = [sys.executable, str(ROOT / "infer.py"), "task=serve", "backend=ray", "replicas=2", "ray.num_cpus=0.5",
           f"listen=127.0.0.1:{port}", "warmup=false", "max_new_tokens=16", "references_dir=voices",
           *tiny_overrides(make_tiny_checkpoints(tiny_dir / "checkpoints"), "cache")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "RAY_TMPDIR": temp}
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 400
        while "Ray Serve: speechlm at" not in log.read_text():  # logged once every replica is up
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda k: httpx.post(f"http://127.0.0.1:{port}/v1/invoke",
                                                           json={"text": f"Hi {k}.", "seed": k}, timeout=120),
                                      range(4)))
        assert all(r.status_code == 200 and decode(r.content)[1] == 44100 for r in responses)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/references", data={"id": "v1", "text": "a tone"},
                       files={"audio": ("a.wav", wav_bytes(0.5), "audio/wav")}, timeout=60)
        assert r.status_code == 201 and (tmp_path / "voices" / "v1").is_dir()  # relative to the command's folder
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert "stopping" in log.read_text()
