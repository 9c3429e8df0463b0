"""Unit tests of handoff.py's analysis of a move (no lab, no root; a second):
  python3 -m unittest discover -s Tools/lab -p 'test_*.py'
Synthetic flows in 100 ms bins with five moves 4 s apart, as the bench makes them; the
middle move is the one measured."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import handoff  # noqa: E402

MOVES = [4.0, 8.0, 12.0, 16.0, 20.0]
# The switch 0.21 s after each move command: inside the bin that starts at 0.2 s.
SWITCHES = [m + 0.21 for m in MOVES]
MIDDLE = 2
END = 24.0


def series(rate_at):
    """(time, Mbit/s) per 100 ms bin from 0 to END, through the sink's counting: rate_at(t)
    gives the bin that starts at t."""
    bins = {}
    for slot in range(int(END * 10)):
        bins[str(slot)] = int(rate_at(slot / 10) * 1e6 / 8 * 0.1)
    return handoff.throughput_series(bins)


def swinging(t):
    """A CPU-bound flow about 1,000 Mbit/s whose bins swing 0.8-1.2x with no move near."""
    return (800, 1200, 1000)[int(round(t * 10)) % 3]


def dip(length, rate, before=swinging, index=MIDDLE):
    """`before`, but at `rate` for `length` s from the bin move `index`'s switch falls in."""
    start = int(SWITCHES[index] * 10) / 10

    def rate_at(t):
        return rate if start - 1e-9 <= t < start + length - 1e-9 else before(t)
    return rate_at


def analyse(rate_at, index=MIDDLE, rtt_ms=0):
    return handoff.analyse_move(series(rate_at), [], MOVES, SWITCHES, index, rtt_ms)


class Recovery(unittest.TestCase):
    def test_a_dip_of_0_3_s_reads_0_3_s(self):
        figures = analyse(dip(0.3, 0))
        self.assertAlmostEqual(figures.level, 1000, delta=1)
        self.assertAlmostEqual(figures.recover, 0.29, delta=0.01)

    def test_a_fast_stretch_before_the_move_does_not_lengthen_it(self):
        """2 s at twice the rate just before the move: the old criterion (the mean of those
        2 s) reads the flow as not back for as long as the search runs; the median around
        the move does not."""
        fast = lambda t: 2000 if MOVES[MIDDLE] - 2 <= t < MOVES[MIDDLE] else swinging(t)
        figures = analyse(dip(0.3, 0, before=fast))
        self.assertAlmostEqual(figures.recover, 0.29, delta=0.01)
        self.assertGreater(figures.level_2s_mean, 1900)
        self.assertTrue(figures.recover_2s_mean is None or figures.recover_2s_mean > 2)

    def test_a_flow_at_half_its_level_for_3_s_reads_3_s(self):
        figures = analyse(dip(3.0, 500))
        self.assertAlmostEqual(figures.level, 1000, delta=1)
        self.assertAlmostEqual(figures.recover, 2.99, delta=0.01)

    def test_a_flow_that_never_comes_back_reads_none(self):
        figures = analyse(dip(END, 500))
        self.assertIsNone(figures.recover)

    def test_a_flow_back_only_after_the_next_move_reads_none(self):
        """The search ends at the next move command: what comes after is that move's."""
        figures = analyse(dip(4.0, 500))
        self.assertIsNone(figures.recover)
        self.assertIsNotNone(figures.recover_2s_mean)

    def test_what_was_in_flight_on_the_old_path_does_not_count_as_back(self):
        """At 50 ms the CN still receives the old path's queued data for a round trip after
        the switch, at the level; the flow then drops for 1 s. The search starts where the
        echoes' gap ended (the new path), so it reads the drop; from the switch, 0."""
        switched = SWITCHES[MIDDLE]
        in_flight_then_dip = lambda t: 100 if 12.5 - 1e-9 <= t < 13.5 - 1e-9 else swinging(t)
        echoes = [n / 100 for n in range(int(END * 100)) if not 1224 <= n <= 1230]
        figures = handoff.analyse_move(series(in_flight_then_dip), echoes, MOVES, SWITCHES, MIDDLE, 50)
        self.assertAlmostEqual(figures.gap, 80, delta=0.1)
        self.assertAlmostEqual(figures.recover, 13.5 - switched, delta=0.01)
        self.assertEqual(figures.recover_2s_mean, 0)

    def test_a_steady_flow_reads_0(self):
        figures = analyse(lambda t: 1000)
        self.assertEqual(figures.recover, 0)


class Gap(unittest.TestCase):
    def test_the_gap_is_the_silence_across_the_switch_and_the_window_any_silence_near(self):
        """Echoes every 10 ms; none from 12.21 to 12.27 s (the switch at 12.21) nor from
        11.61 to 11.69 s (jitter before the move command at 12)."""
        silent = [(1221, 1227), (1161, 1169)]
        echoes = [n / 100 for n in range(int(END * 100)) if not any(a <= n <= b for a, b in silent)]
        figures = handoff.analyse_move(series(swinging), echoes, MOVES, SWITCHES, MIDDLE, 50)
        self.assertAlmostEqual(figures.gap, 80, delta=0.1)
        self.assertAlmostEqual(figures.widest, 100, delta=0.1)


if __name__ == "__main__":
    unittest.main()
