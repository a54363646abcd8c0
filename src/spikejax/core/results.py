"""One result base for every family: trajectories (what ``simulate`` returns) and fit results.

* :class:`Trajectory` — what every family's ``simulate(model, …, *, key=…)`` returns: an
  ``equinox.Module`` of arrays (so ``jit``/``vmap`` of ``simulate`` work and return one) with the
  time step ``dt`` (ms, static), :meth:`~Record.to_pandas` (a ``time_ms`` column first, units in
  the column names) and :meth:`~Record.plot`.
* :class:`Result` — what every fitting verb (``fit_cells``, ``tune``, ``fit_em``, ``train``,
  ``pbt``, …) returns: the fitted ``model``, ``history`` (a DataFrame, one row per evaluation),
  ``stop_reason`` (a :class:`StopReason`), ``seconds`` (wall time), plus the family's own fields.
* Both are :class:`Record`\\ s: ``save(path)`` writes one HDF5 file atomically (no pickle) and
  ``Class.load(path)`` reads it back; fields that hold an equinox model are rebuilt into a
  structure template that the subclass gives in :meth:`Record._template` (built under
  ``equinox.filter_eval_shape``: no computation, no random numbers).

Column names: ``<quantity>_<unit>`` with units from :data:`UNITS` (``time_ms``, ``rate_hz``,
``v_mv``, ``current_pa``, …); index-like columns (``neuron``, ``population``, ``trial``, ``member``,
…) carry no unit. :func:`tidy` builds the long table from arrays.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .errors import DataFormatError, SpikejaxError

__all__ = ["StopReason", "Record", "Result", "Trajectory", "tidy", "get_ax", "UNITS", "history_frame"]

#: Unit suffixes allowed at the end of a value column's name (``<quantity>_<unit>``).
UNITS = ("ms", "s", "hz", "mv", "pa", "na", "nats", "bits", "count", "spikes", "per_ms", "au", "deg", "pct", "ratio",
         "nats_per_spike", "bits_per_spike", "prob", "rad", "gb", "mb")


class StopReason(str, enum.Enum):
    """Why a fit ended (as optimistix's ``RESULTS``). Members compare equal to their string value."""

    COMPLETED = "completed"            #: ran the requested number of steps / epochs / iterations
    EARLY_STOPPING = "early_stopping"  #: the monitored metric stopped improving
    CONVERGED = "converged"            #: a tolerance was met (EM, root finding)
    TARGET_REACHED = "target_reached"  #: a tuning target was met
    CALLBACK = "callback"              #: a user hook asked to stop
    DIVERGED = "diverged"              #: a loss or parameter became non-finite
    EPOCH_LIMIT = "epoch_limit"        #: a population ran out of epochs before every member finished
    MIXED = "mixed"                    #: members of a population stopped for different reasons

    def __str__(self) -> str:  # "completed", not "StopReason.COMPLETED"
        return self.value

    @classmethod
    def of(cls, value: Any) -> StopReason:
        """Coerce a string (the old spellings included) to a member."""
        if isinstance(value, cls):
            return value
        aliases = {"epochs": "epoch_limit", "stopped": "callback", "early_stop": "early_stopping", "max_steps": "epoch_limit"}
        try:
            return cls(aliases.get(str(value), str(value)))
        except ValueError:
            raise SpikejaxError(f"unknown stop reason {value!r}; expected one of {[m.value for m in cls]}") from None


def get_ax(ax: Any = None, **subplots_kw: Any) -> Any:
    """``ax`` itself, or a new Axes from ``plt.subplots`` (never selects a backend)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(**subplots_kw)
    return ax


def tidy(time_ms: Any, values: Mapping[str, Any], axes: Sequence[str] = (), labels: Mapping[str, Sequence[Any]] | None = None):
    """A long DataFrame from time-major arrays: ``time_ms``, one column per name in ``axes``, then ``values``.

    Every array in ``values`` has shape ``(T, *sizes)`` where ``len(sizes) == len(axes)``;
    ``labels[axis]`` replaces an axis' integer positions by names (e.g. population names).
    """
    import pandas as pd

    t = np.asarray(time_ms, dtype=float)
    arrays = {k: np.asarray(v) for k, v in values.items()}
    shape = None
    for k, v in arrays.items():
        if v.shape[0] != t.shape[0] or v.ndim != 1 + len(axes):
            raise SpikejaxError(f"tidy: {k} has shape {v.shape}, expected ({t.shape[0]}, …) with {len(axes)} unit axes")
        shape = v.shape if shape is None else shape
        if v.shape != shape:
            raise SpikejaxError(f"tidy: {k} has shape {v.shape}, the other columns {shape}")
    shape = shape or (t.shape[0],)
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    cols: dict[str, Any] = {"time_ms": t[grids[0].ravel()]}
    for i, name in enumerate(axes):
        idx = grids[i + 1].ravel()
        lab = (labels or {}).get(name)
        cols[name] = np.asarray(lab, dtype=object)[idx] if lab is not None else idx
    for k, v in arrays.items():
        cols[k] = v.ravel()
    return pd.DataFrame(cols)


def history_frame(history: Mapping[str, Any], index: str = "step"):
    """A DataFrame from a dict of equally long 1-d arrays (columns of higher rank are split per last index)."""
    import pandas as pd

    cols: dict[str, Any] = {}
    for k, v in history.items():
        a = np.asarray(v)
        if a.ndim <= 1:
            cols[k] = a
        else:
            flat = a.reshape(a.shape[0], -1)
            for j in range(flat.shape[1]):
                cols[f"{k}[{j}]"] = flat[:, j]
    df = pd.DataFrame(cols)
    if index in df.columns:
        df = df[[index] + [c for c in df.columns if c != index]]
    return df


# ------------------------------------------------------------------------------------------------
# save / load
# ------------------------------------------------------------------------------------------------

_FORMAT = 1


def _kind(value: Any) -> str:
    import pandas as pd

    if value is None or isinstance(value, (bool, int, float, str)):
        return "json"
    if isinstance(value, enum.Enum):
        return "enum"
    if isinstance(value, pd.DataFrame):
        return "frame"
    if isinstance(value, Record):
        return "record"
    from .config import Config

    if isinstance(value, Config):
        return "config"
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return "array"
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return "dict"
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str, type(None))) for v in value):
        return "json"
    if isinstance(value, Path):
        return "json"
    return "tree"


def _write(group: Any, name: str, value: Any) -> dict[str, Any]:
    """Write ``value`` under ``name`` in an h5py group; return its descriptor for the header."""
    kind = _kind(value)
    if kind == "json":
        return {"kind": "json", "value": str(value) if isinstance(value, Path) else value}
    if kind == "enum":
        return {"kind": "enum", "cls": f"{type(value).__module__}:{type(value).__qualname__}", "value": value.value}
    if kind == "config":
        return {"kind": "config", "cls": f"{type(value).__module__}:{type(value).__qualname__}", "value": value.to_dict()}
    if kind == "array":
        arr = np.asarray(value)
        if arr.dtype.kind in "OU":
            arr = arr.astype(str).astype("S")
            group.create_dataset(name, data=arr)
            return {"kind": "array", "strings": True, "jax": False}
        group.create_dataset(name, data=arr)
        return {"kind": "array", "jax": isinstance(value, jax.Array)}
    if kind == "frame":
        sub = group.create_group(name)
        cols = []
        for i, c in enumerate(value.columns):
            col = value[c].to_numpy()
            strings = col.dtype == object
            sub.create_dataset(str(i), data=col.astype(str).astype("S") if strings else col)
            cols.append({"name": str(c), "strings": bool(strings)})
        return {"kind": "frame", "columns": cols}
    if kind == "dict":
        sub = group.create_group(name)
        # keys may hold "/" (e.g. "val/loss"): the HDF5 names are positions, the keys live in the header
        names = {k: str(i) for i, k in enumerate(value)}
        return {"kind": "dict", "items": {k: _write(sub, names[k], v) for k, v in value.items()}, "names": names}
    if kind == "record":
        sub = group.create_group(name)
        return {"kind": "record", "header": value._write_into(sub)}
    # a pytree with array leaves (a model): its leaves in order; rebuilt from a template on load
    leaves, treedef = jax.tree_util.tree_flatten(value)
    sub = group.create_group(name)
    kinds = []
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, (np.ndarray, np.generic, jax.Array)):
            sub.create_dataset(str(i), data=np.asarray(leaf))
            kinds.append("array")
        else:
            kinds.append(json.dumps(leaf) if isinstance(leaf, (bool, int, float, str, type(None))) else "opaque")
    return {"kind": "tree", "n_leaves": len(leaves), "treedef": str(treedef)[:2000], "leaves": kinds}


def _import(path: str) -> Any:
    module, _, qual = path.partition(":")
    obj = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def _read(group: Any, name: str, desc: dict[str, Any], template: Any = None) -> Any:
    import jax.numpy as jnp
    import pandas as pd

    kind = desc["kind"]
    if kind == "json":
        return desc["value"]
    if kind == "enum":
        return _import(desc["cls"])(desc["value"])
    if kind == "config":
        return _import(desc["cls"]).from_dict(desc["value"])
    if kind == "array":
        arr = group[name][()]
        if desc.get("strings"):
            return np.asarray([s.decode() for s in np.ravel(arr)], dtype=object).reshape(np.shape(arr))
        return jnp.asarray(arr) if desc.get("jax") else arr
    if kind == "frame":
        sub = group[name]
        cols = {}
        for i, c in enumerate(desc["columns"]):
            v = sub[str(i)][()]
            cols[c["name"]] = np.asarray([s.decode() for s in v], dtype=object) if c["strings"] else v
        return pd.DataFrame(cols, columns=[c["name"] for c in desc["columns"]])
    if kind == "dict":
        sub = group[name]
        names = desc.get("names", {})
        return {k: _read(sub, names.get(k, k), d, None if template is None else template.get(k)) for k, d in desc["items"].items()}
    if kind == "record":
        return Record._read_from(group[name], desc["header"])
    if template is None:
        raise DataFormatError(f"no structure template to rebuild field {name!r}")
    leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(leaves) != desc["n_leaves"]:
        raise DataFormatError(
            f"field {name!r}: the file holds {desc['n_leaves']} leaves, the model template {len(leaves)}: "
            "the file was written by another version or model")
    sub = group[name]
    new = []
    for i, (leaf, k) in enumerate(zip(leaves, desc["leaves"])):
        if k == "array":
            arr = sub[str(i)][()]
            shape = getattr(leaf, "shape", None)
            if shape is not None and tuple(shape) != arr.shape:
                raise DataFormatError(f"field {name!r}, leaf {i}: shape {arr.shape} in the file, {tuple(shape)} expected")
            dtype = getattr(leaf, "dtype", arr.dtype)
            new.append(jnp.asarray(arr, dtype=dtype) if not isinstance(leaf, np.ndarray) else arr.astype(dtype))
        else:
            new.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, new)


class Record(eqx.Module):
    """Base of :class:`Trajectory` and :class:`Result`: a table, a plot, a file."""

    @abc.abstractmethod
    def to_pandas(self):
        """The record as a DataFrame (a ``time_ms`` or ``step`` column first, units in the column names)."""

    @abc.abstractmethod
    def plot(self, *, ax: Any = None) -> Any:
        """Draw the record on ``ax`` (a new Axes by default) and return the Axes."""

    def _repr_html_(self) -> str:
        try:
            df = self.to_pandas()
        except Exception:  # noqa: BLE001 - a repr must never raise
            return f"<pre>{type(self).__name__}</pre>"
        return f"<b>{type(self).__name__}</b> ({len(df)} rows)" + df.head(10).to_html()

    # ---- structure templates for loading --------------------------------------------------------
    @classmethod
    def _template(cls, field: str, header: Mapping[str, Any]) -> Any:
        """Structure template (``eqx.filter_eval_shape`` of the constructor) of a model field.

        ``header`` maps the record's other fields (JSON values, configs) to their loaded values.
        Subclasses holding models override this as a ``classmethod``.
        """
        raise DataFormatError(f"{cls.__name__} cannot rebuild field {field!r}: define the classmethod _template")

    # ---- writing --------------------------------------------------------------------------------
    def _write_into(self, group: Any) -> dict[str, Any]:
        fields = {}
        for f in dataclasses.fields(self):
            fields[f.name] = _write(group, f.name, getattr(self, f.name))
        return {"cls": f"{type(self).__module__}:{type(self).__qualname__}", "fields": fields}

    def save(self, path: str | Path) -> Path:
        """Write the record to one HDF5 file, atomically (a temporary file renamed into place)."""
        import h5py

        from .io import atomic_path

        path = Path(path)
        with atomic_path(path, suffix=".h5") as tmp:
            with h5py.File(tmp, "w") as fh:
                header = self._write_into(fh)
                fh.attrs["spikejax_record"] = json.dumps({"format": _FORMAT, **header})
        return path

    @classmethod
    def _read_from(cls, group: Any, header: dict[str, Any], like: Any = None) -> Record:
        target = _import(header["cls"])
        if not (isinstance(target, type) and issubclass(target, cls)):
            raise DataFormatError(f"the file holds a {header['cls']}, not a {cls.__name__}")
        descs = header["fields"]
        values: dict[str, Any] = {}
        # plain fields first: templates are built from them
        for name, d in descs.items():
            if d["kind"] != "tree":
                values[name] = _read(group, name, d)
        likes = like if isinstance(like, Mapping) else ({} if like is None else {"model": like})
        for name, d in descs.items():
            if d["kind"] != "tree":
                continue
            if name in likes:
                values[name] = _read(group, name, d, likes[name])
            elif like is None:
                values[name] = _read(group, name, d, target._template(name, values))
            else:  # a template was given for other fields only: this one is not restored
                values[name] = None
        kw = {f.name: values[f.name] for f in dataclasses.fields(target) if f.init and f.name in values}
        obj = target(**kw)
        return obj

    @classmethod
    def load(cls, path: str | Path, *, like: Any = None):
        """Read a record written by :meth:`save` (the class is taken from the file; it must be ``cls`` or a subclass).

        Fields holding a model are rebuilt from the class's :meth:`_template`; where a class cannot
        build one (e.g. :class:`spikejax.core.FitResult` of any model), pass ``like``: a model of the
        same structure (the template of the field ``model``) or a dict ``{field: template}``. With
        ``like``, model fields it does not cover are loaded as ``None``.
        """
        import h5py

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such result file: {path}")
        try:
            with h5py.File(path, "r") as fh:
                raw = fh.attrs.get("spikejax_record")
                if raw is None:
                    raise DataFormatError(f"{path} is an HDF5 file but not a spikejax record (no header)")
                header = json.loads(raw)
                if header.get("format") != _FORMAT:
                    raise DataFormatError(f"{path}: record format {header.get('format')!r}, this spikejax reads {_FORMAT}")
                return cls._read_from(fh, header, like)
        except (DataFormatError, FileNotFoundError):
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise DataFormatError(f"{path} could not be read as a spikejax record (truncated or damaged?): {exc}") from None


class Trajectory(Record):
    """Base of every family's ``simulate`` result (arrays are time-major; ``dt`` in ms)."""

    dt: float = eqx.field(static=True, kw_only=True)

    def times_ms(self, n_steps: int) -> np.ndarray:
        """Bin start times in ms of ``n_steps`` steps."""
        return np.arange(n_steps) * float(self.dt)


class Result(Record):
    """Base of every fitting verb's result.

    Fields shared by every family (subclasses add their own after these):

    model : the fitted model (for populations: the stacked models, member axis first).
    history : DataFrame, one row per evaluation (``step``/``epoch``/``iteration`` first; units in names).
    stop_reason : :class:`StopReason`.
    seconds : wall time of the fit in s.
    """

    model: Any
    history: Any
    stop_reason: StopReason
    seconds: float

    def to_pandas(self):
        """The fit's table (by default the history)."""
        return self.history.copy()

    def plot(self, *, ax: Any = None) -> Any:
        """The loss (and validation) curves of the history against its first column."""
        ax = get_ax(ax)
        df = self.history
        if len(df.columns) == 0:
            return ax
        x = df.columns[0]
        for col in [c for c in df.columns[1:] if c.split("[")[0] in ("loss", "val", "val_smth", "log_lik", "objective")]:
            ax.plot(df[x].to_numpy(), df[col].to_numpy(), label=col)
        ax.set_xlabel(x)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        return ax
