"""The inference stages, one object each, named after their task.

``codec.VQGANCodec`` (task=encode; with the Firefly vocoder also ``decoder=vqgan``),
``generate.SemanticGenerator`` (task=generate; its per-token loop in ``token_loop``),
``decode.VITSSynthesizer`` (task=decode, ``decoder=vits``). ``loaders`` builds each of them from the
composed config; :class:`speechlm.TTS` holds them and every task goes through it.
"""
