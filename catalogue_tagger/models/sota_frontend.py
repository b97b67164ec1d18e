"""The torchaudio-style dB-mel front end of the sota-music-tagging-models taggers, as plain tensor ops.

Won et al. (SMC 2020) trained with torchaudio 0.x ``MelSpectrogram(sample_rate=16000, n_fft=512,
f_min=0, f_max=8000, n_mels=96)`` then ``AmplitudeToDB()`` then ``BatchNorm2d(1)``: a periodic Hann
window of 512, hop 256, ``center=True`` with reflect padding of 256 samples on each side **of every
window the network sees**, power spectrum, HTK mel filterbank without area normalisation, then
``10 * log10(max(mel, 1e-10))``. Here:

- the reflect padding is two constant-index gathers (ONNX ``Gather``), not ``F.pad(mode="reflect")``;
- the DFT is one float32 matmul with a Hann-windowed cosine/sine basis (no ``torch.stft``: complex ops
  do not export); framing is Reshape/Slice/Concat because the hop is half the frame;
- the mel matrix is a constant computed with librosa (``htk=True, norm=None``), which is torchaudio's
  ``melscale_fbanks(..., norm=None, mel_scale="htk")`` computed in float64;
- ``spec_bn`` is the checkpoint's input batch norm, kept here so that the whole front end (the part that
  must stay float32 in a float16 engine) sits under one module path, ``frontend``.

Precision note: the power of quiet bands goes through ``10 log10``; keep this module in true float32
(no TF32 matmuls on CUDA, float32 layers in a float16 TensorRT engine).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from catalogue_tagger import filterbanks
from catalogue_tagger.models.frontend import dft_basis
from catalogue_tagger.models.layers import FrozenBatchNorm

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
AMIN = 1e-10  # AmplitudeToDB's floor: silence is -100 dB
BN_EPSILON = 1e-5  # PyTorch's BatchNorm default, used by every batch norm of these checkpoints
CENTER_PAD = N_FFT // 2  # torchaudio's centred STFT pads each window by 256 samples on both sides


def n_frames(window: int) -> int:
    """STFT frames torchaudio gives for a window of ``window`` samples (``1 + window // 256``)."""
    return 1 + window // HOP


def htk_mel_filterbank() -> npt.NDArray[np.float32]:
    """``[257, 96]``: HTK-scale triangles from 0 to 8 kHz, peak 1, no area normalisation."""
    return np.ascontiguousarray(filterbanks.mel("sota-htk").T, dtype=np.float32)  # librosa's, shipped


def hann_window() -> npt.NDArray[np.float32]:
    """``[512]`` periodic Hann window, as ``torch.hann_window(512)`` (stored in every checkpoint)."""
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)


class DbMel(nn.Module):
    """``wave[B, window] -> spec_bn(dB-mel)[B, 1, 96, 1 + window // 256]``, torchaudio's framing."""

    basis: torch.Tensor
    mel: torch.Tensor
    head_index: torch.Tensor
    tail_index: torch.Tensor
    amin: torch.Tensor

    def __init__(self, window: int) -> None:
        super().__init__()
        if window <= CENTER_PAD:
            raise ValueError(f"window of {window} samples is too short for reflect padding of {CENTER_PAD}")
        self.window = window
        self.n_frames = n_frames(window)  # fixed, so framing exports as a Reshape to constant sizes
        # Constants, not weights: rebuilt at construction, kept out of the state dict and the weights file.
        self.register_buffer("basis", torch.from_numpy(dft_basis(N_FFT).astype(np.float32)), persistent=False)
        self.register_buffer("mel", torch.from_numpy(htk_mel_filterbank()), persistent=False)
        # reflect padding (numpy/torch "reflect": the edge sample is not repeated)
        head = np.arange(CENTER_PAD, 0, -1)  # samples 256, 255, ..., 1
        tail = np.arange(window - 2, window - 2 - CENTER_PAD, -1)  # samples n-2, n-3, ..., n-257
        self.register_buffer("head_index", torch.from_numpy(head.astype(np.int64)), persistent=False)
        self.register_buffer("tail_index", torch.from_numpy(tail.astype(np.int64)), persistent=False)
        self.register_buffer("amin", torch.tensor(AMIN, dtype=torch.float32), persistent=False)
        self.bn = FrozenBatchNorm(1, eps=BN_EPSILON)  # the checkpoint's spec_bn, on the dB values

    def power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Mel power ``[B, frames, 96]`` of the reflect-padded window."""
        padded = torch.cat([wave[:, self.head_index], wave, wave[:, self.tail_index]], dim=1)
        used = (self.n_frames + 1) * HOP
        chunks = padded[:, :used].reshape(wave.shape[0], self.n_frames + 1, HOP)  # [B, frames + 1, 256]
        frames = torch.cat([chunks[:, :-1], chunks[:, 1:]], dim=2)  # [B, frames, 512]
        spectrum = frames @ self.basis  # [B, frames, 2 * 257]: real parts, then imaginary parts
        n_bins = N_FFT // 2 + 1
        real, imag = spectrum[..., :n_bins], spectrum[..., n_bins:]
        return (real * real + imag * imag) @ self.mel

    def db_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, 96, frames]`` dB mel before ``spec_bn`` (the reference's ``logmel_chunk0``)."""
        with torch.autocast(wave.device.type, enabled=False):  # the DFT stays float32 under a bf16/fp16 autocast
            power = self.power_mel(wave.float())
        db = 10.0 * torch.log10(torch.maximum(power, self.amin))
        return db.transpose(1, 2)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        normalised: torch.Tensor = self.bn(self.db_mel(wave).unsqueeze(1))
        return normalised
