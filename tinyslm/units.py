"""Limits and human units shared by the commands."""

MAX_SEQ = 65536         # positions: the serial protocol counts steps and items in 16 bits


def human_bytes(n):
    """1234567 -> '1.2 MiB' (binary units, 3 significant digits)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
