"""The shared channels-last HiFi-GAN inference path equals the module (training) path."""

import pytest
import torch
from torch import nn

import speechlm.models.hifigan.inference as hi
from speechlm.models.firefly.vocoder import FireflyHead
from speechlm.models.hifigan.generator import HiFiGANGenerator


@pytest.mark.parametrize("cin,stride,kernel", [(8, 2, 4), (8, 2, 8), (6, 2, 2), (8, 8, 16), (4, 3, 5)])
def test_conv_transpose_cl_matches_conv_transpose1d(cin, stride, kernel):
    torch.manual_seed(0)
    up = nn.ConvTranspose1d(cin, cin // 2, kernel, stride, padding=(kernel - stride) // 2)
    x = torch.randn(2, cin, 37)
    with torch.inference_mode():
        y = hi.from_channels_last(hi.conv_transpose_cl(hi.to_channels_last(x), up))
        torch.testing.assert_close(y, up(x), atol=1e-6, rtol=1e-5)


def _tiny_firefly() -> FireflyHead:
    torch.manual_seed(0)
    head = FireflyHead(hop_length=32, upsample_rates=[4, 2, 2, 2], upsample_kernel_sizes=[8, 4, 4, 4],
                       resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], num_mels=16,
                       upsample_initial_channel=32, pre_conv_kernel_size=7, post_conv_kernel_size=7)
    for p in head.parameters():  # the 0.01 init makes every output ~0: use weights that exercise the path
        nn.init.normal_(p, 0.0, 0.2)
    return head.eval()


@pytest.mark.parametrize("tile", [0, 64])
def test_firefly_head_fast_path_matches_module_path(tile, monkeypatch):
    head = _tiny_firefly()
    x = torch.randn(2, 16, 40)
    monkeypatch.setattr(hi, "TILE", tile)
    with torch.inference_mode():
        fast = head(x)
        head.fast_inference = False
        ref = head(x)
    assert fast.shape == ref.shape == (2, 1, 40 * 32)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-4)


def test_fast_path_skipped_with_hooks_or_grad():
    head = _tiny_firefly()
    x = torch.randn(1, 16, 8)
    assert not hi.use_fast_path(x, head)  # grad enabled
    with torch.inference_mode():
        assert hi.use_fast_path(x, head)
        handle = head.ups[0].register_forward_hook(lambda *a: None)
        assert not hi.use_fast_path(x, head)
        handle.remove()


def test_vits_decoder_fast_path_matches_module_path():
    torch.manual_seed(0)
    dec = HiFiGANGenerator(12, 32, [4, 2, 2], [8, 4, 2], [3, 7], [[1, 3, 5], [1, 3, 5]], gin_channels=8,
                           legacy_weight_norm=True)
    for m in dec.modules():
        if hasattr(m, "weight_g"):
            torch.nn.utils.remove_weight_norm(m)
    for p in dec.parameters():
        nn.init.normal_(p, 0.0, 0.2)
    x, g = torch.randn(2, 12, 30), torch.randn(2, 8, 1)
    with torch.inference_mode():
        fast = dec(x, g)
        dec.fast_inference = False
        ref = dec(x, g)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-4)
