"""``python -m bench``: run the benchmark suite."""

from bench import shared_state
from bench.run import EXTRA_SECTIONS, main

# Section 8 lives in its own module (it needs a redis-server): registered through the hook.
EXTRA_SECTIONS.append(("8", "8 shared state (Redis vs in process)", shared_state.section))
main()
