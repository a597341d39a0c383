"""The inference stages, one object each, named after their task.

``codec.VQGANCodec`` (task=encode), ``generate.SemanticGenerator`` (task=generate; its per-token loop
in ``token_loop``), and the decoders (task=decode) behind one interface in ``decoders`` (``decoders.vits``
over ``decode.VITSSynthesizer``; ``decoders.vqgan_firefly``), chosen by name from ``decoders.registry``. ``loaders`` builds each of them from the
composed config; :class:`speechlm.TTS` holds them and every task goes through it.
"""
