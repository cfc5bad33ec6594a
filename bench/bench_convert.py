"""Benchmark of the convert stage (issue 4): read, convert, validate, de-duplicate and write batches.

Generates N synthetic Cognito users as JSONL (1% edge cases, bench/gen_users.py) in a temporary folder,
then times, in the same process:

- the floor: read the same file and ``json.loads`` + ``json.dumps`` every record (measured before and after
  the stage; the faster of the two is used, which makes the ratio conservative);
- the stage: :func:`cognito_migration.batches.write_batches` from the JSONL lines to batch files, rejects
  and the summary, including the spool and the de-dup passes.

Targets: ratio (stage / floor) ≤ 3 and peak RSS < 1,024 MB. The last line is machine-readable:

    RESULT convert users_per_s=<v> floor_users_per_s=<f> ratio=<elapsed/floor_elapsed> peak_rss_mb=<m>

    python bench/bench_convert.py [--users 1000000] [--seed 7] [--keep]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from bench.gen_users import write_jsonl  # noqa: E402
from cognito_migration.batches import write_batches  # noqa: E402
from cognito_migration.convert import ConvertPolicy, PoolContext  # noqa: E402

TARGET_RATIO = 3.0
TARGET_RSS_MB = 1024


def floor_seconds(path: Path) -> tuple[float, float]:
    """Plain JSON round trip of every record, the cost any converter pays at the least: (wall, CPU) seconds."""
    started, cpu = time.perf_counter(), time.process_time()
    with path.open("rb") as handle:
        for line in handle:
            json.dumps(json.loads(line))
    return time.perf_counter() - started, time.process_time() - cpu


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    source = workdir / "users.jsonl"
    started = time.perf_counter()
    memberships = write_jsonl(source, args.users, seed=args.seed)
    print(
        f"generated {args.users:,} users ({source.stat().st_size / 1e6:,.0f} MB, {len(memberships):,} with groups) "
        f"in {time.perf_counter() - started:.1f}s"
    )
    pool = PoolContext(
        "us-east-1_Bench0001", "Bench Pool", "bench-pool", ("custom:tier", "custom:company", "custom:signup_source")
    )
    policy = ConvertPolicy()

    floor_before, floor_cpu_before = floor_seconds(source)
    started, cpu = time.perf_counter(), time.process_time()
    with source.open("rb") as lines:
        summary = write_batches(lines, memberships, pool, policy, workdir / "out", spool_dir=str(workdir))
    elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - cpu
    floor_after, floor_cpu_after = floor_seconds(source)
    floor, floor_cpu = min(floor_before, floor_after), min(floor_cpu_before, floor_cpu_after)

    sizes = [batch.bytes for batch in summary.batches]
    print(
        f"stage {elapsed:.1f}s; floor {floor_before:.1f}s before, {floor_after:.1f}s after | "
        f"seen {summary.seen:,} converted {summary.converted:,} skipped {summary.skipped:,} "
        f"rejected {summary.rejected:,} | {len(sizes):,} batches, largest {max(sizes, default=0):,} bytes"
    )
    print(
        f"CPU time (user+system, less sensitive to a busy machine): stage {elapsed_cpu:.1f}s, floor {floor_cpu:.1f}s, "
        f"ratio {elapsed_cpu / floor_cpu:.2f}"
    )
    print(f"by reason: {json.dumps(summary.by_reason, sort_keys=True)}")
    print(f"warnings: {json.dumps(summary.warnings, sort_keys=True)}")
    if args.keep:
        print(f"kept {workdir}")
    else:
        import shutil

        shutil.rmtree(workdir)
    ratio = elapsed / floor
    rss = peak_rss_mb()
    verdict = "meets" if ratio <= TARGET_RATIO and rss < TARGET_RSS_MB else "MISSES"
    print(f"{verdict} the targets (ratio <= {TARGET_RATIO}, peak RSS < {TARGET_RSS_MB} MB)")
    print(
        f"RESULT convert users_per_s={args.users / elapsed:.0f} floor_users_per_s={args.users / floor:.0f} "
        f"ratio={ratio:.2f} peak_rss_mb={rss:.0f}"
    )


if __name__ == "__main__":
    main()
