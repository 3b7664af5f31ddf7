import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Notebooks under tests/fixtures/ are inputs of the browser tests, not nbval tests.
collect_ignore_glob = ["fixtures/*"]
