"""Constructor-argument validation shared by the hardware units (messages name the bad value)."""

__all__ = ["check_bool", "check_clip_range", "check_int", "check_widths"]


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


# The widths of the post-processing units: what each is called in messages and its range.
_WIDTHS = {"lanes": ("Lane count", 1, 256), "acc_bits": ("Accumulator width", 2, 48),
           "mult_bits": ("Multiplier width", 1, 24), "shift_bits": ("Shift width", 1, 6),
           "out_bits": ("Output width", 2, 32), "hswish_bits": ("Pre-activation width", 4, 16),
           "shift_offset_bits": ("Shift offset width", 2, 32),
           "dividend_bits": ("Dividend width", 2, 32), "log2_offset_bits": ("Offset width", 2, 16)}


def check_widths(**values):
    """:func:`check_int` on each named width of a post-processing unit (one table of names and
    ranges for all of them: ``lanes``, ``acc_bits``, ``mult_bits``, ``shift_bits``, ``out_bits``,
    ``hswish_bits``, ``shift_offset_bits``, ``dividend_bits``, ``log2_offset_bits``)."""
    for key, value in values.items():
        what, lo, hi = _WIDTHS[key]
        check_int(what, value, lo, hi)


def check_clip_range(lo, hi):
    """Raise ``ValueError`` unless the log2 code's clip range is integers with lo < hi within +-31."""
    if type(lo) is not int or type(hi) is not int or not lo < hi or max(-lo, hi) > 31:
        raise ValueError(f"Clip range must be integers with lo < hi within +-31, not ({lo!r}, {hi!r})")
