#!/usr/bin/python3
"""plugd-py-stats: mean, median and stdev over numbers, a plugd functions plugin.

    calc --plugin build/bin/plugd-py-stats mean 1 2 3      # 2
"""
import statistics

import plugd_sdk

plugin = plugd_sdk.Plugin("stats", "1.0.0")


@plugin.function(at_least_one=True)
def mean(*x: float) -> float:
    """mean X...: the arithmetic mean of one or more numbers"""
    return statistics.fmean(x)


@plugin.function(at_least_one=True)
def median(*x: float) -> float:
    """median X...: the middle value (the mean of the two middle ones for an even count)"""
    return statistics.median(x)


@plugin.function(at_least_one=True)
def stdev(*x: float) -> float:
    """stdev X...: the sample standard deviation of two or more numbers"""
    if len(x) < 2:
        raise plugd_sdk.CallError.invalid_argument(
            f"stdev: needs at least 2 numbers, got {len(x)}")
    return statistics.stdev(x)


if __name__ == "__main__":
    raise SystemExit(plugin.serve())
