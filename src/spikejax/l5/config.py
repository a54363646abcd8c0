"""Configuration of the L5 rate model: a typed dataclass with the original's keys.

The defaults are the original repository's debug configuration (its effective default):
5 simulations, ``dt`` 0.01 (the original's ``delta_t``), ``tau`` 0.1, ``Ttau`` 250 (2500 steps), learning from step 500,
``tau_learn`` 1997.467, ``tau_threshold`` 2.7922, ``Slide_BCM``, amplitudes [6, 5, 10, 5],
``spatialF`` 10, ``temporalF`` 50, ``spatialPhase`` 1. Time is in model units (``tau`` = 0.1);
rates and amplitudes are dimensionless.

A config is loaded from a Python file (top-level names, as the original ``configs/*.py``), a JSON
file or a YAML file with :func:`load_config`. :class:`L5Config` is a frozen
:class:`spikejax.core.Config`: every value is checked once, at construction, and a mistake raises
:class:`~spikejax.core.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import runpy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..core.config import Config, option
from ..core.errors import ConfigError, DataFormatError, ShapeError
from .params import load_params

__all__ = [
    "TYPES",
    "RULES",
    "INTEGRATORS",
    "NONLINEARITIES",
    "NEURON_MODES",
    "PHASE_KEYS",
    "STIMULI",
    "VARIANTS",
    "L5Config",
    "load_config",
    "debug_config",
    "phase_list_of",
]

TYPES = ("CS", "CC", "PV", "SST")
RULES = ("None", "BCM", "Slide_BCM", "Oja", "Cov")
INTEGRATORS = ("forward_euler", "runge_kutta")
NONLINEARITIES = ("supralinear", "softplus", "sigmoid", "tanh")
NEURON_MODES = ("all", "excit_only", "inhibit_only")
PHASE_KEYS = ("No_Alter", "CC_CS_Alter", "All_Alter")
PHASE_MODES = ("all", "CS", "CC", "PV", "SST", "Rest")
STIMULI = ("counterphase", "drifting", "semicircle", "thalamic")
VARIANTS = ("faithful", "corrected")
THRESHOLD_FILTERS = ("window", "ema")


def phase_list_of(phase_key: str) -> tuple[str, ...]:
    """The original's ``phase_list`` for a phase key (a sequence indexed by ``step % len``)."""
    if phase_key == "No_Alter":
        return ("all",) * 10
    if phase_key == "CC_CS_Alter":
        return ("CS",) * 10 + ("CC",) * 10 + ("Rest",) * 10
    if phase_key == "All_Alter":
        return ("CS",) * 10 + ("CC",) * 10 + ("PV",) * 10 + ("SST",) * 10 + ("Rest",) * 10
    raise ConfigError(f"phase_key must be one of {', '.join(PHASE_KEYS)}; got {phase_key!r}")


def _p(name: str):
    return load_params()[name]


def _default_w_target() -> list[list[float]]:
    return [list(map(float, r)) for r in _p("w_target_psp")["values"]]


def _default_prob() -> list[list[float]]:
    return [list(map(float, r)) for r in _p("prob")["values"]]


def _tuple2(rows) -> tuple:
    return tuple(tuple(float(x) for x in r) for r in rows)


