"""Execute the tutorials (docs/tutorials/*.py, jupytext percent scripts) as notebooks and report how long each took.

    python docs/execute_tutorials.py            # execute every tutorial; fail on the first error (what CI runs)
    python docs/execute_tutorials.py --write    # also write the executed notebooks (.ipynb, outputs included)
    python docs/execute_tutorials.py atlas      # only the tutorials whose name contains "atlas"

Each notebook runs in a fresh kernel of this Python, in docs/tutorials/. ``CI=true`` selects each tutorial's smaller
setting (stated at its top).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbclient

TUTORIALS = Path(__file__).parent / "tutorials"


def tutorials(names: list[str]) -> list[Path]:
    """The tutorial scripts, filtered by name fragments."""
    paths = sorted(p for p in TUTORIALS.glob("*.py") if not p.name.startswith("_"))
    return [p for p in paths if not names or any(n in p.stem for n in names)]


def execute(path: Path, *, write: bool, timeout: int) -> float:
    """Execute one tutorial in a fresh kernel; return the seconds it took."""
    notebook = jupytext.read(path)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    start = time.perf_counter()
    client = nbclient.NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(TUTORIALS)}}
    )
    client.execute()
    seconds = time.perf_counter() - start
    if write:
        jupytext.write(notebook, path.with_suffix(".ipynb"))
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Execute the selected tutorials."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="name fragments of the tutorials to run (default: all)")
    parser.add_argument("--write", action="store_true", help="write the executed notebooks beside the scripts")
    parser.add_argument("--timeout", type=int, default=900, help="seconds one cell may run")
    args = parser.parse_args(argv)
    paths = tutorials(args.names)
    if not paths:
        print(f"no tutorial matches {args.names}", file=sys.stderr)
        return 2
    total = 0.0
    for path in paths:
        seconds = execute(path, write=args.write, timeout=args.timeout)
        total += seconds
        print(f"{path.name}: {seconds:.0f} s", flush=True)
    print(f"all {len(paths)} tutorials: {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
