"""GRNN parameter records (``gfr_dataset.json`` layout) and the bundled GFR tables.

A record is a JSON object with ``cell_id``, ``cre-line``, ``bin_size``, ``actv_bin_size``,
``val_evr`` (Noise-1 EVR), ``test_evr`` (Noise-2 EVR), ``train_loss``, ``test_loss`` and
``params`` (see :meth:`spikejax.gfr.GFR.get_params`: ``a``, ``b``, ``ds``, ``bin_size`` and the
activation fields either dotted, ``g.max_current``..., or nested under ``g``). Extra keys (e.g. the
excerpt's ``species``) are kept.

* :func:`load_dataset` -> ``{(bin_size, actv_bin_size): DataFrame}`` like GRNN's ``df_from_json``;
* :func:`model_from_dataset` rebuilds one cell's :class:`~spikejax.gfr.GFR`;
* :func:`dataset_to_records` / :func:`save_records` write records back (byte-identical JSON for
  unchanged models);
* :func:`load_gamma_values`, :func:`load_species_labels`, :func:`load_metadata` read the bundled
  per-cell tables.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import ConfigError, DataFormatError, check_keys
from ..core.io import load_json, save_json
from .model import BIN_SIZES, G_KEYS, KAPPA_BIO, PARAM_KEYS, GFR, _g_fields

__all__ = [
    "RECORD_KEYS",
    "PARAM_KEYS",
    "G_KEYS",
    "EXCERPT_JSON",
    "load_records",
    "load_dataset",
    "model_from_dataset",
    "gfr_from_params",
    "params_to_layout",
    "make_record",
    "dataset_to_records",
    "save_records",
    "load_gamma_values",
    "load_species_labels",
    "load_metadata",
    "selection_mask",
]

#: Keys every record must have.
RECORD_KEYS = ("cell_id", "cre-line", "bin_size", "actv_bin_size", "val_evr", "test_evr", "train_loss", "test_loss", "params")
#: Bundled excerpt of the released dataset (8 cells at (20, 20)).
EXCERPT_JSON = "gfr/gfr_params_20_20_excerpt.json"
_ABSENT = "_absent_keys"


def _bundled(name: str) -> Path:
    from .. import data

    return data.path(name)


def load_records(path_or_records: str | os.PathLike | Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Read a list of records from a JSON file (default: the bundled excerpt) or validate a given list."""
    if path_or_records is None:
        path_or_records = _bundled(EXCERPT_JSON)
    if isinstance(path_or_records, (str, os.PathLike)):
        records = load_json(path_or_records)
        where = str(path_or_records)
    else:
        records = path_or_records
        where = "records"
    if isinstance(records, Mapping):
        records = [records]
    if not isinstance(records, (list, tuple)):
        raise DataFormatError(f"{where} must hold a JSON list of records, got {type(records).__name__}")
    for i, rec in enumerate(records):
        check_keys(rec, f"{where}[{i}]", RECORD_KEYS)
        params = rec["params"]
        check_keys(params, f"{where}[{i}]['params'] (cell {rec['cell_id']})", PARAM_KEYS)
        _g_fields(params, f"{where}[{i}]['params'] (cell {rec['cell_id']})")
    return [dict(r) for r in records]


def gfr_from_params(params: Mapping[str, Any], *, kappa: float = KAPPA_BIO, name: str = "params") -> GFR:
    """Rebuild a :class:`GFR` from a ``get_params`` dict (dotted or nested ``g``); see :meth:`GFR.from_params`.

    ``kappa`` must be 1000 (``bio_units=True``) for the released parameters.
    """
    return GFR.from_params(params, kappa=kappa, name=name)


def params_to_layout(params: Mapping[str, Any], nested: bool) -> dict[str, Any]:
    """Convert a ``get_params`` dict between the dotted (``g.b``) and nested (``g: {b: ...}``) layouts."""
    gf = _g_fields(params, "params")
    out = {k: params[k] for k in params if k != "g" and not k.startswith("g.")}
    if nested:
        out["g"] = {k: gf[k] for k in G_KEYS}
    else:
        out.update({f"g.{k}": gf[k] for k in G_KEYS})
    return out


