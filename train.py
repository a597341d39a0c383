#!/usr/bin/env python
"""Training / fine-tuning entry point: ``python train.py experiment=<name> key=value ...``.

Composes ``configs/train.yaml`` (same model/checkpoint groups as inference) and runs
``speechlm.tasks.train.run(cfg)``: instantiate the LightningModule, data and trainer, then fit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from speechlm.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(default_config="train"))
