"""Bad-input catalogue: spikejax.lfads (configs, hyperparameters, data, training, inference, files).

Every case is a mistake a user makes; the error comes before anything is compiled and names the
argument (or the file and key). One tiny model is built once, lazily.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

from spikejax import lfads
from spikejax.core import ConfigError, DataFormatError, NonFiniteError, ShapeError, SizeError
from spikejax.lfads import HParams, LFADSConfig, PBTConfig, SearchParam, TrainConfig

from .harness import Mistake, check, params

KEY = jax.random.PRNGKey(0)
TINY = dict(data_dim=3, encod_seq_len=5, ic_enc_dim=4, ci_enc_dim=2, con_dim=2, co_dim=1, ic_dim=3, gen_dim=4,
            fac_dim=2)


@functools.lru_cache(maxsize=None)
def _model():
    """The tiny model's structure (shape-only leaves: nothing is computed or compiled; every case fails first)."""
    return eqx.filter_eval_shape(lfads.LFADS, LFADSConfig(**TINY), key=KEY)


def _counts(n=4, t=5, d=3, fill=1.0):
    return np.full((n, t, d), fill)


def _split(x):
    return {"data": x}


def _train(train_x=None, valid_x=None, **kw):
    train_x = _counts() if train_x is None else train_x
    valid_x = _counts() if valid_x is None else valid_x
    return lfads.train(_model(), _split(train_x), _split(valid_x), key=KEY,
                       config=kw.pop("config", TrainConfig(n_epochs=1, batch_size=2)), **kw)


def _tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="spikejax-cat-lfads-"))


def _h5(**datasets) -> Path:
    import h5py

    path = _tmpdir() / "dataset.h5"
    with h5py.File(path, "w") as fh:
        for k, v in datasets.items():
            fh.create_dataset(k, data=v)
    return path


def _yaml(text: str) -> Path:
    path = _tmpdir() / "run.yaml"
    path.write_text(text)
    return path


