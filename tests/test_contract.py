"""The family contract (docs/design.md) run for every family, as dynamax's test_models runs every model.

For each family, on tiny sizes: simulate → Trajectory → ``to_pandas()`` (``time_ms`` first, units in
the column names) → ``plot`` returns an Axes; the same key gives the same numbers and another key
other numbers; ``jit`` and ``vmap`` of simulate and of the loss agree with eager; the loss is finite
and passes ``check_grads`` in float64; a fit of a few steps returns a :class:`spikejax.core.Result`
whose table, save → load round trip and plot work.
"""

from __future__ import annotations

import importlib
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")  # tests only: the library never selects a backend
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from jax.test_util import check_grads

from spikejax.core import Result, StopReason, Trajectory
from spikejax.core.results import UNITS

FAMILIES = ["gfr", "glm", "meso", "l5", "lfads"]


def _case(name):
    try:
        mod = importlib.import_module(f"tests.contract.{name}")
    except ModuleNotFoundError as exc:  # pragma: no cover - a family without its case fails loudly
        pytest.fail(f"tests/contract/{name}.py is missing: {exc}")
    return mod.CASE


@pytest.fixture(params=FAMILIES)
def case(request):
    return _case(request.param)


_UNIT_RE = re.compile(r".+_(" + "|".join(sorted(UNITS, key=len, reverse=True)) + r")(\[.*\])?$")


def _leaves_close(a, b, rtol=1e-5, atol=1e-6):
    la = [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(a, eqx.is_array))]
    lb = [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(b, eqx.is_array))]
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def _any_differs(a, b):
    la = [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(a, eqx.is_array))]
    lb = [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(b, eqx.is_array))]
    return any(x.shape != y.shape or not np.array_equal(x, y) for x, y in zip(la, lb))


def test_simulate_table_plot_keys(case):
    model = case.make_model()
    k0, k1 = jax.random.key(0), jax.random.key(1)
    traj = case.simulate(model, k0)
    assert isinstance(traj, Trajectory), type(traj)
    assert float(traj.dt) > 0
    df = traj.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) > 0
    assert df.columns[0] == "time_ms", list(df.columns)
    assert np.all(np.diff(np.unique(df["time_ms"].to_numpy())) > 0)
    bad = [c for c in df.columns[1:] if c not in case.id_columns and not _UNIT_RE.match(c)]
    assert not bad, f"{case.name}: columns without a unit suffix {bad}"
    ax = traj.plot()
    assert isinstance(ax, matplotlib.axes.Axes)
    plt.close("all")
    again = case.simulate(model, jax.random.key(0))
    _leaves_close(traj, again, rtol=0, atol=0)
    if case.stochastic:
        assert _any_differs(traj, case.simulate(model, k1)), f"{case.name}: another key gave the same trajectory"
    legacy = case.simulate(model, jax.random.PRNGKey(0))
    assert isinstance(legacy, Trajectory)


def test_simulate_jit_vmap(case):
    model = case.make_model()
    keys = jax.random.split(jax.random.key(3), 2)
    eager = [case.simulate(model, k) for k in keys]
    jitted = eqx.filter_jit(case.simulate)(model, keys[0])
    _leaves_close(eager[0], jitted, rtol=1e-4, atol=1e-5)
    batched = eqx.filter_vmap(case.simulate, in_axes=(None, 0))(model, keys)
    for i in range(2):
        one = jax.tree_util.tree_map(lambda x: x[i] if eqx.is_array(x) else x, batched)
        _leaves_close(eager[i], one, rtol=1e-4, atol=1e-5)


def test_loss_finite_jit_vmap(case):
    model = case.make_model()
    data = case.make_data(model, jax.random.key(5))
    key = jax.random.key(7)
    value = case.loss(model, data, key)
    assert jnp.ndim(value) == 0 and bool(jnp.isfinite(value)), value
    np.testing.assert_allclose(eqx.filter_jit(case.loss)(model, data, key), value, rtol=1e-4)
    keys = jnp.stack([key, key])
    both = eqx.filter_vmap(case.loss, in_axes=(None, None, 0))(model, data, keys)
    np.testing.assert_allclose(np.asarray(both), [float(value)] * 2, rtol=1e-4)
    grads = eqx.filter_grad(lambda m: case.loss(m, data, key))(model)
    leaves = jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)


@pytest.mark.requires_x64
def test_loss_check_grads_float64(case):
    model = case.make_model()
    data = case.make_data(model, jax.random.key(5))
    key = jax.random.key(7)
    x0 = case.grad_params(model)
    x0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), x0)

    def f(x):
        return case.loss(eqx.tree_at(case.grad_params, model, x), data, key)

    assert jnp.asarray(f(x0)).dtype == jnp.float64
    check_grads(f, (x0,), order=1, modes=case.grad_modes, atol=case.grad_atol, rtol=case.grad_rtol)


