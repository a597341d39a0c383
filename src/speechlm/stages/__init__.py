"""The inference stages, one object each, named after their task.

``codec.VQGANCodec`` (task=encode; with the Firefly vocoder also ``decoder=vqgan``),
``generate.SemanticGenerator`` (task=generate; every request runs through its one ``engine.Engine``:
continuous batching, ``prefix_cache.PrefixCache``, the batched per-token step in ``token_loop``),
``decode.VITSSynthesizer`` (task=decode, ``decoder=vits``). ``loaders`` builds each of them from the
composed config; :class:`speechlm.TTS` holds them and every task goes through it.
"""
