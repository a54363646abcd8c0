"""One process of tests/core/test_multiprocess.py: ``python _multiprocess_worker.py PORT PID N OUT CKPT``.

Joins a 2-process jax.distributed run on the loopback (2 CPU devices each), runs a sweep and a
population fit across all 4 devices and, as the single-process reference, the same calls on this
process's own devices; writes what it saw to ``OUT`` (JSON).
"""

import json
import sys

import jax

port, pid, nproc, out_path, ckpt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
jax.config.update("jax_platforms", "cpu")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid,
                           initialization_timeout=60)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import spikejax.core.training as training  # noqa: E402
from spikejax.core import EarlyStopping, Validation, fit_population, stack, sweep  # noqa: E402

report = {"process_index": jax.process_index(), "n_devices": len(jax.devices()), "n_local": len(jax.local_devices())}


# ---- sweep: which process computed which setting is baked into each process's own program
def fn(p, x):
    return {"y": jnp.sum(jnp.sin(p["a"] * x)), "by": jnp.int32(jax.process_index())}


params = {"a": jnp.linspace(0.0, 2.0, 7)}  # 7 settings: padded to 8 over the 4 devices
x = jnp.linspace(0.0, 1.0, 16)
out = sweep(fn, params, x)
report["sweep_y"] = np.asarray(out["y"]).tolist()
report["sweep_by"] = np.asarray(out["by"]).tolist()
out_c = sweep(fn, params, x, chunk_size=1)
report["sweep_chunked_y"] = np.asarray(out_c["y"]).tolist()
report["sweep_local_y"] = np.asarray(sweep(fn, params, x, devices=jax.local_devices())["y"]).tolist()


# ---- fit_population: hook, early stopping, one checkpoint writer, resume
class Lin(eqx.Module):
    w: jax.Array
    b: jax.Array


def loss(m, batch, key):
    xb, yb = batch
    r = xb @ m.w + m.b - yb + 0.01 * jax.random.normal(key, yb.shape)
    return jnp.mean(r**2), {"mae": jnp.mean(jnp.abs(r))}


def val(m, data, key):
    xb, yb = data
    return jnp.mean((xb @ m.w + m.b - yb) ** 2)


xd = jax.random.normal(jax.random.PRNGKey(0), (24, 3))
data = (xd, xd @ jnp.array([1.0, -2.0, 0.5]) + 0.3)
pop = stack([Lin(jnp.full(3, 0.1 * i), jnp.zeros(())) for i in range(6)])
opt = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
lrs = np.array([0.3, 0.1, 0.03, 0.01, 0.003, 0.001])
hook_calls = []


def hook(state, curves):
    hook_calls.append(int(state.epoch))
    # a PBT-like move: member 5 copies member 0 after the first chunk (the same on every process)
    if state.epoch == 2:
        return state.take(np.array([0, 1, 2, 3, 4, 0]))
    return None


writes = []
_save = training.save_checkpoint


def counting_save(*a, **k):
    writes.append(int(a[1]))
    return _save(*a, **k)


training.save_checkpoint = counting_save


def fit(n_epochs, devices=None, ckpt_dir=None):
    return fit_population(pop, loss, data, optimizer=opt, key=jax.random.PRNGKey(1), n_epochs=n_epochs, batch_size=8,
                          hyperparams={"learning_rate": lrs}, epochs_per_chunk=2, between_chunks=hook,
                          validation=Validation(fn=val, data=data),
                          early_stopping=EarlyStopping(patience=2, monitor="val", min_delta=1e-2),
                          checkpoint_dir=ckpt_dir, devices=devices)


res = fit(8, ckpt_dir=ckpt + "/full")
report["fit_w"] = np.asarray(res.population.w).tolist()
report["fit_status"] = [str(s) for s in res.status]
report["fit_epochs"] = np.asarray(res.epochs).tolist()
report["fit_loss"] = np.nan_to_num(res.curves["loss"], nan=-1.0).tolist()
report["fit_hook_calls"] = list(hook_calls)
report["fit_writes"] = list(writes)
# resume: 4 epochs, then the same call with 8 continues from the checkpoint
writes.clear()
fit(4, ckpt_dir=ckpt + "/resumed")
res2 = fit(8, ckpt_dir=ckpt + "/resumed")
report["resumed_w"] = np.asarray(res2.population.w).tolist()
report["resumed_writes"] = list(writes)
# the single-process reference: this process's own devices
hook_calls.clear()
ref = fit(8, devices=jax.local_devices())
report["local_w"] = np.asarray(ref.population.w).tolist()
report["local_status"] = [str(s) for s in ref.status]

with open(out_path, "w") as fh:
    json.dump(report, fh)
jax.distributed.shutdown()
