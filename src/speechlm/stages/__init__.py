"""The inference stages, one object each, named after their task.

``codec.VQGANCodec`` (task=encode), ``generate.SemanticGenerator`` (task=generate; every request runs
through its one ``engine.Engine``: continuous batching, ``prefix_cache.PrefixCache``, the batched per-token
step in ``token_loop``), and the decoders (task=decode) behind one interface in ``decoders``
(``decoders.vits`` over ``decode.VITSSynthesizer``; ``decoders.vqgan_firefly``), chosen by name from
``decoders.registry``. ``loaders`` builds each of them from the
composed config; :class:`speechlm.TTS` holds them and every task goes through it.
"""
