#!/usr/bin/env python
"""Inference entry point: ``python infer.py task=<generate|encode|decode|tts|download|serve|webui> key=value ...``.

Composes ``configs/infer.yaml`` with the overrides (original Fish Speech flags accepted too) and
dispatches to the task's ``run(cfg)``. Errors a user can cause print one line and exit 2.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from speechlm.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(default_config="infer"))