@dataclass(frozen=True)
class L5Config(Config):
    """All settings of one L5 experiment (the original's key names; time in the model's unit, read as ms).

    A frozen :class:`spikejax.core.Config`: every value is checked once, at construction (a
    mistake raises :class:`~spikejax.core.errors.ConfigError` or
    :class:`~spikejax.core.errors.ShapeError` naming the key); :meth:`replace` builds a new one.

    Attributes
    ----------
    sim_number : int
        Independent networks per run.
    N : tuple[int, ...]
        Population sizes (CS, CC, PV, SST).
    w_target, prob : 4x4 tuples
        Type-level PSP amplitudes and connection probabilities, rows = presynaptic type.
    w_noise : float
        s.d. of the per-synapse |N(w, w_noise)| magnitudes.
    w_initial : 4x4 tuple or None
        Type-level weights used to sample W. ``None`` means the original's HEAD initialisation
        (|N(w_target, init_sd_rel*|w_target|)| on the trained types, PV/SST rows negated).
    dt, tau, Ttau : float
        Integration step (ms; the original's ``delta_t``), rate time constant (ms; scalar or one
        per type) and run length in units of ``tau`` (``n_steps = int(Ttau*tau/dt)``). The
        original model is dimensionless (tau = 0.1); spikejax reads its time unit as ms.
    number_steps_before_learning : int
        Learning is off for these first steps.
    tau_learn, tau_threshold : float
        Learning and threshold time constants (ms).
    learning_rule : str
        One of ``None``, ``BCM``, ``Slide_BCM``, ``Oja``, ``Cov``.
    variant : str
        ``faithful`` (original, bugs included) or ``corrected`` (presynaptic rate, Dale/sign
        projection, structural mask, intended masks and phases).
    neurons : str
        Which types learn: ``all``, ``excit_only``, ``inhibit_only``.
    phase_key : str
        ``No_Alter``, ``CC_CS_Alter`` or ``All_Alter`` (see :func:`phase_list_of`).
    nonlinearity_rule, gamma, phi_lo, phi_hi, smooth_beta
        Rate nonlinearity: ``supralinear`` (clipped ReLU with bounds ``phi_lo``/``phi_hi``, power
        ``gamma``), ``softplus`` (smooth clipped ReLU with sharpness ``smooth_beta``), ``sigmoid``
        and ``tanh`` (only in the corrected variant: the original crashes on them).
    integrator : str
        ``forward_euler`` or ``runge_kutta`` (the original RK4 with its clipping at 0).
    degree : tuple[float, ...]
        Stimulus directions (degrees).
    steady_input : tuple[int, ...]
        Per type, 1 for a constant (steady) drive.
    amplitude : tuple[float, ...]
        Input amplitudes (A_CS, A_CC, A_PV, A_SST).
    spatialF, temporalF, spatialPhase : float
        Grating spatial frequency, temporal frequency (rad per *step*) and phase.
    stimulus : str
        ``counterphase`` (HEAD), ``drifting`` (parent), ``semicircle`` (first upload) or
        ``thalamic`` (drifting grating with direction-dependent gains on a subset of E cells).
    thal_fraction, thal_degree_index, thal_scalar_orthogonal, thal_scalar_preferred
        Thalamic-gain variant settings (fractions of CS and CC cells, preferred direction index,
        gains g_orth and g_pref).
    block : int
        Block-averaging length in steps (25 in the original, "mean period").
    eval_steps : int
        Evaluation window: the last ``eval_steps`` steps.
    threshold_filter : str
        ``window`` (the original's truncated windows, exact, with a ring buffer) or ``ema``
        (plain leaky integrators without truncation: cheaper, for tuning).
    init_sd_rel : float
        Relative s.d. of the HEAD type-level weight initialisation (0.1).
    Max_act : float
        The original's activity ceiling used by its stability loss.
    seed : int
        Seed the CLI turns into ``key=jax.random.PRNGKey(seed)``; no library function reads it.
    """

    sim_number: int = option(5, ge=1, help="independent networks per run")
    N: tuple[int, ...] = option(default_factory=lambda: (45, 275, 46, 34), ge=1, help="population sizes CS, CC, PV, SST")
    w_target: tuple[tuple[float, ...], ...] = option(default_factory=lambda: _tuple2(_default_w_target()),
                                                     help="type-level PSP amplitudes (rows = presynaptic type)")
    prob: tuple[tuple[float, ...], ...] = option(default_factory=lambda: _tuple2(_default_prob()),
                                                 help="type-level connection probabilities (rows = presynaptic type)")
    w_noise: float = option(0.03, ge=0, help="s.d. of the per-synapse weight magnitudes")
    w_initial: tuple[tuple[float, ...], ...] | None = option(None, help="type-level initial weights (None: HEAD init)")
    init_sd_rel: float = option(0.1, ge=0, help="relative s.d. of the HEAD type-level weight initialisation")
    dt: float = option(0.01, gt=0, unit="ms", help="integration step (the original's delta_t)")
    tau: float | tuple[float, ...] = option(0.1, gt=0, unit="ms", help="rate time constant (one or one per type)")
    Ttau: float = option(250.0, gt=0, help="run length in units of tau")
    number_steps_before_learning: int = option(500, ge=0, help="learning is off for these first steps")
    tau_learn: float = option(1997.467, gt=0, unit="ms", help="learning time constant")
    tau_threshold: float = option(2.7922382927606537, gt=0, unit="ms", help="threshold time constant")
    learning_rule: str = option("Slide_BCM", help="None, BCM, Slide_BCM, Oja or Cov")
    variant: str = option("faithful", choices=VARIANTS, help="faithful (bugs included) or corrected")
    neurons: str = option("all", choices=NEURON_MODES, help="which types learn")
    phase_key: str = option("No_Alter", choices=PHASE_KEYS, help="learning phases")
    nonlinearity_rule: str = option("supralinear", choices=NONLINEARITIES, help="rate nonlinearity")
    gamma: float = option(1.0, gt=0, help="power of the supralinear nonlinearity")
    phi_lo: float = option(0.01, help="lower bound of the clipped ReLU")
    phi_hi: float = option(500.0, help="upper bound of the clipped ReLU")
    smooth_beta: float = option(10.0, gt=0, help="sharpness of the softplus nonlinearity")
    update_function: str = option("version_normal", choices=("version_normal",), help="the original's update function")
    integrator: str = option("forward_euler", choices=INTEGRATORS, help="forward_euler or runge_kutta")
    degree: tuple[float, ...] = option(default_factory=lambda: (0.0, 90.0, 180.0, 270.0), unit="deg",
                                       help="stimulus directions")
    steady_input: tuple[int, ...] = option(default_factory=lambda: (0, 0, 0, 0), help="1 for a steady drive, per type")
    amplitude: tuple[float, ...] = option(default_factory=lambda: (6.0, 5.0, 10.0, 5.0), help="input amplitudes per type")
    spatialF: float = option(10.0, help="grating spatial frequency")
    temporalF: float = option(50.0, help="grating temporal frequency (rad per step)")
    spatialPhase: float = option(1.0, help="grating spatial phase")
    stimulus: str = option("counterphase", choices=STIMULI, help="stimulus kind")
    thal_fraction: tuple[float, ...] = option(default_factory=lambda: (0.35, 0.15), help="thalamic fractions (CS, CC)")
    thal_degree_index: int = option(0, ge=0, help="index of the preferred direction (thalamic stimulus)")
    thal_scalar_orthogonal: float = option(1.0, help="thalamic gain g_orth")
    thal_scalar_preferred: float = option(1.0, help="thalamic gain g_pref")
    block: int = option(25, ge=1, help="block-averaging length (steps)")
    eval_steps: int = option(500, ge=1, help="evaluation window: the last eval_steps steps")
    threshold_filter: str = option("window", choices=THRESHOLD_FILTERS, help="window (exact) or ema")
    Max_act: float = option(15.0, gt=0, help="activity ceiling of the original's stability loss")
    tuning: bool = option(False, help="the original's tuning flag (unused)")
    seed: int = option(42, help="seed the CLI turns into a key (no library function reads it)")
    name_sim: str = option("l5", help="name used in output file names")

    # ------------------------------------------------------------------ derived
    @property
    def n_steps(self) -> int:
        """Number of integration steps, int(Ttau * tau / dt) (the original's formula, scalar tau)."""
        tau0 = float(np.asarray(self.tau, dtype=float).reshape(-1)[0])
        return int((self.Ttau * tau0) / self.dt)

    @property
    def window_length(self) -> int:
        """History window of the threshold rules, int(-(tau_threshold/dt) ln 0.1)."""
        return int(-1 * (self.tau_threshold / self.dt) * np.log(0.1))

    @property
    def phase_list(self) -> tuple[str, ...]:
        return phase_list_of(self.phase_key)

    @property
    def n_total(self) -> int:
        return int(sum(self.N))

    #: Keys of the original's configs that are spelled differently here.
    ALIASES: ClassVar[dict[str, str]] = {"amplitude_CS_CC_PV_SST": "amplitude", "w_initial_type": "w_initial", "delta_t": "dt"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = True) -> L5Config:
        """Build a config from a mapping (JSON, YAML, ``--set``, the original's ``configs/*.py``).

        The original's spellings ``delta_t``, ``amplitude_CS_CC_PV_SST`` and ``w_initial_type``
        are accepted; unknown keys raise :class:`ConfigError` naming the key and the closest
        valid one (``strict=False`` ignores them, for the original's Python configs).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"an L5 config must be a mapping of keys to values, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        kw = {}
        for k, v in data.items():
            k2 = cls.ALIASES.get(k, k)
            if k2 in names:
                kw[k2] = _plain_value(v)
            elif k in ("steps", "n_steps", "rule_list", "phase_list", "gamma_list"):
                continue  # derived in the original configs
            elif strict:
                close = difflib.get_close_matches(k, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys are {sorted(names)}"
                raise ConfigError(f"unknown L5 config key {k!r} (L5Config has no field {k!r}){hint}")
        if "phase_list" in data and "phase_key" not in data:
            pl = tuple(data["phase_list"])
            for key in PHASE_KEYS:
                if phase_list_of(key) == pl:
                    kw["phase_key"] = key
                    break
            else:
                raise ConfigError(f"phase_list {list(pl)[:12]}... matches none of the phase keys {PHASE_KEYS}")
        return cls(**kw)

    def replace(self, **changes: Any) -> L5Config:
        """A new, validated config with some keys changed (lists become tuples)."""
        self._check_names(changes)
        return dataclasses.replace(self, **{k: _plain_value(v) for k, v in changes.items()})

    # --------------------------------------------------------------- validation
    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # lists / arrays (JSON, numpy) become tuples before the checks
            v = getattr(self, f.name)
            nv = _plain_value(v)
            if nv is not v:
                object.__setattr__(self, f.name, nv)
        super().__post_init__()

    def validate(self) -> None:
        """Rules beyond the per-field checks; raise :class:`ConfigError` / :class:`ShapeError` naming the key."""

        def vec(name, length, *, binary=False):
            a = np.asarray(getattr(self, name), dtype=float)
            if a.shape != (length,):
                raise ShapeError(f"L5Config.{name} must have shape ({length},) (one value per type {TYPES}), got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ConfigError(f"L5Config.{name} must be finite, got {list(a)} (NaN/inf)")
            if binary and np.any((a != 0) & (a != 1)):
                raise ConfigError(f"L5Config.{name} must hold 0 or 1 per type, got {list(a)}")
            return a

        def mat(name):
            v = getattr(self, name)
            try:
                a = np.asarray(v, dtype=float)
            except (TypeError, ValueError):
                raise ShapeError(f"L5Config.{name} must have shape (4, 4), got a ragged table {v!r}") from None
            if a.shape != (4, 4):
                raise ShapeError(
                    f"L5Config.{name} must have shape (4, 4) (rows = presynaptic type, columns = postsynaptic type, "
                    f"order {TYPES}), got shape {a.shape}"
                )
            if not np.all(np.isfinite(a)):
                raise ConfigError(f"L5Config.{name} must be finite, got NaN/inf")
            return a

        vec("N", 4)
        wt = mat("w_target")
        pr = mat("prob")
        if np.any(pr < 0) or np.any(pr > 1):
            raise ConfigError(f"L5Config.prob must hold probabilities in [0, 1], got {pr.tolist()}")
        if np.any(wt[:2] < 0) or np.any(wt[2:] > 0):
            raise ConfigError("L5Config.w_target must be >= 0 in the CS/CC rows and <= 0 in the PV/SST rows (Dale's law)")
        if self.w_initial is not None:
            wi = mat("w_initial")
            if np.any(wi[:2] < 0) or np.any(wi[2:] > 0):
                raise ConfigError("L5Config.w_initial must be >= 0 in the CS/CC rows and <= 0 in the PV/SST rows")
        tau = np.asarray(self.tau, dtype=float)
        if tau.ndim == 1 and tau.shape != (4,):
            raise ConfigError(f"L5Config.tau must be a positive number or a list of 4 (one per type), got {self.tau!r}")
        if np.any(self.dt >= tau):
            raise ConfigError(
                f"L5Config.dt must be smaller than tau (got dt={self.dt} >= tau={self.tau}); "
                "forward Euler is unstable otherwise"
            )
        if self.learning_rule in ("none",):
            raise ConfigError("L5Config.learning_rule 'none' (lowercase, parent configs) is not a rule at HEAD; use 'None'")
        if self.learning_rule not in RULES:
            raise ConfigError(f"L5Config.learning_rule must be one of {', '.join(repr(c) for c in RULES)}; "
                              f"got {self.learning_rule!r}")
        if self.variant == "faithful" and self.nonlinearity_rule in ("sigmoid", "tanh"):
            raise ConfigError(
                f"L5Config.nonlinearity_rule {self.nonlinearity_rule!r} crashes in the original model (stored on an "
                "attribute the simulation never reads); use variant='corrected' to get a working implementation"
            )
        if not self.phi_lo < self.phi_hi:
            raise ConfigError(f"L5Config.phi_lo must be < phi_hi, got {self.phi_lo} and {self.phi_hi}")
        if len(self.degree) < 1:
            raise ConfigError(f"L5Config.degree must be a non-empty list of finite angles (degrees), got {self.degree!r}")
        vec("steady_input", 4, binary=True)
        vec("amplitude", 4)
        tf = np.asarray(self.thal_fraction, dtype=float)
        if tf.shape != (2,) or np.any(tf < 0) or np.any(tf > 1):
            raise ConfigError(f"L5Config.thal_fraction must be 2 fractions in [0, 1] (CS, CC), got {self.thal_fraction!r}")
        if self.stimulus == "thalamic" and self.thal_degree_index >= len(self.degree):
            raise ConfigError(f"L5Config.thal_degree_index must index degree (size {len(self.degree)}), "
                              f"got {self.thal_degree_index}")
        steps = self.n_steps
        if steps < 1:
            raise ConfigError(f"L5Config.Ttau: Ttau*tau/dt must give at least one step, got {steps}")
        if steps % self.block:
            raise ConfigError(
                f"L5Config.Ttau: the number of steps int(Ttau*tau/dt) = {steps} must be a multiple of block={self.block}"
            )
        if self.eval_steps % self.block or self.eval_steps > steps:
            raise ConfigError(
                f"L5Config.eval_steps must be a multiple of block={self.block} and <= n_steps={steps}, got {self.eval_steps}"
            )


def _plain_value(v: Any) -> Any:
    """Lists and numpy arrays (JSON, YAML, the original's configs) as (nested) tuples of Python scalars."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    if isinstance(v, list):
        return tuple(_plain_value(x) for x in v)
    if isinstance(v, tuple) and any(isinstance(x, (list, np.ndarray, np.generic)) for x in v):
        return tuple(_plain_value(x) for x in v)
    return v


def debug_config(**changes: Any) -> L5Config:
    """The original's debug configuration (its effective default), with optional changes."""
    return L5Config().replace(**changes) if changes else L5Config()


def load_config(path: str | Path | dict | L5Config | None = None, **overrides: Any) -> L5Config:
    """Load an :class:`L5Config` from a ``.py``, ``.json``, ``.yaml``/``.yml`` file or a dict.

    Python files are run and their top-level names that are config keys are used (other names,
    such as the original's helper variables, are ignored); JSON/YAML files must hold a mapping
    with known keys only. ``overrides`` replace individual keys afterwards.
    """
    if path is None:
        cfg = L5Config()
    elif isinstance(path, L5Config):
        cfg = path
    elif isinstance(path, dict):
        cfg = L5Config.from_dict(path)
    else:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no such L5 config file: {p}")
        suffix = p.suffix.lower()
        if suffix == ".py":
            ns = runpy.run_path(str(p))
            data = {}
            for k, v in ns.items():
                if k.startswith("_"):
                    continue
                if isinstance(v, np.ndarray):
                    v = v.tolist()
                if isinstance(v, (int, float, str, bool, list, tuple, type(None), np.integer, np.floating)):
                    data[k] = v.item() if isinstance(v, (np.integer, np.floating)) else v
            cfg = L5Config.from_dict(data, strict=False)
        elif suffix == ".json":
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{p} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
            cfg = L5Config.from_dict(data)
        elif suffix in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.safe_load(p.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise DataFormatError(f"{p} is not valid YAML: {exc}") from None
            cfg = L5Config.from_dict(data if data is not None else {})
        else:
            raise ConfigError(f"config file must end in .py, .json, .yaml or .yml, got {p.name!r}")
    if overrides:
        cfg = cfg.replace(**overrides)
    return cfg
