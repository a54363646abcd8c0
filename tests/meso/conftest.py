import jax
import numpy as np
import pytest

from spikejax import meso


@pytest.fixture(scope="session")
def data11():
    """The bundled 11-s surrogate (1 s history + 10 s fitted window, 3 observed neurons)."""
    return meso.load_bundled()


@pytest.fixture(scope="session")
def gt():
    return meso.ground_truth()


@pytest.fixture(scope="session")
def activity200():
    return meso.load_activity(meso.bundled_path("T200s"))


@pytest.fixture(scope="session")
def micro11(gt):
    """An 11-s microscopic run at 4-ms output bins (shared by the micro tests)."""
    r = meso.simulate_micro(gt, 55000, key=jax.random.PRNGKey(3), record_every=20)
    return jax.tree_util.tree_map(lambda x: np.asarray(x) if hasattr(x, "shape") else x, r)
