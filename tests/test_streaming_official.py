"""Streaming decode at the official sizes (random weights): the stream equals the one-pass decode.

Slow: about 9 minutes on a heavily loaded 2-core CPU (load average ~10). Measured there: VITS
(``vits_decoder_v1_1``) 59.1 dB, VQGAN ``group_fsq_2x1024`` + ``firefly_gan_base`` 55.7 dB (threshold 30 dB).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from speechlm.stages.codec import VQGANCodec
from speechlm.stages.decoders.vits import VITSDecoder
from speechlm.stages.decoders.vqgan_firefly import FireflyDecoder
from speechlm.testing.tiny_codec import compose_model_preset, randomize_
from tests.test_streaming import check_joins, one_pass, random_codes, random_vits, snr_db, stream

pytestmark = pytest.mark.slow


def official_codec() -> FireflyDecoder:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        vqgan = randomize_(instantiate(compose_model_preset("vqgan", "group_fsq_2x1024")), g).eval()
        vocoder = randomize_(instantiate(compose_model_preset("firefly", "firefly_gan_base")), g).eval()
        vocoder.head.conv_post.weight.mul_(0.3)
    return FireflyDecoder(VQGANCodec(vqgan), vocoder)


@pytest.mark.parametrize("which", ["vits", "codec"])
def test_official_size_stream_equals_one_pass(which):
    decoder = VITSDecoder(random_vits("vits_decoder_v1_1")) if which == "vits" else official_codec()
    codes = random_codes(decoder, 50)
    ref = one_pass(decoder, codes)
    chunks, sd = stream(decoder, codes)
    out = np.concatenate(chunks)
    assert out.shape == ref.shape
    db = snr_db(ref, out)
    print(f"{which}: stream vs one pass {db:.1f} dB")
    assert db >= 30.0
    check_joins(ref, out, sd.chunk_starts[1:] + [s + sd.samples_per_column for s in sd.chunk_starts[1:]])
