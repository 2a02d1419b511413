"""The resource model: quantities and scalar resource vectors (CPU, memory, ephemeral storage, pods).

Kubernetes quantities ("500m", "4Gi", "1.5") are parsed once into integers in canonical units: CPU in
thousandths of a core, memory and storage in bytes, counts as counts. Devices (GPUs, NPUs, FPGAs,
RDMA NICs) are not scalars and live in `jobs.devices`.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

CPU = "cpu"
MEMORY = "memory"
EPHEMERAL = "ephemeral-storage"
PODS = "pods"
SCALARS = (CPU, MEMORY, EPHEMERAL, PODS)

_SUFFIX = {
    "": Fraction(1),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_QUANTITY = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]{0,2})\s*$")


class QuantityError(ValueError):
    """A string is not a Kubernetes quantity."""


def parse_quantity(value: str | int | float) -> Fraction:
    """A Kubernetes quantity as an exact fraction of its base unit ("500m" -> 1/2, "1Gi" -> 2**30)."""
    if isinstance(value, bool):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(f"not a quantity: {value!r}")
        return Fraction(value).limit_denominator(10**9)
    match = _QUANTITY.match(value)
    if not match or match.group(2) not in _SUFFIX:
        raise QuantityError(f"not a quantity: {value!r} (examples: 500m, 2, 1.5, 4Gi, 512Mi)")
    number = (
        Fraction(match.group(1)) if "e" not in match.group(1).lower() else Fraction(float(match.group(1)))
    )
    return number * _SUFFIX[match.group(2)]


def to_milli(value: str | int | float) -> int:
    """A quantity in thousandths, rounded up (Kubernetes rounds requests up): "0.5" -> 500."""
    return math.ceil(parse_quantity(value) * 1000)


def to_units(value: str | int | float) -> int:
    """A quantity as a whole number of base units, rounded up: "1Gi" -> 1073741824."""
    return math.ceil(parse_quantity(value))


def canonical(name: str, value: str | int | float) -> int:
    """A scalar resource in its canonical unit: CPU in milli-cores, everything else in base units."""
    return to_milli(value) if name == CPU else to_units(value)


def format_quantity(name: str, amount: int) -> str:
    """A canonical amount back as a short Kubernetes quantity ("1500m", "4Gi")."""
    if name == CPU:
        return f"{amount // 1000}" if amount % 1000 == 0 else f"{amount}m"
    if name in (MEMORY, EPHEMERAL) and amount:
        for suffix, factor in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if amount % factor == 0:
                return f"{amount // factor}{suffix}"
    return str(amount)


@dataclass(frozen=True)
class Resources:
    """A non-negative vector of scalar resources in canonical units; missing names are zero."""

    amounts: Mapping[str, int] = field(default_factory=dict)

    @staticmethod
    def of(**amounts: int) -> Resources:
        """`Resources.of(cpu=500, memory=2**30)` (underscores stand for dashes)."""
        return Resources({k.replace("_", "-"): v for k, v in amounts.items() if v})

    @staticmethod
    def parse(raw: Mapping[str, str | int | float]) -> Resources:
        return Resources({k: canonical(k, v) for k, v in raw.items() if canonical(k, v)})

    def __getitem__(self, name: str) -> int:
        return self.amounts.get(name, 0)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.amounts))

    def __add__(self, other: Resources) -> Resources:
        out = dict(self.amounts)
        for k, v in other.amounts.items():
            out[k] = out.get(k, 0) + v
        return Resources({k: v for k, v in out.items() if v})

    def __sub__(self, other: Resources) -> Resources:
        out = dict(self.amounts)
        for k, v in other.amounts.items():
            out[k] = out.get(k, 0) - v
        return Resources({k: v for k, v in out.items() if v})

    def scaled(self, factor: int) -> Resources:
        return Resources({k: v * factor for k, v in self.amounts.items() if v * factor})

    def shortfall(self, request: Resources) -> list[str]:
        """The names whose amount here is below `request` (self is the free capacity)."""
        return [k for k in sorted(request.amounts) if request[k] > self[k]]

    def fits(self, request: Resources) -> bool:
        return not self.shortfall(request)

    def render(self) -> dict[str, str]:
        return {k: format_quantity(k, self[k]) for k in self}

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.render().items()) or "nothing"