MISTAKES = [
    # ---- optimisation settings
    Mistake("train-config-beta1-above-one", lambda: TrainConfig(adam_beta1=1.5), ConfigError,
            r"TrainConfig\.adam_beta1.*< 1.*1\.5", "config"),
    Mistake("train-config-beta2-negative", lambda: TrainConfig(adam_beta2=-0.1), ConfigError,
            r"TrainConfig\.adam_beta2.*>= 0", "config"),
    Mistake("train-config-batch_size-string", lambda: TrainConfig(batch_size="64"), ConfigError,
            r"TrainConfig\.batch_size.*integer.*str '64'", "type"),
    Mistake("train-config-lr-zero", lambda: TrainConfig(learning_rate=0.0), ConfigError,
            r"TrainConfig\.learning_rate.*> 0", "config"),
    Mistake("train-config-lr-nan", lambda: TrainConfig(learning_rate=float("nan")), ConfigError,
            r"TrainConfig\.learning_rate.*finite", "nonfinite"),
    Mistake("train-config-lr_stop-above-lr", lambda: TrainConfig(learning_rate=1e-3, lr_stop=1e-2), ConfigError,
            r"TrainConfig\.lr_stop.*learning_rate", "config"),
    Mistake("train-config-n_epochs-negative", lambda: TrainConfig(n_epochs=-1), ConfigError,
            r"TrainConfig\.n_epochs.*>= 0", "config"),
    Mistake("train-config-n_epochs-float", lambda: TrainConfig(n_epochs=10.0), ConfigError,
            r"TrainConfig\.n_epochs.*integer", "type"),
    Mistake("train-config-sv_rate-one", lambda: TrainConfig(sv_rate=1.0), ConfigError, r"TrainConfig\.sv_rate.*< 1", "config"),
    Mistake("train-config-decay-zero", lambda: TrainConfig(lr_decay=0.0), ConfigError, r"TrainConfig\.lr_decay.*> 0", "config"),
    Mistake("train-config-unknown-key", lambda: TrainConfig.from_dict({"learning_rat": 0.01}), ConfigError,
            r"learning_rat.*did you mean 'learning_rate'", "config"),
    # ---- model architecture
    Mistake("model-config-data_dim-zero", lambda: LFADSConfig(data_dim=0, encod_seq_len=5), ConfigError,
            r"LFADSConfig\.data_dim.*>= 1", "config"),
    Mistake("model-config-reconstruction-typo", lambda: LFADSConfig(data_dim=3, encod_seq_len=5, reconstruction="poison"),
            ConfigError, r"LFADSConfig\.reconstruction.*'poisson'", "config"),
    Mistake("model-config-controller-half", lambda: LFADSConfig(data_dim=3, encod_seq_len=5, co_dim=0), ConfigError,
            r"co_dim.*ci_enc_dim, con_dim and co_dim", "config"),
    Mistake("model-config-ci_lag", lambda: LFADSConfig(data_dim=3, encod_seq_len=5, ci_lag=5), ConfigError,
            r"LFADSConfig\.ci_lag.*encod_seq_len", "config"),
    Mistake("model-config-gen_dim-string", lambda: LFADSConfig(data_dim=3, encod_seq_len=5, gen_dim="200"), ConfigError,
            r"LFADSConfig\.gen_dim.*integer.*'200'", "type"),
    Mistake("model-gen_dim-huge", lambda: lfads.LFADS(LFADSConfig(data_dim=3, encod_seq_len=5, gen_dim=10**6), key=KEY),
            SizeError, r"gen_dim.*would need about", "size"),
    Mistake("model-config-not-a-config", lambda: lfads.LFADS({"data_dim": 3}, key=KEY), TypeError,
            r"config.*LFADSConfig.*dict", "type"),
    # ---- hyperparameters
    Mistake("hparams-dropout-one", lambda: HParams.create(dropout_rate=1.0), ConfigError, r"dropout_rate.*\[0, 1\)", "config"),
    Mistake("hparams-kl-negative", lambda: HParams.create(kl_ic_scale=-1e-4), ConfigError, r"kl_ic_scale.*>= 0", "config"),
    Mistake("hparams-string", lambda: HParams.create(kl_co_scale="1e-4"), ConfigError,
            r"kl_co_scale.*number.*str '1e-4'", "type"),
    Mistake("hparams-unknown", lambda: HParams.create(kl_scale=1e-4), (ConfigError, TypeError), r"kl_scale", "config"),
    Mistake("search-param-range", lambda: SearchParam(name="dropout_rate", low=0.5, high=0.1, sampling="rand"),
            ConfigError, r"SearchParam\.low.*dropout_rate.*low <= high", "config"),
    Mistake("pbt-config-workers-zero", lambda: PBTConfig(n_workers=0), ConfigError, r"PBTConfig\.n_workers.*>= 2", "config"),
    # ---- inference
    Mistake("infer-n_samples-zero", lambda: lfads.infer(_model(), _counts(), key=KEY, n_samples=0), ConfigError,
            r"n_samples.*>= 1.*0", "config"),
    Mistake("infer-n_samples-float", lambda: lfads.infer(_model(), _counts(), key=KEY, n_samples=2.5), ConfigError,
            r"n_samples.*int.*2\.5", "type"),
    Mistake("infer-batch_size-zero", lambda: lfads.infer(_model(), _counts(), key=KEY, batch_size=0), ConfigError,
            r"batch_size.*>= 1", "config"),
    Mistake("infer-data-inf", lambda: lfads.infer(_model(), _with(_counts(), np.inf), key=KEY),
            NonFiniteError, r"data.*inf", "nonfinite"),
    Mistake("train-data-nan-without-sbtt", lambda: _train(train_x=_with(_counts(), np.nan)), NonFiniteError,
            r"train_data\['data'\].*NaN.*sbtt=True", "nonfinite"),
    Mistake("infer-wrong-neurons", lambda: lfads.infer(_model(), _counts(d=7), key=KEY), ShapeError,
            r"data.*7.*data_dim=3|data.*3.*neurons.*7", "shape"),
    Mistake("infer-wrong-time", lambda: lfads.infer(_model(), _counts(t=9), key=KEY), ShapeError,
            r"data.*encod_seq_len", "shape"),
    Mistake("infer-2d-data", lambda: lfads.infer(_model(), np.ones((5, 3)), key=KEY), ShapeError,
            r"data.*\(trials, 5, 3\).*\(5, 3\)", "shape"),
    Mistake("infer-negative-counts", lambda: lfads.infer(_model(), _counts(fill=-1.0), key=KEY), DataFormatError,
            r"data.*negative counts", "value"),
    Mistake("infer-no-trials", lambda: lfads.infer(_model(), np.zeros((0, 5, 3)), key=KEY), ShapeError,
            r"data.*no trials|data.*at least one trial", "shape"),
    Mistake("infer-key-missing", lambda: lfads.infer(_model(), _counts(), key=None), ConfigError, r"key is required", "config"),
    Mistake("infer-string-data", lambda: lfads.infer(_model(), "data.h5", key=KEY), TypeError,
            r"data.*array.*str", "type"),
    # ---- training
    Mistake("train-zero-trials", lambda: _train(train_x=np.zeros((0, 5, 3))), ShapeError,
            r"train_data.*no trials|train_data.*at least one trial", "shape"),
    Mistake("train-zero-valid-trials", lambda: _train(valid_x=np.zeros((0, 5, 3))), ShapeError,
            r"valid_data.*no trials|valid_data.*at least one trial", "shape"),
    Mistake("train-negative-counts", lambda: _train(train_x=_counts(fill=-2.0)), DataFormatError,
            r"train_data\['data'\].*negative counts", "value"),
    Mistake("train-wrong-neurons", lambda: _train(train_x=_counts(d=7)), ShapeError, r"train_data\['data'\].*\(trials, 5, 3\)",
            "shape"),
    Mistake("train-data-not-dict", lambda: lfads.train(_model(), _counts(), _split(_counts()), key=KEY), DataFormatError,
            r"train_data.*dict.*'data'", "type"),
    Mistake("train-config-dict", lambda: _train(config={"n_epochs": 1}), TypeError, r"config.*TrainConfig.*dict", "type"),
    Mistake("train-hp-dict", lambda: _train(hp={"dropout_rate": 0.1}), TypeError, r"hp.*HParams.*dict", "type"),
    Mistake("loss-wrong-neurons", lambda: lfads.loss(_model(), _counts(d=7)), ShapeError, r"data.*\(trials, 5, 3\)", "shape"),
    Mistake("simulate-n_trials-zero", lambda: lfads.simulate(_model(), n_trials=0, key=KEY), ShapeError,
            r"n_trials >= 1", "shape"),
    Mistake("simulate-n_trials-float", lambda: lfads.simulate(_model(), n_trials=2.5, key=KEY), ConfigError,
            r"n_trials.*int.*2\.5", "type"),
    Mistake("simulate-huge", lambda: lfads.simulate(_model(), n_trials=10**9, key=KEY, n_steps=10**6), SizeError,
            r"n_trials.*n_steps.*would need", "size"),
    # ---- files and run configurations
    Mistake("h5-missing-keys", lambda: lfads.load_lfads_h5(_h5(train_data=np.ones((2, 5, 3)))), DataFormatError,
            r"dataset\.h5.*valid_data", "file"),
    Mistake("h5-not-hdf5", lambda: lfads.load_lfads_h5(_yaml("not: hdf5\n")), DataFormatError, r"run\.yaml.*HDF5", "file"),
    Mistake("yaml-float-without-dot", lambda: lfads.load_config(_yaml("learning_rate: 1e-3\n"), data_shape=(4, 5, 3)),
            ConfigError, r"TrainConfig\.learning_rate.*string '1e-3'.*1\.0e-3", "type"),
    Mistake("yaml-renamed-key", lambda: lfads.load_config(_yaml("lr_init: 0.001\n"), data_shape=(4, 5, 3)), ConfigError,
            r"'lr_init' was renamed.*'learning_rate'", "config"),
    Mistake("yaml-unknown-key", lambda: lfads.load_config(_yaml("gen_dimm: 64\n"), data_shape=(4, 5, 3)), ConfigError,
            r"gen_dimm.*did you mean 'gen_dim'", "config"),
    Mistake("yaml-keep_prob-string", lambda: lfads.parse_config({"keep_prob": "0.9"}, data_shape=(4, 5, 3)), ConfigError,
            r"keep_prob.*number.*'0\.9'", "type"),
    Mistake("yaml-seed-float", lambda: lfads.parse_config({"seed": 1.5}, data_shape=(4, 5, 3)), ConfigError,
            r"seed.*int.*1\.5", "type"),
    Mistake("yaml-not-mapping", lambda: lfads.load_config(_yaml("- 1\n- 2\n"), data_shape=(4, 5, 3)), ConfigError,
            r"mapping.*list", "file"),
    Mistake("load_lfads-missing-metadata", lambda: lfads.load_lfads(_tmpdir() / "model.eqx"), FileNotFoundError,
            r"model\.eqx", "file"),
]


def _with(x: np.ndarray, value: float) -> np.ndarray:
    x = np.array(x, dtype=float)
    x[0, 0, 0] = value
    return x


@pytest.mark.parametrize("mistake", params(MISTAKES))
def test_mistake(mistake):
    check(mistake)
