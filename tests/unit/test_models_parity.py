"""The torch taggers against the original TensorFlow checkpoints' outputs (tests/fixtures/musicnn)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from catalogue_tagger.models import musicnn
from catalogue_tagger.models.frontend import LogMel
from catalogue_tagger.models.musicnn import _max_over, conv_max_over_mel
from catalogue_tagger.models.winograd import winograd_matrices
from catalogue_tagger.models.registry import load_model
from catalogue_tagger.models.spectrogram import SpectrogramTagger

FIXTURES = Path(__file__).parents[1] / "fixtures" / "musicnn"
CLIPS = sorted(json.loads((FIXTURES / "clips.json").read_text())["clips"])
# registry name -> reference outputs it must reproduce
REFERENCE = {
    "musicnn-mtt": "MTT_musicnn",
    "musicnn-msd": "MSD_musicnn",
    "vgg-mtt": "MTT_vgg",
    "vgg-msd": "MSD_vgg_astrained",
}


@cache
def model(name: str) -> SpectrogramTagger:
    tagger = load_model(name)
    assert isinstance(tagger, SpectrogramTagger)
    return tagger


@cache
def reference(clip: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{clip}.npz") as npz:
        return dict(npz)


def read_flac(path: Path) -> np.ndarray:
    """Samples as ``int16 / 32768`` in float32, the reference's reading of its inputs."""
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray() for frame in container.decode(audio=0)]
    samples = np.concatenate([f.reshape(-1) for f in frames])
    assert samples.dtype == np.int16
    return samples.astype(np.float32) / 32768


