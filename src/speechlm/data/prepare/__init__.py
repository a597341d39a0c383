"""Data preparation for fine-tuning (``task=prepare``): raw recordings → ``<speaker>/<name>.wav|.lab|.npy``.

:mod:`.clean` levels and cuts the audio, :mod:`.asr` transcribes (optional), :mod:`.codes` encodes
semantic tokens in batches, :mod:`.folder` walks a raw folder and writes the training layout.
"""
