"""Configuration of the L5 rate model: a typed dataclass with the original's keys.

The defaults are the original repository's debug configuration (its effective default):
5 simulations, ``delta_t`` 0.01, ``tau`` 0.1, ``Ttau`` 250 (2500 steps), learning from step 500,
``tau_learn`` 1997.467, ``tau_threshold`` 2.7922, ``Slide_BCM``, amplitudes [6, 5, 10, 5],
``spatialF`` 10, ``temporalF`` 50, ``spatialPhase`` 1. Time is in model units (``tau`` = 0.1);
rates and amplitudes are dimensionless.

A config is loaded from a Python file (top-level names, as the original ``configs/*.py``), a JSON
file or a YAML file with :func:`load_config`; every value is checked by :meth:`L5Config.validate`,
which raises :class:`~spikejax.core.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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


@dataclass
class L5Config:
    """All settings of one L5 experiment (original key names; units: model time, tau = 0.1).

    Attributes
    ----------
    sim_number : int
        Independent networks (seeds) per run.
    N : list[int]
        Population sizes [CS, CC, PV, SST].
    w_target, prob : 4x4 lists
        Type-level PSP amplitudes and connection probabilities, rows = presynaptic type.
    w_noise : float
        s.d. of the per-synapse |N(w, w_noise)| magnitudes.
    w_initial : 4x4 list or None
        Type-level weights used to sample W. ``None`` means the original's HEAD initialisation
        (|N(w_target, init_sd_rel*|w_target|)| on the trained types, PV/SST rows negated).
    delta_t, tau, Ttau : float
        Step (model time), rate time constant (scalar or one per type) and run length in units of
        ``tau`` (steps = int(Ttau*tau/delta_t)).
    number_steps_before_learning : int
        Learning is off for these first steps.
    tau_learn, tau_threshold : float
        Learning and threshold time constants (model time).
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
    degree : list[float]
        Stimulus directions (degrees).
    steady_input : list[int]
        Per type, 1 for a constant (steady) drive.
    amplitude : list[float]
        Input amplitudes [A_CS, A_CC, A_PV, A_SST].
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
        Base seed of the JAX PRNG.
    """

    sim_number: int = 5
    N: list = field(default_factory=lambda: [45, 275, 46, 34])
    w_target: list = field(default_factory=_default_w_target)
    prob: list = field(default_factory=_default_prob)
    w_noise: float = 0.03
    w_initial: Any = None
    init_sd_rel: float = 0.1
    delta_t: float = 0.01
    tau: Any = 0.1
    Ttau: float = 250
    number_steps_before_learning: int = 500
    tau_learn: float = 1997.467
    tau_threshold: float = 2.7922382927606537
    learning_rule: str = "Slide_BCM"
    variant: str = "faithful"
    neurons: str = "all"
    phase_key: str = "No_Alter"
    nonlinearity_rule: str = "supralinear"
    gamma: float = 1.0
    phi_lo: float = 0.01
    phi_hi: float = 500.0
    smooth_beta: float = 10.0
    update_function: str = "version_normal"
    integrator: str = "forward_euler"
    degree: list = field(default_factory=lambda: [0.0, 90.0, 180.0, 270.0])
    steady_input: list = field(default_factory=lambda: [0, 0, 0, 0])
    amplitude: list = field(default_factory=lambda: [6.0, 5.0, 10.0, 5.0])
    spatialF: float = 10.0
    temporalF: float = 50.0
    spatialPhase: float = 1.0
    stimulus: str = "counterphase"
    thal_fraction: list = field(default_factory=lambda: [0.35, 0.15])
    thal_degree_index: int = 0
    thal_scalar_orthogonal: float = 1.0
    thal_scalar_preferred: float = 1.0
    block: int = 25
    eval_steps: int = 500
    threshold_filter: str = "window"
    Max_act: float = 15.0
    tuning: bool = False
    seed: int = 42
    name_sim: str = "l5"

    # ------------------------------------------------------------------ derived
    @property
    def steps(self) -> int:
        """Number of integration steps, int(Ttau * tau / delta_t) (the original's formula, scalar tau)."""
        tau0 = float(np.asarray(self.tau, dtype=float).reshape(-1)[0])
        return int((self.Ttau * tau0) / self.delta_t)

    @property
    def window_length(self) -> int:
        """History window of the threshold rules, int(-(tau_threshold/delta_t) ln 0.1)."""
        return int(-1 * (self.tau_threshold / self.delta_t) * np.log(0.1))

    @property
    def phase_list(self) -> tuple[str, ...]:
        return phase_list_of(self.phase_key)

    @property
    def n_total(self) -> int:
        return int(sum(self.N))

    def replace(self, **changes: Any) -> L5Config:
        """A validated copy with some keys changed."""
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = v.tolist()
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, strict: bool = True) -> L5Config:
        """Build and validate a config; unknown keys raise :class:`ConfigError` when ``strict``."""
        if not isinstance(data, dict):
            raise ConfigError(f"an L5 config must be a mapping of keys to values, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        aliases = {"amplitude_CS_CC_PV_SST": "amplitude", "w_initial_type": "w_initial"}
        kw = {}
        unknown = []
        for k, v in data.items():
            k2 = aliases.get(k, k)
            if k2 in names:
                kw[k2] = v
            elif k in ("steps", "rule_list", "phase_list", "gamma_list"):
                continue  # derived in the original configs
            else:
                unknown.append(k)
        if unknown and strict:
            raise ConfigError(
                f"unknown L5 config key(s) {sorted(unknown)}; known keys are {sorted(names)}"
            )
        if "phase_list" in data and "phase_key" not in data:
            pl = tuple(data["phase_list"])
            for key in PHASE_KEYS:
                if phase_list_of(key) == pl:
                    kw["phase_key"] = key
                    break
            else:
                raise ConfigError(f"phase_list {list(pl)[:12]}... matches none of the phase keys {PHASE_KEYS}")
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    # --------------------------------------------------------------- validation
    def validate(self) -> L5Config:
        """Check every value; raise :class:`ConfigError` / :class:`ShapeError` naming the key."""

        def num(name, low=None, high=None, low_incl=True, integer=False):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ConfigError(f"{name} must be a number, got {type(v).__name__} {v!r}")
            if not math.isfinite(float(v)):
                raise ConfigError(f"{name} must be finite, got {v!r}")
            if integer and float(v) != int(v):
                raise ConfigError(f"{name} must be an integer, got {v!r}")
            if low is not None and (v < low if low_incl else v <= low):
                raise ConfigError(f"{name} must be {'>=' if low_incl else '>'} {low}, got {v!r}")
            if high is not None and v > high:
                raise ConfigError(f"{name} must be <= {high}, got {v!r}")

        def vec(name, length, *, low=None, integer=False, binary=False):
            v = getattr(self, name)
            try:
                a = np.asarray(v, dtype=float)
            except (TypeError, ValueError):
                raise ConfigError(f"{name} must be a list of {length} numbers, got {v!r}") from None
            if a.shape != (length,):
                raise ShapeError(f"{name} must have shape ({length},) (one value per type {TYPES}), got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ConfigError(f"{name} must be finite, got {list(a)} (NaN/inf)")
            if low is not None and np.any(a < low):
                raise ConfigError(f"{name} must be >= {low}, got {list(a)}")
            if integer and np.any(a != np.round(a)):
                raise ConfigError(f"{name} must hold whole numbers, got {list(a)}")
            if binary and np.any((a != 0) & (a != 1)):
                raise ConfigError(f"{name} must hold 0 or 1 per type, got {list(a)}")
            return a

        def mat(name):
            v = getattr(self, name)
            try:
                a = np.asarray(v, dtype=float)
            except (TypeError, ValueError):
                raise ConfigError(f"{name} must be a 4x4 matrix of numbers, got {v!r}") from None
            if a.shape != (4, 4):
                raise ShapeError(
                    f"{name} must have shape (4, 4) (rows = presynaptic type, columns = postsynaptic type, "
                    f"order {TYPES}), got shape {a.shape}"
                )
            if not np.all(np.isfinite(a)):
                raise ConfigError(f"{name} must be finite, got NaN/inf")
            return a

        num("sim_number", low=1, integer=True)
        n = vec("N", 4, low=1, integer=True)
        wt = mat("w_target")
        pr = mat("prob")
        if np.any(pr < 0) or np.any(pr > 1):
            raise ConfigError(f"prob must hold probabilities in [0, 1], got {pr.tolist()}")
        if np.any(wt[:2] < 0) or np.any(wt[2:] > 0):
            raise ConfigError("w_target must be >= 0 in the CS/CC rows and <= 0 in the PV/SST rows (Dale's law)")
        if self.w_initial is not None:
            wi = mat("w_initial")
            if np.any(wi[:2] < 0) or np.any(wi[2:] > 0):
                raise ConfigError("w_initial must be >= 0 in the CS/CC rows and <= 0 in the PV/SST rows")
        num("w_noise", low=0)
        num("init_sd_rel", low=0)
        num("delta_t", low=0, low_incl=False)
        tau = np.asarray(self.tau, dtype=float) if not isinstance(self.tau, str) else None
        if tau is None or tau.ndim > 1 or (tau.ndim == 1 and tau.shape != (4,)):
            raise ConfigError(f"tau must be a positive number or a list of 4 (one per type), got {self.tau!r}")
        if not np.all(np.isfinite(tau)) or np.any(tau <= 0):
            raise ConfigError(f"tau must be > 0 and finite, got {self.tau!r}")
        if np.any(self.delta_t >= tau):
            raise ConfigError(
                f"delta_t must be smaller than tau (got delta_t={self.delta_t} >= tau={self.tau}); "
                "forward Euler is unstable otherwise"
            )
        num("Ttau", low=0, low_incl=False)
        num("number_steps_before_learning", low=0, integer=True)
        num("tau_learn", low=0, low_incl=False)
        num("tau_threshold", low=0, low_incl=False)
        if self.learning_rule in ("none",):
            raise ConfigError("learning_rule 'none' (lowercase, parent configs) is not a rule at HEAD; use 'None'")
        for name, choices in (
            ("learning_rule", RULES),
            ("variant", VARIANTS),
            ("neurons", NEURON_MODES),
            ("phase_key", PHASE_KEYS),
            ("nonlinearity_rule", NONLINEARITIES),
            ("integrator", INTEGRATORS),
            ("stimulus", STIMULI),
            ("threshold_filter", THRESHOLD_FILTERS),
            ("update_function", ("version_normal",)),
        ):
            v = getattr(self, name)
            if not isinstance(v, str) or v not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {v!r}")
        if self.variant == "faithful" and self.nonlinearity_rule in ("sigmoid", "tanh"):
            raise ConfigError(
                f"nonlinearity_rule {self.nonlinearity_rule!r} crashes in the original model (stored on an attribute the "
                "simulation never reads); use variant='corrected' to get a working implementation"
            )
        num("gamma", low=0, low_incl=False)
        num("phi_lo")
        num("phi_hi")
        if not self.phi_lo < self.phi_hi:
            raise ConfigError(f"phi_lo must be < phi_hi, got {self.phi_lo} and {self.phi_hi}")
        num("smooth_beta", low=0, low_incl=False)
        d = np.asarray(self.degree, dtype=float).reshape(-1)
        if d.size < 1 or not np.all(np.isfinite(d)):
            raise ConfigError(f"degree must be a non-empty list of finite angles (degrees), got {self.degree!r}")
        vec("steady_input", 4, binary=True)
        vec("amplitude", 4)
        num("spatialF")
        num("temporalF")
        num("spatialPhase")
        tf = np.asarray(self.thal_fraction, dtype=float)
        if tf.shape != (2,) or np.any(tf < 0) or np.any(tf > 1):
            raise ConfigError(f"thal_fraction must be 2 fractions in [0, 1] (CS, CC), got {self.thal_fraction!r}")
        num("thal_degree_index", low=0, integer=True)
        if self.stimulus == "thalamic" and int(self.thal_degree_index) >= d.size:
            raise ConfigError(f"thal_degree_index must index degree (size {d.size}), got {self.thal_degree_index}")
        num("thal_scalar_orthogonal")
        num("thal_scalar_preferred")
        num("block", low=1, integer=True)
        num("eval_steps", low=1, integer=True)
        num("Max_act", low=0, low_incl=False)
        num("seed", integer=True)
        steps = self.steps
        if steps < 1:
            raise ConfigError(f"Ttau*tau/delta_t must give at least one step, got {steps}")
        if steps % int(self.block):
            raise ConfigError(
                f"the number of steps int(Ttau*tau/delta_t) = {steps} must be a multiple of block={self.block}"
            )
        if self.eval_steps % int(self.block) or self.eval_steps > steps:
            raise ConfigError(
                f"eval_steps must be a multiple of block={self.block} and <= steps={steps}, got {self.eval_steps}"
            )
        if int(n.sum()) != self.n_total:
            raise ConfigError("N must hold whole numbers")
        return self


def debug_config(**changes: Any) -> L5Config:
    """The original's debug configuration (its effective default), with optional changes."""
    return L5Config().replace(**changes) if changes else L5Config().validate()


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
    return cfg.validate()
