"""How type hints become a tool's JSON schema: one parameter of each supported kind."""

from __future__ import annotations

import enum
from typing import Literal

import attrs

import lash


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


@attrs.frozen
class Place:
    """Where to forecast."""

    city: str
    country: str | None = None


@lash.tool(timeout=5.0)
async def forecast(
    place: Place,
    days: int = 3,
    unit: Unit = Unit.CELSIUS,
    detail: Literal["brief", "hourly"] = "brief",
    hours: list[int] | None = None,
    thresholds: dict[str, float] | None = None,
) -> str:
    """Forecast the weather.

    :param place: The place to forecast.
    :param days: How many days ahead, 1 to 7.
    :param hours: Hours of the day (0-23) to report, for an hourly forecast.
    :param thresholds: Alert when a measure (temperature, wind...) passes this value.
    """
    unit_name = unit.value
    return f"{place.city}: sunny for {days} day(s), 21 degrees {unit_name} ({detail})"
