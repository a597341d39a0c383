"""Networks (plain nn.Modules) and their LightningModules, one package per model area.

``text2semantic`` (LLaMA-style token model), ``vqgan`` (audio <-> codes), ``firefly`` (log-mel vocoder),
``vits`` (codes + text -> waveform), ``hifigan`` (the generator and discriminators ``vits`` and
``firefly`` share); ``gan.GANModule`` is the base of the GAN trainings, ``weight_norm`` the two stored
weight-norm layouts.
"""
