"""Constructor-argument validation shared by the hardware units (messages name the bad value)."""

__all__ = ["check_bool", "check_int"]


def check_int(what, value, lo, hi):
    """Raise ``ValueError`` unless ``value`` is an int (not a bool) in [lo, hi]."""
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"{what} must be an integer from {lo} to {hi}, not {value!r}")
    return value


def check_bool(what, value):
    """Raise ``TypeError`` unless ``value`` is a bool."""
    if type(value) is not bool:
        raise TypeError(f"{what} must be a bool, not {value!r}")
    return value
