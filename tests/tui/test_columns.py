"""Which columns a narrow table keeps (tui/columns.py): the least important go first."""

from __future__ import annotations

from tui.columns import fit


def test_columns_are_left_out_from_the_highest_rank_until_the_rest_fits() -> None:
    widths, ranks = [10, 5, 12, 20, 8], [0, 3, 1, 0, 3]
    assert fit(widths, ranks, 55) == [0, 1, 2, 3, 4]  # everything fits
    assert fit(widths, ranks, 50) == [0, 1, 2, 3]  # the rightmost of the highest rank first
    assert fit(widths, ranks, 45) == [0, 2, 3]
    assert fit(widths, ranks, 30) == [0, 3]
    assert fit(widths, ranks, 10) == [0, 3]  # rank 0 stays, even when it does not fit
