"""Bundled constants of the L5 model (``spikejax/data/l5``) and the input-setting tables."""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pandas as pd

from .. import data as _data
from ..core.errors import ConfigError, DataFormatError

__all__ = ["load_params", "w_compare", "indegree", "load_input_table", "INPUT_TABLES"]

INPUT_TABLES = (
    "input_data",
    "visual_input",
    "auditory_input",
    "motor_input",
    "visual_input_thal",
    "auditory_input_thal",
    "motor_input_thal",
)


@functools.lru_cache(maxsize=1)
def _params_cached() -> str:
    return _data.path("l5/l5_params.json").read_text(encoding="utf-8")


def load_params() -> dict[str, Any]:
    """The bundled ``l5_params.json`` (N, w_target, prob, K, w_noise, lambda, w_compare, configs)."""
    return json.loads(_params_cached())


def w_compare(w_target: Any = None, prob: Any = None, eigval: float | None = None) -> np.ndarray:
    """The original's target block-mean weights ``w_target * prob / 2.959...`` (rows = presynaptic)."""
    p = load_params()
    wt = np.asarray(p["w_target_psp"]["values"] if w_target is None else w_target, dtype=float)
    pr = np.asarray(p["prob"]["values"] if prob is None else prob, dtype=float)
    lam = float(p["eigval_used_for_w_compare"] if eigval is None else eigval)
    return wt * pr / lam


def indegree(prob: Any, N: Any) -> np.ndarray:
    """Fixed in-degrees K_ab = round(p_ab * N_a) (numpy round-half-even), capped by the pool size.

    Rows = presynaptic type a, columns = postsynaptic type b. On the diagonal the pool excludes
    the neuron itself (no autapses).
    """
    pr = np.asarray(prob, dtype=float)
    n = np.asarray(N, dtype=int)
    k = np.round(pr * n[:, None]).astype(int)
    pool = np.repeat(n[:, None], len(n), axis=1) - np.eye(len(n), dtype=int)
    return np.minimum(k, np.maximum(pool, 0))


def load_input_table(name: str) -> pd.DataFrame:
    """One of the bundled input-setting tables (see ``spikejax/data/l5/README.md``).

    ``input_data`` has columns cs/cc/pv/sst ``_steady`` then ``_amplitude``; the visual/auditory/motor
    tables have the four amplitudes, ``thal_degree_index``, ``thal_scalar_orthogonal`` and
    ``thal_scalar_preferred``.
    """
    if name not in INPUT_TABLES:
        raise ConfigError(f"name must be one of {', '.join(INPUT_TABLES)}; got {name!r}")
    path = _data.path(f"l5/{name}.csv")
    df = pd.read_csv(path)
    required = (
        ["cs_steady", "cc_steady", "pv_steady", "sst_steady"] if name == "input_data" else ["thal_degree_index"]
    ) + ["cs_amplitude", "cc_amplitude", "pv_amplitude", "sst_amplitude"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataFormatError(f"{path} misses column(s) {missing}")
    if not np.all(np.isfinite(df.to_numpy(dtype=float))):
        raise DataFormatError(f"{path} holds non-finite values")
    return df
