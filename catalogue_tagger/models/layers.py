"""Layers that reproduce TensorFlow 1 inference arithmetic where PyTorch's defaults differ."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import numpy as np
import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)

TF_BN_EPSILON = 1e-3  # tf.layers.batch_normalization's default; PyTorch's is 1e-5


class FrozenBatchNorm(nn.Module):
    """Inference-only batch norm over channel dimension ``dim``, computed as TF's ``batchnorm/add_1``.

    TF evaluates ``x * m + (beta - mean * m)`` with ``m = gamma * rsqrt(var + eps)``; the same formula here
    keeps float32 rounding close to the reference. It exports as Mul/Add, which every runtime supports.
    ``weight``/``bias`` (gamma/beta) are parameters and the moving statistics buffers, as in ``nn.BatchNorm``.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, num_features: int, dim: int = 1, eps: float = TF_BN_EPSILON) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def scale(self) -> torch.Tensor:
        return self.weight * torch.rsqrt(self.running_var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[self.dim] = -1
        scale = self.scale()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(shape) + shift.reshape(shape)


def tf_batchnorm(variables: Mapping[str, np.ndarray], tf_name: str, prefix: str) -> dict[str, torch.Tensor]:
    """State-dict entries of a :class:`FrozenBatchNorm` at ``prefix`` from TF BN variables ``tf_name/*``."""
    return {
        f"{prefix}.weight": torch.from_numpy(variables[f"{tf_name}/gamma"]),
        f"{prefix}.bias": torch.from_numpy(variables[f"{tf_name}/beta"]),
        f"{prefix}.running_mean": torch.from_numpy(variables[f"{tf_name}/moving_mean"]),
        f"{prefix}.running_var": torch.from_numpy(variables[f"{tf_name}/moving_variance"]),
    }


def tf_conv2d(variables: Mapping[str, np.ndarray], tf_name: str, prefix: str) -> dict[str, torch.Tensor]:
    """``Conv2d`` weights from a TF kernel ``[h, w, in, out]`` (HWIO) to OIHW."""
    kernel = variables[f"{tf_name}/kernel"]
    return {
        f"{prefix}.weight": torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()),
        f"{prefix}.bias": torch.from_numpy(variables[f"{tf_name}/bias"]),
    }


def tf_dense(variables: Mapping[str, np.ndarray], tf_name: str, prefix: str) -> dict[str, torch.Tensor]:
    """``Linear`` weights from a TF dense kernel ``[in, out]``."""
    return {
        f"{prefix}.weight": torch.from_numpy(variables[f"{tf_name}/kernel"].T.copy()),
        f"{prefix}.bias": torch.from_numpy(variables[f"{tf_name}/bias"]),
    }


def fold_batchnorm(module: ModuleT) -> ModuleT:
    """``module`` with every ``Conv`` directly followed by a ``BatchNorm`` in an ``nn.Sequential`` folded into one
    convolution (inference only: the moving statistics become weights and bias), and ReLUs made in-place.

    Saves the two full passes over each conv output that BN and an out-of-place ReLU cost; on CPU that was
    ~25 % of SampleCNN's time. Results move by float rounding only.
    """
    for child in module.children():
        fold_batchnorm(child)
    if isinstance(module, nn.Sequential):
        layers = list(module)
        folded: list[nn.Module] = []
        for layer in layers:
            previous = folded[-1] if folded else None
            if isinstance(layer, nn.modules.batchnorm._BatchNorm) and isinstance(previous, nn.modules.conv._ConvNd):
                folded[-1] = torch.nn.utils.fusion.fuse_conv_bn_eval(previous, layer)
            elif isinstance(layer, nn.ReLU) and previous is not None:  # its input is this Sequential's own tensor
                folded.append(nn.ReLU(inplace=True))
            else:
                folded.append(layer)
        if len(folded) != len(layers) or any(a is not b for a, b in zip(folded, layers)):
            for name in list(module._modules):
                del module._modules[name]
            for i, layer in enumerate(folded):
                module.add_module(str(i), layer)
    return module
