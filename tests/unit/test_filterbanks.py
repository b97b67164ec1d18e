"""The shipped mel filterbanks are what librosa computes from their parameters."""

from __future__ import annotations

import numpy as np
import pytest

from catalogue_tagger import filterbanks


@pytest.mark.parametrize("name", sorted(filterbanks.FILTERBANKS))
def test_shipped_filterbank_is_librosas(name: str) -> None:
    shipped, computed = filterbanks.mel(name), filterbanks.compute(name)
    assert shipped.dtype == computed.dtype and shipped.shape == computed.shape
    # the same up to the last bits of float64: numpy's vectorised float64 math rounds differently on different
    # CPUs (an AVX2 CPU differs from the AVX-512 CPU the banks were computed on by up to 6e-15 in sota-htk)
    np.testing.assert_allclose(shipped, computed, rtol=1e-12, atol=1e-15)


def test_each_call_gives_a_copy_and_unknown_names_are_refused() -> None:
    first = filterbanks.mel("tempo")
    first[:] = 0
    assert filterbanks.mel("tempo").any()
    with pytest.raises(KeyError, match="known: musicnn"):
        filterbanks.mel("nope")