def load_dataset(path_or_records: str | os.PathLike | Sequence[Mapping[str, Any]] | None = None) -> dict[tuple[int, int], pd.DataFrame]:
    """Split records into one DataFrame per (bin_size, actv_bin_size), like GRNN's ``df_from_json``.

    Parameters
    ----------
    path_or_records
        A ``gfr_dataset.json``-layout file, a list of records, or ``None`` for the bundled excerpt.

    Returns
    -------
    ``{(bin_size, actv_bin_size): DataFrame}``; each frame has one row per cell and the record's
    keys as columns (``cell_id``, ``cre-line``, ``val_evr``, ``test_evr``, ``train_loss``,
    ``test_loss``, ``params``, plus ``bin_size``, ``actv_bin_size`` and any extra keys), in the
    record's key order.
    """
    records = load_records(path_or_records)
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for i, rec in enumerate(records):
        key = (rec["bin_size"], rec["actv_bin_size"])
        if not all(isinstance(v, (int, np.integer)) and int(v) in BIN_SIZES for v in key):
            raise DataFormatError(
                f"record {i} (cell {rec['cell_id']}) has unknown (bin_size, actv_bin_size) = {key}; "
                f"bin sizes must be among {BIN_SIZES} ms"
            )
        groups.setdefault((int(key[0]), int(key[1])), []).append(rec)
    out = {}
    for key, recs in sorted(groups.items()):
        columns: list[str] = []
        for rec in recs:
            columns += [k for k in rec if k not in columns]
        rows = []
        any_absent = False
        for rec in recs:
            absent = [c for c in columns if c not in rec]
            any_absent |= bool(absent)
            row = {c: rec.get(c) for c in columns}
            row[_ABSENT] = absent
            rows.append(row)
        frame = pd.DataFrame(rows, columns=columns + [_ABSENT])
        frame = frame.astype({c: object for c in ("cre-line", "train_loss", "test_loss", "params") if c in frame})
        if not any_absent:
            frame = frame.drop(columns=[_ABSENT])
        out[key] = frame.reset_index(drop=True)
    return out


def _as_dataset(dataset: Any) -> dict[tuple[int, int], pd.DataFrame]:
    if isinstance(dataset, Mapping) and all(isinstance(v, pd.DataFrame) for v in dataset.values()):
        return dict(dataset)
    return load_dataset(dataset)


def model_from_dataset(
    dataset: Any,
    cell_id: int,
    dt: int = 20,
    activation_dt: int = 20,
    *,
    kappa: float = KAPPA_BIO,
) -> GFR:
    """Build the :class:`GFR` of ``cell_id`` from released parameters at (``dt``, ``activation_dt``) ms
    (GRNN's (bin_size, activation_bin_size)), like GRNN's ``load_gfr_model``.

    ``dataset`` is the dict of :func:`load_dataset`, a records list or a JSON path. (Not to be confused
    with :func:`spikejax.core.load_model`, which reads serialised leaves.)
    """
    ds = _as_dataset(dataset)
    key = (dt, activation_dt)
    if key not in ds:
        raise ConfigError(
            f"unknown (dt, activation_dt) = {key!r} ms; this dataset has (bin_size, actv_bin_size) {sorted(ds)}"
        )
    frame = ds[key]
    rows = frame.index[frame["cell_id"] == cell_id]
    if len(rows) == 0:
        raise ConfigError(f"cell_id {cell_id!r} is not in the {key} configuration ({len(frame)} cells)")
    params = frame.at[rows[0], "params"]
    return gfr_from_params(params, kappa=kappa, name=f"params of cell {cell_id} at {key}")


def _plain(value: Any) -> Any:
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        from ..core.io import short_float

        return short_float(value)  # float32 as its shortest decimal
    return value


