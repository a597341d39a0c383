"""Hydra tasks: each module exposes a plain ``run(cfg)`` that ``infer.py``/``train.py`` dispatch to."""
