"""Session fixtures of the GFR fitting tests (a small synthetic Allen-like cell bank)."""

import pytest


@pytest.fixture(scope="session")
def gfr_bank(tmp_path_factory):
    """4 synthetic cells (short protocol, 5 kHz) written as NWB and preprocessed: (nwb paths, cells)."""
    import jax

    from spikejax.gfr import make_cell_bank, preprocess_nwb

    root = tmp_path_factory.mktemp("gfr_bank")
    paths = make_cell_bank(root / "nwb", 4, key=jax.random.key(1), sampling_rate=5000.0, short=True)
    cells = [preprocess_nwb(p, bin_sizes=(20, 100)) for p in paths]
    return paths, cells