def make_record(
    model: GFR,
    *,
    cell_id: int,
    cre_line: str | None = None,
    val_evr: float | None = None,
    test_evr: float | None = None,
    train_loss: float | None = None,
    test_loss: float | None = None,
    nested_g: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A record in the ``gfr_dataset.json`` layout for a fitted model (``nested_g`` picks the g layout)."""
    rec = {
        "cell_id": int(cell_id),
        "cre-line": cre_line,
        "bin_size": model.dt,
        "actv_bin_size": model.g.dt,
        "val_evr": _plain(val_evr),
        "test_evr": _plain(test_evr),
        "train_loss": _plain(train_loss),
        "test_loss": _plain(test_loss),
    }
    rec.update(extra or {})
    rec["params"] = params_to_layout(model.get_params(), nested_g)
    return rec


def dataset_to_records(
    dataset: Mapping[tuple[int, int], pd.DataFrame],
    models: Mapping[tuple[tuple[int, int], int], GFR] | None = None,
) -> list[dict[str, Any]]:
    """Records back from :func:`load_dataset` frames (row and column order kept).

    ``models`` optionally maps ``((bin_size, actv_bin_size), cell_id)`` to a model whose
    :meth:`~GFR.get_params` replaces that row's ``params`` (in the row's dotted/nested layout).
    """
    records = []
    for key, frame in dataset.items():
        cols = [c for c in frame.columns if c != _ABSENT]
        for _, row in frame.iterrows():
            absent = set(row[_ABSENT]) if _ABSENT in frame.columns else set()
            rec = {c: _plain(row[c]) for c in cols if c not in absent}
            if models is not None and (key, rec["cell_id"]) in models:
                nested = isinstance(rec["params"].get("g"), Mapping)
                rec["params"] = params_to_layout(models[(key, rec["cell_id"])].get_params(), nested)
            else:
                rec["params"] = copy.deepcopy(rec["params"])
            records.append(rec)
    return records


def save_records(path: str | os.PathLike, records: Sequence[Mapping[str, Any]] | Mapping[tuple[int, int], pd.DataFrame]) -> Path:
    """Write records (or a :func:`load_dataset` dict) as JSON (indent 1, as the original files), atomically."""
    if isinstance(records, Mapping):
        records = dataset_to_records(records)
    return save_json(path, list(records), indent=1)


def selection_mask(frame: pd.DataFrame, *, min_val_evr: float = 0.5, max_train_loss: float = 0.45) -> pd.Series:
    """GRNN's release selection: ``val_evr > 0.5`` and ``train_loss < 0.45`` (missing values fail)."""
    val = pd.to_numeric(frame["val_evr"], errors="coerce")
    loss = pd.to_numeric(frame["train_loss"], errors="coerce")
    return (val > min_val_evr) & (loss < max_train_loss)


def load_gamma_values(path: str | os.PathLike | None = None) -> dict[int, float]:
    """Per-cell maximum rate gamma (spikes/ms) of GRNN's 2023 ``max_firing_rates`` table (bundled default)."""
    raw = load_json(path if path is not None else _bundled("gfr/max_firing_rates_per_ms.json"))
    if not isinstance(raw, Mapping):
        raise DataFormatError(f"gamma table must be a JSON object {{cell_id: gamma}}, got {type(raw).__name__}")
    try:
        return {int(k): float(v) for k, v in raw.items()}
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"gamma table must map integer cell ids to numbers: {exc}") from None


def load_species_labels(path: str | os.PathLike | None = None) -> dict[int, str]:
    """Per-cell species label (``"mouse"`` / ``"human"``), bundled default."""
    raw = load_json(path if path is not None else _bundled("gfr/species_labels.json"))
    if not isinstance(raw, Mapping):
        raise DataFormatError(f"species labels must be a JSON object {{cell_id: label}}, got {type(raw).__name__}")
    try:
        return {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"species labels must map integer cell ids to strings: {exc}") from None


#: Columns of ``allen_cell_metadata.csv`` kept in the bundled excerpt.
METADATA_COLUMNS = (
    "specimen__id",
    "line_name",
    "donor__species",
    "structure__acronym",
    "structure__layer",
    "tag__dendrite_type",
    "ef__threshold_i_long_square",
    "ef__f_i_curve_slope",
    "ef__tau",
    "ef__ri",
    "ef__vrest",
    "ef__avg_firing_rate",
    "ef__adaptation",
)


def load_metadata(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Allen cell-types metadata (one row per specimen, indexed by ``specimen__id``).

    Default: the bundled excerpt (all 2333 specimens, the columns in :data:`METADATA_COLUMNS`);
    a full ``allen_cell_metadata.csv`` path also works.
    """
    p = Path(path) if path is not None else _bundled("gfr/allen_cell_metadata_excerpt.csv")
    if not p.is_file():
        raise FileNotFoundError(f"no such metadata CSV: {p}")
    try:
        frame = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{p} is not a readable CSV: {exc}") from None
    missing = [c for c in METADATA_COLUMNS if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{p} is missing metadata column(s) {missing}")
    return frame.set_index("specimen__id", drop=False)
