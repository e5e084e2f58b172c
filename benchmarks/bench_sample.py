"""How long ``zexport sample`` takes: the benchmarks make 10k-100k-conversation archives.

Usage: ``python benchmarks/bench_sample.py [-n 10000] [--repeat 3] [--root /dev/shm/x]``

Each repeat makes a fresh sample of ``-n`` conversations (seed 0) under
``--root`` (tmpfs by default, so the disk is not what is measured), in this
process, and prints one JSON line per repeat: wall and CPU seconds (the box is
shared: compare CPU time), the archive's size and the sample's counts. To
compare two trees, run this with each on ``PYTHONPATH``, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

from zexport.sample import make_sample


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--conversations", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--root", default="/dev/shm/zexport-bench-sample")
    args = p.parse_args()
    for _ in range(args.repeat):
        shutil.rmtree(args.root, ignore_errors=True)
        os.makedirs(args.root)
        db = os.path.join(args.root, "sample.db")
        wall, cpu = time.perf_counter(), time.process_time()
        stats = make_sample(db, conversations=args.conversations, seed=0)
        print(json.dumps({
            "conversations": args.conversations, "wall_s": round(time.perf_counter() - wall, 2),
            "cpu_s": round(time.process_time() - cpu, 2), "db_mb": round(
                os.path.getsize(db) / 1e6), "messages": stats.messages,
            "attachments": stats.attachments, "files": stats.attachment_files}), flush=True)
    shutil.rmtree(args.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
