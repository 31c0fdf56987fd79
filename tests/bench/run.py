"""`python -m tests.bench.run [server] [compiled] [abuse] [rates] [router] [drift] [latency] [pointintime] [operator] [--duration S --warmup S --repeats N]`: run benchmarks, print tables.

Exit code is 0 unless a benchmark itself crashed; bars are informational (never assertions on time).
`operator` needs the local cluster with the operator installed (it says "unavailable" otherwise); run it
under the cluster lock, it creates and deletes a few thousand objects in a `bench-op-*` namespace.
"""

from __future__ import annotations

import argparse
import traceback

BENCHMARKS = ("server", "compiled", "abuse", "rates", "router", "drift", "latency", "pointintime", "operator")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("targets", nargs="*", metavar="{server,compiled,abuse,rates,router,drift,latency,pointintime,operator}", help="default: all")
    parser.add_argument("--duration", type=float, default=5.0, help="server/router: seconds per load run (default 5)")
    parser.add_argument("--warmup", type=float, default=2.0, help="server/router: warm-up seconds per cell (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per cell, median quoted (default 3)")
    args = parser.parse_args(argv)
    unknown = set(args.targets) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")
    failed = []
    for target in args.targets or BENCHMARKS:
        print(f"\n=== {target} ===", flush=True)
        try:
            if target == "server":
                from tests.bench import server

                server.run(args.duration, args.warmup, args.repeats)
            elif target == "compiled":
                from tests.bench import compiled

                compiled.run(args.duration, args.warmup, args.repeats)
            elif target == "abuse":
                from tests.bench import abuse

                abuse.run(args.duration, args.warmup, args.repeats)
            elif target == "rates":
                from tests.bench import rates

                rates.run(args.duration, args.warmup, args.repeats)
            elif target == "router":
                from tests.bench import router

                router.run(args.duration, args.warmup, args.repeats)
            elif target == "drift":
                from tests.bench import drift

                drift.run(args.repeats)
            elif target == "pointintime":
                from tests.bench import pointintime

                pointintime.run(args.repeats)
            elif target == "latency":
                from tests.bench import latency

                latency.run(args.repeats)
            else:
                from tests.bench import operator_scale

                operator_scale.run()
        except Exception:  # a crash of one benchmark is reported, the others still run
            traceback.print_exc()
            failed.append(target)
    if failed:
        print(f"\ncrashed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
