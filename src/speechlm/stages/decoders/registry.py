"""The decoders, by name: every list of decoder choices derives from :data:`DECODERS`.

The ``decoder`` parameter's choices (:mod:`speechlm.params`), the pipeline's loaders, the Ray replica's
checkpoint slots (``serving.ray_app.DECODER_SLOTS``), the original CLI's config names
(``flags.DECODER_NAMES``), the web UI's radio buttons and ``task=decode`` all read this table, so a new
decoder is one module (a :class:`~speechlm.stages.decoders.base.Decoder` and its ``load``), its model
config preset (``configs/model/<area>/<preset>.yaml``) and one entry here.

This module imports no model code: loaders are named by ``module:function`` and imported on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class DecoderEntry:
    """One decoder.

    Attributes:
        name: the ``decoder=`` value.
        label: how the web UI shows it.
        help: how the parameter's help text describes it.
        slots: the ``checkpoints.<slot>`` files it needs (besides text2semantic; ``vqgan`` is also the encoder's);
            the first is its own (what the original's ``--decoder-checkpoint-path`` fills).
        loader: ``module:function`` with signature ``load(cfg, device, codec, precision) -> Decoder``
            (``codec``: the loaded :class:`~speechlm.stages.codec.VQGANCodec`, or None when the decoder does not
            use it).
        uses_codec: whether ``load`` needs the VQGAN codec (shared with the reference encoder).
        config_names: names of the original's ``--config-name`` / ``--decoder-config-name`` that select it.
        needs_text: whether decoding needs the segment text (VITS).
    """

    name: str
    label: str
    help: str
    slots: tuple[str, ...]
    loader: str
    uses_codec: bool = False
    config_names: tuple[str, ...] = ()
    needs_text: bool = False

    def load(self, cfg, device, codec, precision: str):
        module, fn = self.loader.split(":")
        return getattr(importlib.import_module(module), fn)(cfg, device, codec, precision)


DECODERS: dict[str, DecoderEntry] = {e.name: e for e in [
    DecoderEntry("vits", "VITS (recommended)", "vits (recommended)", ("vits",), "speechlm.stages.decoders.vits:load",
                 config_names=("vits_decoder_finetune", "vits_decoder_pretrain", "vits"), needs_text=True),
    DecoderEntry("vqgan", "VQGAN + Firefly", "vqgan (VQGAN decoder + Firefly vocoder)", ("vqgan", "firefly"), "speechlm.stages.decoders.vqgan_firefly:load",
                 uses_codec=True, config_names=("firefly_gan_vq", "vqgan_pretrain", "vqgan_finetune", "vqgan")),
]}

DEFAULT_DECODER = "vits"


def decoder_names() -> tuple[str, ...]:
    """Every ``decoder=`` value, the default first."""
    return tuple(DECODERS)


def decoder_help() -> str:
    """The ``decoder`` parameter's help: every decoder's description."""
    helps = [e.help for e in DECODERS.values()]
    return helps[0] if len(helps) == 1 else ", ".join(helps[:-1]) + " or " + helps[-1]


def entry(name: str) -> DecoderEntry:
    """The entry of ``name`` (already validated by the ``decoder`` parameter)."""
    return DECODERS[name]


def checkpoint_slots() -> tuple[str, ...]:
    """Every checkpoint slot some decoder needs, in table order."""
    return tuple(dict.fromkeys(s for e in DECODERS.values() for s in e.slots))


def config_names() -> dict[str, str]:
    """Original ``--config-name`` / ``--decoder-config-name`` value → decoder name."""
    return {c: e.name for e in DECODERS.values() for c in e.config_names}
