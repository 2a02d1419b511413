from fractions import Fraction

import pytest

from jobs.resources import QuantityError, Resources, canonical, format_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("2", Fraction(2)),
        ("1.5", Fraction(3, 2)),
        ("4Gi", Fraction(4 * 2**30)),
        ("512Mi", Fraction(512 * 2**20)),
        ("1G", Fraction(10**9)),
        ("100k", Fraction(100_000)),
        ("1e3", Fraction(1000)),
        (3, Fraction(3)),
    ],
    ids=["milli", "integer", "decimal", "gibi", "mebi", "giga", "kilo", "exponent", "int"],
)
def test_kubernetes_quantities_parse_exactly(text: str | int, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text", ["", "abc", "1Xi", "1.2.3", "--1"], ids=["empty", "word", "suffix", "dots", "signs"]
)
def test_a_string_that_is_no_quantity_is_refused_with_examples(text: str) -> None:
    with pytest.raises(QuantityError, match="examples"):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("name", "text", "amount"),
    [("cpu", "250m", 250), ("cpu", "0.0001", 1), ("memory", "1Gi", 2**30), ("pods", "110", 110)],
    ids=["cpu-milli", "cpu-rounds-up", "memory-bytes", "pods-count"],
)
def test_canonical_units_are_milli_cores_and_bytes(name: str, text: str, amount: int) -> None:
    assert canonical(name, text) == amount


@pytest.mark.parametrize(
    ("name", "amount", "text"),
    [("cpu", 1500, "1500m"), ("cpu", 2000, "2"), ("memory", 3 * 2**30, "3Gi"), ("memory", 1000, "1000")],
    ids=["cpu-milli", "cpu-whole", "memory-gi", "memory-bytes"],
)
def test_amounts_render_back_as_short_quantities(name: str, amount: int, text: str) -> None:
    assert format_quantity(name, amount) == text


def test_a_shortfall_names_every_resource_below_the_request_in_name_order() -> None:
    free = Resources.parse({"cpu": "2", "memory": "1Gi"})
    assert free.shortfall(Resources.parse({"memory": "2Gi", "cpu": "4", "pods": 1})) == [
        "cpu",
        "memory",
        "pods",
    ]
    assert free.fits(Resources.parse({"cpu": "2"}))


def test_adding_and_subtracting_drops_zero_entries() -> None:
    a = Resources.of(cpu=1000, memory=5)
    assert (a - Resources.of(cpu=1000)).amounts == {"memory": 5}
    assert (a + a).amounts == {"cpu": 2000, "memory": 10}
