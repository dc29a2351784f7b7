"""X/Y/Z plot axis values as A1111 reads them: comma-separated (CSV quoting), ranges, permutations.

>>> parse_numbers(["1-5"], int)
[1, 2, 3, 4, 5]
>>> parse_numbers(["1-10 (+2)"], int)
[1, 3, 5, 7, 9]
>>> parse_numbers(["1-10 [5]"], int)
[1, 3, 5, 7, 10]
>>> parse_numbers(["0.25-1 (+0.25)"], float)
[0.25, 0.5, 0.75, 1.0]
>>> parse_numbers(["5-1 [3]", "7"], int)
[5, 3, 1, 7]
"""
from __future__ import annotations

import csv
import io
import re
from itertools import chain

import numpy as np

_INT = r"[+-]?\s*\d+"
_FLOAT = r"[+-]?\s*\d+(?:\.\d*)?"
RANGE_STEP = {int: re.compile(rf"\s*({_INT})\s*-\s*({_INT})(?:\s*\(([+-]\d+)\s*\))?\s*"),
              float: re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\(([+-]\d+(?:\.\d*)?)\s*\))?\s*")}
RANGE_COUNT = {int: re.compile(rf"\s*({_INT})\s*-\s*({_INT})(?:\s*\[(\d+)\s*])?\s*"),
               float: re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\[(\d+(?:\.\d*)?)\s*])?\s*")}
MAX_VALUES = 1000


def split_values(text: str) -> list[str]:
    """A1111's ``csv_string_to_list_strip``: CSV fields (quotes allowed), stripped, empty text -> []."""
    return [v.strip() for v in chain.from_iterable(csv.reader(io.StringIO(text)))]


def join_values(values) -> str:
    """One CSV line of ``values`` (A1111's ``list_to_csv_string``)."""
    out = io.StringIO()
    csv.writer(out).writerow(list(values))
    return out.getvalue().strip()


def _number(text: str, kind):
    return kind(text.replace(" ", ""))


def parse_numbers(items: list[str], kind) -> list:
    """Expand ``a-b`` (step 1), ``a-b (+s)`` (step s) and ``a-b [n]`` (n evenly spaced values); ValueError if bad."""
    out: list = []
    for item in items:
        step_match = RANGE_STEP[kind].fullmatch(item)
        count_match = RANGE_COUNT[kind].fullmatch(item)
        if step_match is not None:
            start, end = _number(step_match.group(1), kind), _number(step_match.group(2), kind)
            step = _number(step_match.group(3), kind) if step_match.group(3) else kind(1)
            if step == 0 or (end - start) / step > MAX_VALUES:
                raise ValueError(f"range {item!r} gives too many values")
            if kind is int:
                out += list(range(start, end + 1, step))
            else:
                out += [round(v, 10) for v in np.arange(start, end + step, step).tolist()]
        elif count_match is not None:
            start, end = _number(count_match.group(1), kind), _number(count_match.group(2), kind)
            count = int(float(count_match.group(3))) if count_match.group(3) else 1
            if count > MAX_VALUES:
                raise ValueError(f"range {item!r} gives too many values")
            values = np.linspace(start, end, count).tolist()
            out += [int(v) for v in values] if kind is int else values
        else:
            out.append(kind(item))
        if len(out) > MAX_VALUES:
            raise ValueError(f"more than {MAX_VALUES} values")
    return out
