"""Type and range checks of JSON fields, driven by tables of rules (:mod:`autorec.persist.fields`
gives the tables of ``model.json``): each failure is one line naming the file and the field
(``members[1].scale``)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

from ..exceptions import ModelFileError

__all__ = ["FLAG", "FRACTION", "Fields", "Rule", "array", "integer", "number", "record", "table",
           "text"]

#: How a field is checked: a :class:`Fields` method and its options; ``None``: only that it is
#: there (what it must be depends on other fields, checked by the caller).
Rule = tuple[str, dict[str, Any]] | None


def text(*choices: str, null: bool = False) -> Rule:
    return "text", {"choices": choices or None, "null": null}


def number(**options: Any) -> Rule:
    return "number", options


def integer(minimum: int) -> Rule:
    return "integer", {"minimum": minimum}


def array(each: Rule = None, length: int | None = None) -> Rule:
    return "array", {"each": each, "length": length}


def table(each: Rule = None) -> Rule:
    return "table", {"each": each}


def record(rules: dict[str, Rule]) -> Rule:
    return "record", {"rules": rules}


FLAG: Rule = ("flag", {})
FRACTION: Rule = ("fraction", {})


#: The largest integer that converts to a finite float64.
_FLOAT_LIMIT = int(sys.float_info.max)


class Fields:
    """The checks of the fields of one JSON file (``where``): each method checks a value of
    one kind and returns it; each failure is one line naming the file and the field."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def fail(self, field: str, problem: str) -> NoReturn:
        raise ModelFileError(f"{self.where}: field {field!r} {problem}")

    def check(self, value: Any, field: str, rule: Rule) -> Any:
        """``value`` checked by ``rule``."""
        if rule is None:
            return value
        method, options = rule
        return getattr(self, method)(value, field, **options)

    def record(self, value: Any, field: str, rules: dict[str, Rule], *,
               optional: dict[str, Rule] | None = None, what: str | None = None
               ) -> dict[str, Any]:
        """``value`` as an object holding every key of ``rules`` and maybe those of
        ``optional``, each checked by its rule; any other key fails as not a field of it
        (``what``, such as ``"a network's spec"``; default: the field)."""
        table = self.table(value, field)
        at = f"{field}." if field else ""
        for key in rules:
            if key not in table:
                self.fail(at + key, "is missing")
        rules = {**rules, **(optional or {})}
        unknown = sorted(set(table) - set(rules))
        if unknown:  # bias.evil loaded without a word
            self.fail(at + unknown[0], f"is not a field of {what or repr(field)}")
        for key, rule in rules.items():
            if key in table:
                self.check(table[key], at + key, rule)
        return table

    def table(self, value: Any, field: str, each: Rule = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(field, f"must be an object, got {_shown(value)}")
        for key, item in value.items():
            self.check(item, f"{field}.{key}", each)
        return value

    def array(self, value: Any, field: str, each: Rule = None, length: int | None = None
              ) -> list[Any]:
        if not isinstance(value, list):
            self.fail(field, f"must be a list, got {_shown(value)}")
        if length is not None and len(value) != length:
            self.fail(field, f"must hold {length} values, got {len(value)}")
        return [self.check(item, f"{field}[{k}]", each) for k, item in enumerate(value)]

    def text(self, value: Any, field: str, choices: tuple[str, ...] | None = None,
             null: bool = False) -> str | None:
        if value is None and null:
            return None
        if not isinstance(value, str):
            self.fail(field, f"must be a string, got {_shown(value)}")
        if choices is not None and value not in choices:
            self.fail(field, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def flag(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            self.fail(field, f"must be true or false, got {_shown(value)}")
        return value

    def integer(self, value: Any, field: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"must be an integer, got {_shown(value)}")
        if minimum is not None and value < minimum:
            self.fail(field, f"must be an integer >= {minimum}, got {value}")
        return value

    def number(self, value: Any, field: str, minimum: float | None = None,
               positive: bool = False, null: bool = False) -> float | None:
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(field, f"must be a number, got {_shown(value)}")
        if isinstance(value, int) and not -_FLOAT_LIMIT <= value <= _FLOAT_LIMIT:
            self.fail(field, f"must be a finite number, got an integer of {len(str(abs(value)))} "
                      "digits")  # past float64: math.isfinite raised OverflowError
        if not math.isfinite(value):
            self.fail(field, f"must be a finite number, got {value!r}")
        if positive and value <= 0:
            self.fail(field, f"must be a number > 0, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(field, f"must be a number >= {minimum:g}, got {value!r}")
        return float(value)

    def fraction(self, value: Any, field: str) -> float:
        number = self.number(value, field, minimum=0.0)
        if number is None or number >= 1:
            self.fail(field, f"must be in [0, 1), got {number!r}")
        return number

    def finite_everywhere(self, value: Any, field: str) -> None:
        """No NaN or infinity anywhere (the writer stores them as ``null``)."""
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(field, f"holds {value!r}, which is not a JSON number")
        if isinstance(value, dict):
            for key, item in value.items():
                self.finite_everywhere(item, f"{field}.{key}" if field else str(key))
        elif isinstance(value, list):
            for k, item in enumerate(value):
                self.finite_everywhere(item, f"{field}[{k}]")


def _shown(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)  # null, true, false
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
