"""`python -m mdbd.metrics [n_maps] [size]`: the PySODMetrics benchmark."""

import sys

from mdbd.metrics.benchmark import benchmark_against_pysodmetrics

if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    benchmark_against_pysodmetrics(*args, verbose=True)
