"""One process of the 2-process lfads.pbt test: ``python _multiprocess_pbt_worker.py PORT PID N OUT``
(PORT 0: a single process, no jax.distributed). Prints nothing; writes the population's record as JSON."""

import json
import sys

import jax

port, pid, nproc, out_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
jax.config.update("jax_platforms", "cpu")
if port != "0":
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid,
                               initialization_timeout=60)

from spikejax.lfads import HParams, LFADSConfig, PBTConfig, TrainConfig, generate_lorenz_dataset, pbt  # noqa: E402

d = generate_lorenz_dataset(n_conditions=8, trials_per_condition=6, n_neurons=10, n_steps=400, dt=20, key=jax.random.key(0))
cfg = LFADSConfig(data_dim=10, encod_seq_len=20, ic_enc_dim=6, ci_enc_dim=0, con_dim=0, co_dim=0, ic_dim=4, gen_dim=12,
                  fac_dim=4)
hp = HParams.create(kl_increase_epoch=2, l2_increase_epoch=2)
r = pbt(cfg, {"data": d["train"]["data"]}, {"data": d["valid"]["data"]}, hp=hp, train_config=TrainConfig(batch_size=19),
        pbt_config=PBTConfig(n_workers=8, epochs_per_generation=2, max_generations=3, burn_in_epochs=0,
                             n_no_best_to_stop=3, percent_change_to_stop=0.0),
        key=jax.random.PRNGKey(0))
w = r.workers
col = lambda c: w.pivot(index="generation", columns="worker", values=c).to_numpy().tolist()  # noqa: E731
with open(out_path, "w") as fh:
    json.dump({"devices": len(jax.devices()), "processes": jax.process_count(), "metric": col("metric"),
               "source": col("source"), "lr": col("hp/learning_rate"), "best_worker": r.best_worker}, fh)
if port != "0":
    jax.distributed.shutdown()
