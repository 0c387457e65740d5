"""nbval in `make test` compares printed decimal numbers to a stated tolerance (mdbd.chain.nbval_tolerance: half a unit of
the third significant digit, or one unit of the last digit printed), everything else exactly; so the references
hold on any CPU without pinning its float kernels."""

from mdbd.chain.nbval_tolerance import install

install()
