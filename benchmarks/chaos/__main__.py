"""`python -m benchmarks.chaos --seed N --minutes M [--instances 1|2] [--webhook]`: prints the
soak's figures, each check's violations (0 expected), the seed and the command that replays
it; exits 1 on a violation, after printing the history around it."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from benchmarks.chaos.faults import FAULTS
from benchmarks.chaos.soak import Options, run
from benchmarks.ledger import admin_url
from db.embedded import start_embedded


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--minutes", type=float, default=1.0, help="of load (then the drain)")
    parser.add_argument("--instances", type=int, choices=(1, 2), default=1)
    parser.add_argument("--webhook", action="store_true", help="one instance, by webhook")
    parser.add_argument("--members", type=int, default=30, help="joined at the start")
    parser.add_argument("--cashiers", type=int, default=6)
    parser.add_argument(
        "--api-tills", type=int, default=2, help="tills posting sales by the partner API"
    )
    parser.add_argument(
        "--faults",
        help=f"only these, comma-separated, of: {', '.join(FAULTS)} (default: all)",
    )
    parser.add_argument("--logs", type=Path, help="keep the bots' logs in this folder")
    parser.add_argument(
        "--own-postgres",
        action="store_true",
        help="start a PostgreSQL of the soak's own (embedded), so it can be restarted too",
    )
    args = parser.parse_args(argv)
    faults = set(args.faults.split(",")) if args.faults else None
    if faults is not None and faults - set(FAULTS):
        parser.error(f"unknown faults: {', '.join(sorted(faults - set(FAULTS)))}")
    return Options(
        seed=args.seed,
        minutes=args.minutes,
        instances=args.instances,
        webhook=args.webhook,
        members=args.members,
        cashiers=args.cashiers,
        api_tills=args.api_tills,
        faults=faults,
        logs=args.logs,
        postgres=args.own_postgres or None,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    if options.postgres:
        folder = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        admin, server = start_embedded(folder, cleanup="delete")
        options.postgres = server
    else:
        admin, server = admin_url()
    try:
        report = asyncio.run(run(options, admin))
    finally:
        if server is not None:
            server.cleanup()
    print(report.text())
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
