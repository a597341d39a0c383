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
    # the two paths sum each convolution in another order (oneDNN picks per CPU: 1.6e-5 seen on AVX2-only
    # Zen 3); half a 16-bit step of the tanh output is 1.5e-5
    torch.testing.assert_close(fast, ref, atol=3e-5, rtol=1e-4)


def _exercised(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for p in module.parameters():
        nn.init.normal_(p, 0.0, 0.2)
    return module.eval()


@pytest.mark.parametrize("tile", [0, 64])
def test_resblock2_fast_path_matches_module_path(tile, monkeypatch):
    dec = _exercised(HiFiGANGenerator(12, 32, [4, 2, 2], [8, 4, 2], [3, 5], [[1, 3], [1, 3]], resblock="2"))
    x = torch.randn(2, 12, 30)
    monkeypatch.setattr(hi, "TILE", tile)
    with torch.inference_mode():
        fast = dec(x)
        dec.fast_inference = False
        ref = dec(x)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-4)


def test_flat_and_grouped_layouts_compute_the_same():
    """The VITS (flat) and Firefly (grouped) state-dict layouts are one network: same weights, same output."""
    kw = dict(in_channels=8, upsample_initial_channel=16, upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4],
              resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], activation="silu")
    flat = _exercised(HiFiGANGenerator(**kw))
    grouped = HiFiGANGenerator(**kw, grouped_resblocks=True).eval()
    assert "resblocks.3.convs1.0.weight" in flat.state_dict()
    assert "resblocks.1.blocks.1.convs1.0.weight" in grouped.state_dict()

    def grouped_key(k: str) -> str:
        if not k.startswith("resblocks."):
            return k
        _, n, rest = k.split(".", 2)
        return f"resblocks.{int(n) // 2}.blocks.{int(n) % 2}.{rest}"

    grouped.load_state_dict({grouped_key(k): v for k, v in flat.state_dict().items()}, strict=True)
    x = torch.randn(1, 8, 20)
    with torch.no_grad():
        torch.testing.assert_close(grouped(x), flat(x), atol=0, rtol=0)
    assert grouped.receptive_frames == flat.receptive_frames


def test_period_discriminator_weight_norm_layouts():
    from speechlm.models.hifigan.discriminator import PeriodDiscriminator

    torch.manual_seed(0)
    legacy = PeriodDiscriminator(3, [4, 8, 8], legacy_weight_norm=True)
    torch.manual_seed(0)
    param = PeriodDiscriminator(3, [4, 8, 8])
    assert "convs.0.weight_g" in legacy.state_dict()
    assert "convs.0.parametrizations.weight.original0" in param.state_dict()
    x = torch.randn(2, 1, 100)  # not a multiple of the period: reflect-padded
    with torch.no_grad():
        (a, fa), (b, fb) = legacy(x), param(x)
    torch.testing.assert_close(a, b)
    assert [f.shape for f in fa] == [f.shape for f in fb] and len(fa) == 4
