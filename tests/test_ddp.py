"""A 2-process DDP fine-tune on CPU (gloo), as a multi-GPU run is launched: ``trainer.devices=2 trainer.strategy=ddp``.

``train.py`` is started once; Lightning re-runs it for rank 1. Both ranks must report their batches and the
same checksum of the trainable weights (they saw different shards of the data, so equal weights mean the
gradients were averaged), and one set of checkpoints must be written (by rank 0).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from speechlm.testing.tiny_text2semantic import make_tiny_text2semantic
from tests.finetune_data import make_two_speakers

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_ddp_finetune_on_cpu(tmp_path):
    base = make_tiny_text2semantic(tmp_path / "base")
    data = make_two_speakers(tmp_path / "data", per_speaker=4)
    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), "experiment=text2semantic_finetune", "model/text2semantic=tiny",
           f"checkpoints.text2semantic={base}", f"data.root={data}", "data.batch_size=2", "trainer.max_steps=3",
           "trainer.val_check_interval=3", "trainer.limit_val_batches=1", "trainer.logger=false",
           "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
           "lit.optimizer.lr=1e-3", f"output_dir={run}"]
    env = {**os.environ, "COLUMNS": "240", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    ranks = dict(re.findall(r"rank (\d)/2 trained: 3 batches, \d+ samples, step 3, checksum (\S+)", out))
    assert set(ranks) == {"0", "1"}, out[-3000:]
    assert ranks["0"] == ranks["1"], ranks  # replicas in sync
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"step_000000003.ckpt", "last.ckpt"}
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 3
    assert any(k.endswith("lora_B") and v.abs().sum() > 0 for k, v in saved["state_dict"].items())  # trained