def test_fit_result_table_save_load_plot(case, tmp_path):
    model = case.make_model()
    data = case.make_data(model, jax.random.key(5))
    res = case.fit(model, data, jax.random.key(11))
    assert isinstance(res, Result), type(res)
    assert isinstance(res.stop_reason, StopReason)
    assert isinstance(res.history, pd.DataFrame) and len(res.history) > 0
    assert float(res.seconds) > 0
    table = res.to_pandas()
    assert isinstance(table, pd.DataFrame) and len(table) > 0
    path = res.save(tmp_path / "result.h5")
    back = type(res).load(path)
    assert type(back) is type(res)
    _leaves_close(res.model, back.model, rtol=0, atol=0)
    pd.testing.assert_frame_equal(res.history.reset_index(drop=True), back.history.reset_index(drop=True), check_dtype=False)
    pd.testing.assert_frame_equal(table.reset_index(drop=True), back.to_pandas().reset_index(drop=True), check_dtype=False)
    assert back.stop_reason == res.stop_reason
    ax = res.plot()
    assert isinstance(ax, matplotlib.axes.Axes)
    plt.close("all")
    again = case.fit(model, data, jax.random.key(11))
    _leaves_close(res.model, again.model, rtol=1e-5, atol=1e-6)


# ---- the public surface: verbs, explicit __all__, docs, CLI (replaces tests/test_families_api.py) ---------

import inspect  # noqa: E402
import types  # noqa: E402

#: the fitting verbs the originals' users know (docs/design.md, "Verbs")
FIT_VERBS = {"gfr": ("fit_cells", "train_network"), "glm": ("tune",), "meso": ("fit_em",), "l5": ("tune", "tune_constrained"),
             "lfads": ("train", "pbt")}


@pytest.mark.parametrize("family", FAMILIES)
def test_public_surface(family):
    mod = importlib.import_module(f"spikejax.{family}")
    assert mod.__doc__, f"spikejax.{family} needs a module docstring"
    names = mod.__dict__.get("__all__")
    assert isinstance(names, (list, tuple)) and names, f"spikejax.{family} must declare an explicit __all__"
    assert len(set(names)) == len(names), "duplicate names in __all__"
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, missing
    modules = [n for n in names if isinstance(getattr(mod, n), types.ModuleType)]
    assert not modules, f"modules are not public names: {modules}"
    undocumented = [n for n in names if callable(getattr(mod, n)) and not inspect.getdoc(getattr(mod, n))]
    assert not undocumented, f"public callables without docstrings: {undocumented}"
    for verb in ("simulate", "loss") + FIT_VERBS[family]:
        assert verb in names and inspect.isfunction(getattr(mod, verb)), f"spikejax.{family}.{verb} is part of the contract"
    loss_key = inspect.signature(mod.loss).parameters.get("key")
    assert loss_key is not None and loss_key.kind is inspect.Parameter.KEYWORD_ONLY and loss_key.default is None
    for name in names:
        obj = getattr(mod, name)
        if name.startswith("plot_") and inspect.isfunction(obj):
            ax = inspect.signature(obj).parameters.get("ax")
            assert ax is not None and ax.kind is inspect.Parameter.KEYWORD_ONLY and ax.default is None, name
    results = [n for n in names if inspect.isclass(getattr(mod, n)) and issubclass(getattr(mod, n), Result)]
    trajectories = [n for n in names if inspect.isclass(getattr(mod, n)) and issubclass(getattr(mod, n), Trajectory)]
    assert results and trajectories, (results, trajectories)


#: Functions that several packages define on purpose: one verb, the same meaning, each family's own version.
SHARED_VERBS = {
    "simulate": "the contract's verb", "loss": "the contract's verb",
    "tune": "glm and l5: the originals' verb (tune parameters to targets)",
    "evaluate": "gfr and l5: score a model with the family's metrics",
    "load_config": "l5 and lfads: read the family's config file",
    "plot_rates": "gfr and lfads: rates against time", "plot_activity": "meso and l5: activity against time",
    "mean_isi": "glm's takes a GLMTrajectory (its dt) besides a raster; same quantity as core's",
    "bits_per_spike": "lfads's is nlb_tools' float64 host computation; same quantity as core's",
}


def test_no_two_public_classes_or_functions_share_a_name():
    seen: dict[str, str] = {}
    clashes = []
    for where in ["core"] + FAMILIES:
        mod = importlib.import_module(f"spikejax.{where}")
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            origin = f"{obj.__module__}.{obj.__qualname__}"
            if name in seen and seen[name] != origin and not (inspect.isfunction(obj) and name in SHARED_VERBS):
                clashes.append(f"{name}: {seen[name]} vs {origin}")
            seen.setdefault(name, origin)
    assert not clashes, clashes


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_and_demo_entry_points(family, capsys):
    from spikejax import cli

    parser = cli.build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([family, "--help"])
    assert exc.value.code == 0
    assert family in capsys.readouterr().out
    demo = importlib.import_module(f"spikejax.{family}.demo")
    params = inspect.signature(demo.run).parameters
    assert list(params)[0] in ("out_dir", "out")
    assert params["quick"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["seed"].kind is inspect.Parameter.KEYWORD_ONLY
