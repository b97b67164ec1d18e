"""Which CUDA device a ``cpu | cuda[:N]`` device setting names."""

from __future__ import annotations

from catalogue_tagger.errors import BackendUnavailable


def cuda_index(device: str) -> int:
    """``"cuda"`` → 0, ``"cuda:1"`` → 1; raises :class:`BackendUnavailable` for a device that is not CUDA."""
    kind, _, index = device.partition(":")
    if kind != "cuda":
        raise BackendUnavailable(f"device {device!r} is not a CUDA device")
    if not index:
        return 0
    if not index.isdigit():
        raise BackendUnavailable(f"device {device!r}: the CUDA index must be a number")
    return int(index)
