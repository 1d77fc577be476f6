"""Constructor-argument validation shared by the hardware units (messages name the bad value)."""

__all__ = ["check_int"]


def check_int(what, value, lo, hi):
    """Raise ``ValueError`` unless ``value`` is an int (not a bool) in [lo, hi]."""
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"{what} must be an integer from {lo} to {hi}, not {value!r}")
    return value
