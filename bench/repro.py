"""`dvc repro` on an unchanged pipeline: wall time of the no-op check, next to `dvc status`.

    python bench/repro.py [--repo .]

Run in a repository whose pipeline is up to date (e.g. after `make run`). Prints both wall times
(best of 3) and their ratio. The raw data is a handful of tar shards (ul.data.rawshards), not one
file per image, so DVC has few files to check.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time


def best(cmd, repo, n=3) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if out.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
        ran = set(re.findall(r"Running stage '([^']+)'", out.stdout)) - {"source"}  # source: looked at every time
        if cmd[1] == "repro" and ran:
            raise SystemExit(
                f"the pipeline was not up to date: {', '.join(sorted(ran))} ran; run it once and benchmark again"
            )
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=".")
    args = p.parse_args()
    status = best(["dvc", "status"], args.repo)
    repro = best(["dvc", "repro"], args.repo)
    print(f"dvc status: {status:.2f} s   dvc repro (nothing to do): {repro:.2f} s   ratio {repro / status:.2f}")


if __name__ == "__main__":
    main()
