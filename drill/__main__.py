"""Run the fault drill and print its figures, then one line of JSON.

    .venv/bin/python -m drill [--devices 100000] [--minutes 10] [--silent 0.01]
        [--time-scale 0.1] [--simulators N] [--edges N] [--sink-delay-ms 100]
        [--restart-gap 5] [--steps broker,edge,database,ingest,monitor,alerts,double,single]
        [--keep]
        [--shared-group GROUP]

`--steps` runs some of the faults, to tell which one breaks what. Exit 1 if any check
fails, 2 if this machine cannot hold the fleet asked for; `--keep` keeps the database and
logs (the logs are kept anyway when a check fails).
"""

from __future__ import annotations

import argparse
import sys

from drill.plan import STEPS, DrillConfig
from drill.run import MachineLimit, print_report, run_drill


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--silent", type=float, default=0.01, help="share (<1) or count")
    parser.add_argument("--time-scale", type=float, default=0.1)
    parser.add_argument("--simulators", type=int, default=0, help="default: one per 10,000")
    parser.add_argument(
        "--edges",
        type=int,
        default=None,
        help="edge brokers bridged to a core (default: one per 19,000 devices, at least 2; "
        "0: one broker, no bridges)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sink-delay-ms", type=float, default=100.0)
    parser.add_argument("--restart-gap", type=float, default=5.0, help="seconds")
    parser.add_argument(
        "--steps", default=",".join(STEPS), help=f"some of {','.join(STEPS)} (default: all)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    parser.add_argument(
        "--shared-group", default="", help="ingests on $share/GROUP/... (default: plain)"
    )
    args = parser.parse_args(argv)
    config = DrillConfig(
        devices=args.devices,
        minutes=args.minutes,
        silent=args.silent,
        time_scale=args.time_scale,
        simulators=args.simulators,
        edges=args.edges,
        seed=args.seed,
        sink_delay_s=args.sink_delay_ms / 1000,
        restart_gap_s=args.restart_gap,
        keep=args.keep,
        shared_group=args.shared_group,
        steps=tuple(s.strip() for s in args.steps.split(",") if s.strip()),
    )
    try:
        report = run_drill(config)
    except MachineLimit as exc:
        print(f"drill not run: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    return 0 if report["ok"] else 1


# Only when run: the simulator and sink processes (spawn) import this module too.
if __name__ == "__main__":
    raise SystemExit(main())
