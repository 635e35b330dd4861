"""``python -m bench``: run the benchmark suite."""

from bench.run import main

main()
