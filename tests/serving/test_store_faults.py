"""A voice store that fails after start (issue 22 D2): read-only, full disk, a failing fsspec backend.

Faults are simulated portably (root ignores chmod): an fsspec backend whose writes raise, or a local
folder whose ``os.replace``/``rm`` are monkeypatched to raise. Every change then answers 503 (507 for a
full disk) with a JSON error naming ``references_dir``; reads keep working where the backend allows.
"""

from __future__ import annotations

import errno
import os
import uuid

import fsspec
import httpx
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from speechlm.serving import storage as storage_module
from tests.serving.conftest import assert_error, running_server, wav_bytes

FAULTS = {  # name -> (exception raised by every write, status the API answers)
    "read_only": (lambda: PermissionError(errno.EACCES, "Permission denied"), 503),
    "disk_full": (lambda: OSError(errno.ENOSPC, "No space left on device"), 507),
    "backend": (lambda: OSError(errno.EIO, "backend unavailable"), 503),
}


class FaultyFileSystem(MemoryFileSystem):
    """An in-memory fsspec backend whose writes raise ``fault()`` once it is set (reads still work)."""

    protocol = "faulty"
    fault = None

    def _check(self):
        if FaultyFileSystem.fault is not None:
            raise FaultyFileSystem.fault()

    def pipe_file(self, path, value, **kwargs):
        self._check()
        return super().pipe_file(path, value, **kwargs)

    def rm(self, path, recursive=False, maxdepth=None):
        self._check()
        return super().rm(path, recursive=recursive, maxdepth=maxdepth)

    def rm_file(self, path):
        self._check()
        return super().rm_file(path)

    def rmdir(self, path):
        self._check()
        return super().rmdir(path)

    def _open(self, path, mode="rb", **kwargs):
        if "r" not in mode:
            self._check()
        return super()._open(path, mode, **kwargs)


fsspec.register_implementation("faulty", FaultyFileSystem, clobber=True)


@pytest.fixture()
def faulty_url():
    url = f"faulty://voices-{uuid.uuid4().hex[:8]}"
    yield url
    FaultyFileSystem.fault = None


def _upload(c, voice_id, seed=0, **extra):
    return c.post("/v1/references", data={"id": voice_id, "text": "a short tone", **extra},
                  files={"audio": ("a.wav", wav_bytes(0.4, seed=seed), "audio/wav")})


def _every_change(c) -> list[tuple[str, httpx.Response]]:
    files = {"audio": ("a.wav", wav_bytes(0.4, seed=7), "audio/wav")}
    return [
        ("POST new", _upload(c, "fresh")),
        ("POST overwrite", _upload(c, "kept", seed=3, overwrite="true")),
        ("PUT", c.put("/v1/references/kept", data={"text": "other words"}, files=files)),
        ("PATCH", c.patch("/v1/references/kept", data={"speaker": "narrator"})),
        ("DELETE", c.delete("/v1/references/kept")),
    ]


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fsspec_store_fault_answers_503_naming_references_dir(tts, faulty_url, fault):
    make, status = FAULTS[fault]
    with running_server(tts, faulty_url) as base, httpx.Client(base_url=base, timeout=60) as c:
        assert _upload(c, "kept").status_code == 201
        FaultyFileSystem.fault = make
        for what, r in _every_change(c):
            body = assert_error(r, status, "references_dir", "references_dir")
            assert "report" not in body["error"], (what, body)
        FaultyFileSystem.fault = None
        assert [v["id"] for v in c.get("/v1/references").json()["voices"]] == ["kept"]  # nothing half-done
        assert c.get("/v1/references/kept").json()["speaker"] is None
        assert _upload(c, "fresh").status_code == 201  # and it recovers once the store does


class _FailingOs:
    """``os`` as the storage module sees it, except that every call that changes the disk raises."""

    CHANGES = {"replace", "link", "rename", "unlink", "remove", "rmdir", "mkdir", "makedirs"}

    def __init__(self, fail):
        self._fail = fail

    def __getattr__(self, name):
        return self._fail if name in self.CHANGES else getattr(os, name)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_local_store_fault_answers_503_naming_references_dir(tts, tmp_path, monkeypatch, fault):
    make, status = FAULTS[fault]

    def fail(*args, **kwargs):
        raise make()

    def failing_open(file, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax+"):
            raise make()
        return open(file, mode, *args, **kwargs)

    with running_server(tts, tmp_path) as base, httpx.Client(base_url=base, timeout=60) as c:
        assert _upload(c, "kept").status_code == 201
        # only the storage module's view of the disk fails (the server's own files keep working)
        monkeypatch.setattr(storage_module, "os", _FailingOs(fail))
        monkeypatch.setattr(storage_module, "open", failing_open, raising=False)
        for what, r in _every_change(c):
            assert_error(r, status, "references_dir", "references_dir", str(tmp_path))
        monkeypatch.undo()
        assert [v["id"] for v in c.get("/v1/references").json()["voices"]] == ["kept"]
        assert _upload(c, "fresh").status_code == 201


def test_store_reads_failing_are_503_not_404(tts, faulty_url, monkeypatch):
    with running_server(tts, faulty_url) as base, httpx.Client(base_url=base, timeout=60) as c:
        assert _upload(c, "kept").status_code == 201

        def broken(self, path, *a, **k):
            raise OSError(errno.EIO, "backend unavailable")

        monkeypatch.setattr(FaultyFileSystem, "cat_file", broken)
        for r in (c.get("/v1/references/kept"), c.get("/v1/references"),
                  c.post("/v1/invoke", json={"text": "hi", "reference_id": "kept"})):
            assert_error(r, 503, "references_dir", "references_dir")
