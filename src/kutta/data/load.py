"""Loading long-format CSV files (one row per series and time) without pandas."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from kutta.data.batch import IrregularBatch
from kutta.data.collate import collate_irregular
from kutta.errors import InvalidArgumentError

MISSING_MARKERS = frozenset({"", "nan", "na", "n/a", "null", "none"})
_SHOWN = 10  # problems listed in one error message


@dataclass
class LongFormatData:
    """Series read from a long-format table, usable as a Dataset with :func:`collate_irregular`.

    Attributes:
        ids: each series' id, in order of first appearance in the file.
        channels: the channel column names.
        times: per series, a (T_i,) tensor.
        values: per series, a (T_i, C) tensor with NaN where missing.

    Example:
        >>> data = load_long_csv(io.StringIO("series_id,time,x\\na,0,1\\na,1,\\nb,0.5,2\\n"))
        >>> data.ids, data.channels, data[0][1].flatten().tolist()
        (['a', 'b'], ['x'], [1.0, nan])
    """

    ids: list[str]
    channels: list[str]
    times: list[torch.Tensor]
    values: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.times[index], self.values[index]

    def to_batch(self) -> IrregularBatch:
        """All series as one padded batch."""
        return collate_irregular([self[i] for i in range(len(self))])


def _number(text: str) -> float | None:
    """The float in ``text``, NaN for a missing marker, None if it is not a number."""
    text = text.strip()
    if text.lower() in MISSING_MARKERS:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _raise(problems: list[str], what: str) -> None:
    if problems:
        shown = "\n  ".join(problems[:_SHOWN])
        more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise InvalidArgumentError(f"{what}:\n  {shown}{more}")


def _header(
    reader: Iterable[list[str]], id_column: str, time_column: str, channels: Sequence[str] | None
) -> tuple[int, int, int, list[int], list[str]]:
    """Validate the header; return its width, the id/time/channel positions and channel names."""
    header = next(iter(reader), None)
    if header is None:
        raise InvalidArgumentError("the CSV is empty; expected a header row")
    # A byte-order mark (spreadsheet exports) is not part of the first column's name.
    header = [name.strip().lstrip("\ufeff") for name in header]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise InvalidArgumentError(f"duplicate column names in the header: {duplicates}")
    wanted = [id_column, time_column, *(channels or [])]
    absent = [name for name in wanted if name not in header]
    if absent:
        raise InvalidArgumentError(f"columns {absent} not in the header; the columns are {header}")
    if channels is None:
        channels = [name for name in header if name not in (id_column, time_column)]
    elif {id_column, time_column} & set(channels) or len(set(channels)) != len(channels):
        raise InvalidArgumentError(
            f"channels {list(channels)} must be distinct and exclude the id and time columns"
        )
    if not channels:
        raise InvalidArgumentError("no channel columns besides the id and time columns")
    positions = [header.index(name) for name in channels]
    return (
        len(header),
        header.index(id_column),
        header.index(time_column),
        positions,
        list(channels),
    )


def load_long_csv(
    source: str | os.PathLike | io.TextIOBase,
    *,
    id_column: str = "series_id",
    time_column: str = "time",
    channels: Sequence[str] | None = None,
    delimiter: str = ",",
    dtype: torch.dtype = torch.float32,
) -> LongFormatData:
    """Read a long-format table: one row per (series, time), one column per channel.

    Empty cells and ``nan``/``NA``/``null`` mark missing values. Rows of a series need not be
    contiguous but must have strictly increasing times in file order. Raises
    :class:`~kutta.errors.InvalidArgumentError` listing line numbers for malformed rows
    (wrong field count, empty id, non-numeric or missing time, non-numeric values), for
    non-increasing times within a series, and naming channels that are missing everywhere.

    Example:
        >>> text = "series_id,time,x,y\\ns1,0.0,1.5,\\ns1,0.5,2.0,3.0\\ns2,0.1,,4.0\\n"
        >>> batch = load_long_csv(io.StringIO(text)).to_batch()
        >>> batch.lengths.tolist(), batch.mask[1, 0].tolist()
        ([2, 1], [False, True])
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, newline="", encoding="utf-8-sig") as handle:
            return load_long_csv(
                handle,
                id_column=id_column,
                time_column=time_column,
                channels=channels,
                delimiter=delimiter,
                dtype=dtype,
            )
    reader = csv.reader(source, delimiter=delimiter, strict=True)
    try:
        columns, id_at, time_at, channel_at, channel_names = _header(
            reader, id_column, time_column, channels
        )
        rows: dict[str, list[tuple[int, float, list[float]]]] = {}
        problems: list[str] = []
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue  # blank line
            parsed = _parse_row(fields, columns, id_at, time_at, channel_at)
            if isinstance(parsed, str):
                problems.append(f"line {reader.line_num}: {parsed}")
                continue
            series, time, values = parsed
            rows.setdefault(series, []).append((reader.line_num, time, values))
    except csv.Error as error:
        raise InvalidArgumentError(f"line {reader.line_num}: unreadable CSV ({error})") from None
    _raise(problems, "malformed rows")
    if not rows:
        raise InvalidArgumentError("the CSV has a header but no data rows")
    for series, entries in rows.items():
        for (line_a, time_a, _), (line_b, time_b, _) in zip(entries, entries[1:]):
            if time_b <= time_a:
                problems.append(
                    f"series {series!r}: time {time_b} on line {line_b} is not after {time_a} on line {line_a}"
                )
    _raise(problems, "times must be strictly increasing within each series")
    ids = list(rows)
    times = [torch.tensor([t for _, t, _ in rows[i]], dtype=dtype) for i in ids]
    values = [torch.tensor([v for _, _, v in rows[i]], dtype=dtype) for i in ids]
    all_values = torch.cat(values)
    empty = [name for name, dead in zip(channel_names, torch.isnan(all_values).all(0)) if dead]
    if empty:
        raise InvalidArgumentError(f"columns {empty} are missing (empty or NaN) in every row")
    return LongFormatData(ids, channel_names, times, values)


def _parse_row(
    fields: list[str], columns: int, id_at: int, time_at: int, channel_at: list[int]
) -> str | tuple[str, float, list[float]]:
    """The parsed row (id, time, values), or a description of what is wrong with it."""
    if len(fields) != columns:
        return f"expected {columns} fields (as in the header), found {len(fields)}"
    series = fields[id_at].strip()
    if not series:
        return "empty series id"
    time = _number(fields[time_at])
    if time is None or math.isnan(time):
        return f"time {fields[time_at]!r} is not a finite number"
    values = []
    for at in channel_at:
        value = _number(fields[at])
        if value is None:
            return f"value {fields[at]!r} is not a number"
        values.append(value)
    return series, time, values
