"""The family contract for ``spikejax.lfads`` on a tiny model (public API only)."""

from __future__ import annotations

import jax
import numpy as np

from spikejax import lfads

from .case import FamilyCase

N_TRIALS = 4


def _model():
    cfg = lfads.LFADSConfig(data_dim=4, encod_seq_len=6, ic_enc_dim=3, ci_enc_dim=2, con_dim=2, co_dim=1, ic_dim=2,
                            gen_dim=5, fac_dim=2, dt=20.0)
    return lfads.LFADS(cfg, key=jax.random.key(0))


def _simulate(model, key):
    return lfads.simulate(model, n_trials=N_TRIALS, key=key)


def _data(model, key):
    traj = lfads.simulate(model, n_trials=8, key=key)
    return {"data": np.swapaxes(np.asarray(traj.observations), 0, 1)}  # trials × time × neurons


def _loss(model, data, key):
    return lfads.loss(model, data, key=key)


def _fit(model, data, key):
    cfg = lfads.TrainConfig(batch_size=4, n_epochs=2, learning_rate=1e-2)
    hp = lfads.HParams.create(kl_increase_epoch=1, l2_increase_epoch=1)
    return lfads.train(model, data, data, hp=hp, config=cfg, key=key, progress=False)


CASE = FamilyCase(
    name="lfads",
    make_model=_model,
    simulate=_simulate,
    make_data=_data,
    loss=_loss,
    grad_params=lambda m: (m.gen_cell.w_in, m.readout.bias),
    fit=_fit,
    stochastic=True,
    loss_stochastic=True,
)