def segments(wave: np.ndarray, window: int = 48128, hop: int = 47872, pad: int = 256) -> np.ndarray:
    """Reflect-pad ``pad`` samples each side, cut full windows at ``hop``; a partial last window is dropped."""
    padded = np.pad(wave, pad, mode="reflect")
    n = max(0, (len(padded) - window) // hop + 1)
    return np.stack([padded[k * hop : k * hop + window] for k in range(n)]) if n else np.zeros((0, window), np.float32)


def run(tagger: torch.nn.Module, x: np.ndarray, forward=None) -> list[np.ndarray]:
    with torch.no_grad():
        outputs = (forward or tagger)(torch.from_numpy(x))
    return [o.numpy() for o in outputs]


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0


@pytest.mark.parametrize("clip", CLIPS)
def test_frontend_matches_reference_mel(clip: str) -> None:
    ref = reference(clip)["mel"]
    wave_segments = segments(read_flac(FIXTURES / f"{clip}.flac"))
    assert len(wave_segments) == len(ref) == json.loads((FIXTURES / "clips.json").read_text())["clips"][clip]["n_patches"]
    if not len(ref):
        return
    with torch.no_grad():
        mel = LogMel()(torch.from_numpy(wave_segments)).numpy()
    assert mel.shape == ref.shape
    delta = np.abs(mel.astype(np.float64) - ref)
    assert delta.max() <= 1e-3
    assert delta.mean() < 1e-6  # catches a skipped float16 rounding


@pytest.mark.parametrize("name", REFERENCE)
@pytest.mark.parametrize("clip", [c for c in CLIPS if c != "pub_short_2s"])
def test_network_matches_reference(name: str, clip: str) -> None:
    ref, key = reference(clip), REFERENCE[name]
    probs, logits, *embedding = run(model(name), ref["mel"], model(name).forward_mel)
    assert max_abs(logits, ref[f"{key}/logits"]) <= 2e-4
    assert max_abs(probs, ref[f"{key}/patch_sigmoid"]) <= 5e-5
    assert max_abs(probs.mean(0), ref[f"{key}/track_mean"]) <= 5e-5
    if embedding:
        assert max_abs(embedding[0], ref[f"{key}/penultimate"]) <= 2e-4


@pytest.mark.parametrize("name", REFERENCE)
@pytest.mark.parametrize("clip", CLIPS)
def test_end_to_end_from_flac(name: str, clip: str) -> None:
    ref, key = reference(clip), REFERENCE[name]
    wave_segments = segments(read_flac(FIXTURES / f"{clip}.flac"))
    probs, logits, *embedding = run(model(name), wave_segments)
    assert probs.shape == ref[f"{key}/patch_sigmoid"].shape
    if not len(probs):  # shorter than one patch: musicnn gives no patches and a NaN track mean
        assert np.isnan(ref[f"{key}/track_mean"]).all()
        return
    assert max_abs(probs, ref[f"{key}/patch_sigmoid"]) <= 1e-4
    assert max_abs(probs.mean(0), ref[f"{key}/track_mean"]) <= 1e-4
    assert max_abs(logits, ref[f"{key}/logits"]) <= 5e-4
    if embedding:
        assert max_abs(embedding[0], ref[f"{key}/penultimate"]) <= 1e-3


def test_msd_vgg_in_musicnn_graph_matches_what_musicnn_returns() -> None:
    """The MSD vgg weights in the MTT-shaped network reproduce musicnn 0.1.0's own (as-shipped) outputs."""
    from catalogue_tagger.models import vgg
    from catalogue_tagger.models.registry import read_weights
    from catalogue_tagger.models.specs import get_spec

    net = vgg.VggNet(pools="musicnn")
    net.load_state_dict({k.removeprefix("net."): v for k, v in read_weights(get_spec("vgg-msd")).items()})
    ref = reference("pub_electronic_2")
    (logits,) = run(net.eval(), ref["mel"])
    assert max_abs(logits, ref["MSD_vgg/logits"]) <= 2e-4


@pytest.mark.parametrize("name", REFERENCE)
def test_batch_invariance(name: str) -> None:
    """A segment's outputs do not depend on what else is in the batch."""
    wave_segments = segments(read_flac(FIXTURES / "pub_electronic_2.flac"))
    together = run(model(name), wave_segments)
    for i in (0, len(wave_segments) - 1):
        alone = run(model(name), wave_segments[i : i + 1])
        for a, b in zip(alone, together):
            assert max_abs(a[0], b[i]) <= 1e-5


@pytest.mark.parametrize("name", REFERENCE)
def test_silence_and_noise_give_finite_outputs(name: str) -> None:
    rng = np.random.default_rng(0)
    batch = np.stack([np.zeros(48128), rng.uniform(-1, 1, 48128), 0.01 * rng.standard_normal(48128)]).astype(np.float32)
    probs, logits, *embedding = run(model(name), batch)
    for output in (probs, logits, *embedding):
        assert np.isfinite(output).all()
    assert ((probs >= 0) & (probs <= 1)).all()


@pytest.mark.parametrize(("m", "r"), [(2, 7), (4, 7), (6, 7), (4, 3), (4, 4)])
def test_winograd_matrices_compute_the_correlation(m: int, r: int) -> None:
    """F(m, r) built from its points computes ``y[i] = sum_k g[k] d[i + k]`` exactly (float64 rounding)."""
    a_t, g, b_t = winograd_matrices(m, r)
    n = m + r - 1
    assert a_t.shape == (m, n) and g.shape == (n, r) and b_t.shape == (n, n)
    rng = np.random.default_rng(m)
    kernel, frames = rng.standard_normal(r), rng.standard_normal(n)
    y = a_t.double().numpy() @ ((g.numpy() @ kernel) * (b_t.double().numpy() @ frames))
    assert max_abs(y, np.correlate(frames, kernel, mode="valid")) <= 1e-12


@pytest.mark.parametrize("kernel", [(7, 38, 204), (7, 67, 204), (128, 1, 51), (64, 1, 51), (32, 1, 51), (9, 5, 16)])
def test_tiled_front_end_equals_conv_and_max(kernel: tuple[int, int, int]) -> None:
    """musicnn's CPU front end (the timbral ``7 × k`` kernels by Winograd's F(6, 7) along time, the temporal
    ``k × 1`` kernels by sums of F(4, 4) from 64 frames and as tiled GEMMs in their own layout below, each reduced
    over mel in cache; other kernels, 9 x 5 here, by im2col GEMMs) is ``amax(conv2d)`` to float32 rounding, and
    under a bf16 autocast (im2col GEMMs, K padded with zero weights) to bfloat16 rounding."""
    kt, km, channels = kernel
    generator = torch.Generator().manual_seed(kt * km)
    x = torch.randn(3, 1, 187 + kt - 1, 96, generator=generator)
    weight = 0.1 * torch.randn(channels, 1, kt, km, generator=generator)
    bias = torch.randn(channels, generator=generator)
    exact = torch.nn.functional.conv2d(x.double(), weight.double(), bias.double()).amax(dim=3).float()
    expected = torch.nn.functional.conv2d(x, weight, bias).amax(dim=3)
    tiled = conv_max_over_mel(x, weight, bias)
    assert tiled.shape == expected.shape == (3, channels, 187)
    # |y| up to ~10: float32 conv2d is within 6e-6 of float64 here, F(6, 7)'s products within 1.3e-4 (~1.3e-5
    # relative; musicnn's logits stay within 1.4e-5 of the TensorFlow reference, as with F(4, 7))
    assert max_abs(tiled.numpy(), exact.numpy()) <= (2e-4 if km > 1 else 1e-5)
    # inference reuses each thread's work buffers (from the other kernels' runs too): the same values, to the bit
    with torch.inference_mode():
        assert all(torch.equal(conv_max_over_mel(x, weight, bias), tiled) for _ in range(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reduced = conv_max_over_mel(x, weight, bias)
    assert reduced.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: products of these sizes (|y| up to ~10) land within 2^-7 relative
    assert max_abs(reduced.numpy(), expected.numpy()) <= 0.1
    assert max_abs(reduced.numpy(), expected.numpy()) > 0  # it really ran in bfloat16
    # stale work buffers never reach a result: the padded rows read only zeroed or freshly unfolded values
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(2):
            for name, buffer in musicnn._SCRATCH.__dict__.get("pool", {}).items():
                buffer.fill_(float("nan"))
            assert torch.equal(conv_max_over_mel(x, weight, bias), reduced)


def test_bfloat16_max_from_int16_bits_is_the_float_max() -> None:
    """The bfloat16 max over an axis read from the bits as int16 is ``amax``'s, for groups with a positive value,
    groups all negative (including -0.0, infinities and subnormals) and mixed ones."""
    generator = torch.Generator().manual_seed(5)
    values = torch.randn(6, 59, 204, generator=generator).bfloat16()
    values[1] = -values[1].abs()  # every group of this row negative
    values[2, :, :10] = -0.0
    values[2, :3, 10:20] = float("-inf")
    values[3] = float("-inf")
    values[3, 7, 5] = -1e-40  # a negative subnormal: the largest of its group
    values[4] = 0.0
    values[4, :, ::2] = -2.0
    for dim in (1, 0):
        expected = values.amax(dim=dim)
        got = _max_over(values, dim)
        assert got.dtype == torch.bfloat16
        assert torch.equal(got.view(torch.int16), expected.view(torch.int16)), dim  # the same bits, signed zeros too
    assert torch.equal(_max_over(values.float(), 1), values.float().amax(dim=1))
