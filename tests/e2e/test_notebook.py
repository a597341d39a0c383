"""notebooks/quickstart.ipynb executes top to bottom against tiny checkpoints made at test time."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHLM_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "tokens/s" in text and "segment(s)" in text and "RTF" in text
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert images, "the mel-spectrogram figure was not rendered"
    players = [o for o in outputs if o.output_type == "display_data" and "text/html" in o.get("data", {})
               and "<audio" in o["data"]["text/html"]]
    assert len(players) >= 3
