"""``kubectl mlops <verb>``: argparse, and each verb as a small function of (args, client, output).

Exit codes: 0 done, 1 an error shown as one line (not found, forbidden, no Job yet), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TextIO

from mlops_operator.cli import actions, compare, explain, history, render, tree
from mlops_operator.cli.client import CliError, Client
from mlops_operator.cli.kinds import Ref, parse_ref
from mlops_operator.cli.world import World, job_for, name, pods_of_job

PROG = "kubectl mlops"
EXAMPLES = """examples:
  kubectl mlops get                       # every model in the namespace as a tree
  kubectl mlops get breast-cancer -w      # one model, redrawn every 2s
  kubectl mlops promote bc                # skip the remaining steps / approve / end a post-promotion window
  kubectl mlops abort bc | retry bc | pause bc | resume bc
  kubectl mlops history bc
  kubectl mlops compare bc-v1 bc-v2
  kubectl mlops why mdep/bc               # the condition chain down to the failing child
  kubectl mlops logs mv/bc-v3 -f          # the training Job's logs (fs/<name>: the materialize Job's)
"""


def _common(suppress: bool) -> argparse.ArgumentParser:
    """Flags accepted before and after the verb (after the verb they must not reset values given before)."""
    default = argparse.SUPPRESS if suppress else None
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-n", "--namespace", default=default, help="namespace (default: the kubeconfig context's)")
    p.add_argument("--context", default=default, help="kubeconfig context")
    p.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("-o", "--output", choices=("text", "json", "yaml"), default=argparse.SUPPRESS if suppress else "text",
                   help="output format (default text)")
    return p


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=PROG, parents=[_common(False)], epilog=EXAMPLES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  description="Features, versions, rollouts and retraining of mlops.dev resources.")
    sub = top.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = _common(True)

    def verb(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_, description=help_)

    p = verb("get", "a tree per model: features -> versions -> deployments -> policies")
    p.add_argument("model", nargs="?", help="only this model (spec.model)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    p.add_argument("-w", "--watch", action="store_true", help="redraw until interrupted")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between redraws with --watch (default 2)")

    for name_, help_ in (("promote", "skip the remaining steps / approve a paused rollout / end a post-promotion window"),
                         ("abort", "give the candidate up now (in a post-promotion window: roll back)"),
                         ("retry", "let a rolled-back or aborted version (and blocked versions) be rolled out again")):
        p = verb(name_, f"{help_} (annotation mlops.dev/{name_})")
        p.add_argument("mdep", help="ModelDeployment: <name> or mdep/<name>")
        p.add_argument("--wait", action="store_true", help="wait until the operator has handled the request")
        p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait with --wait (default 60)")
    for name_, help_ in (("pause", "hold the rollout where it is (spec.paused=true)"),
                         ("resume", "continue a paused rollout (spec.paused=false)")):
        p = verb(name_, help_)
        p.add_argument("mdep", help="ModelDeployment: <name> or mdep/<name>")

    p = verb("history", "the finished rollouts of a ModelDeployment (status.history)")
    p.add_argument("mdep", help="ModelDeployment: <name> or mdep/<name>")

    p = verb("compare", "two ModelVersions side by side: metrics, parameters, lineage, data snapshot")
    p.add_argument("a", help="ModelVersion: <name> or mv/<name>")
    p.add_argument("b", help="ModelVersion: <name> or mv/<name>")

    p = verb("why", "the condition chain down to the failing child, and the next command to run")
    p.add_argument("ref", nargs="+", metavar="KIND/NAME", help="e.g. mdep/bc, mv/bc-v3, fs/bc-features (or: mdep bc)")

    p = verb("logs", "the training (mv) or materialize (fs) Job's logs")
    p.add_argument("ref", nargs="+", metavar="KIND/NAME", help="mv/<name> or fs/<name> (or: mv <name>)")
    p.add_argument("-f", "--follow", action="store_true", help="stream while the Job runs")
    p.add_argument("--tail", type=int, default=None, help="only the last N lines")
    p.add_argument("--all-pods", action="store_true", help="every attempt's pod, oldest first (default: the newest)")
    return top


def _ref(text: str, kind: str) -> Ref:
    return parse_ref([text], (kind,)) if "/" in text else Ref(kind, text)


def _out(args: argparse.Namespace, data: Any, text: str, out: TextIO) -> None:
    out.write(text if args.output == "text" else render.dump(data, args.output))


# ---------------------------------------------------------------------------------------------- verbs


def cmd_get(args, client: Client, out: TextIO, ns: str | None) -> int:
    def draw() -> str:
        models = tree.models(client.world(ns), args.model)
        return render.tree(models, all_namespaces=ns is None) if args.output == "text" else render.dump(models, args.output)

    if not args.watch:
        out.write(draw())
        return 0
    watch(draw, out, interval=args.interval, clear=out.isatty())
    return 0


def watch(draw: Callable[[], str], out: TextIO, *, interval: float, clear: bool,
          sleep: Callable[[float], None] = time.sleep, now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
          iterations: int | None = None) -> None:
    """Redraw ``draw()`` every ``interval`` seconds (clearing a terminal; else separated by a time line)."""
    count = 0
    try:
        while iterations is None or count < iterations:
            frame = draw()
            stamp = f"Every {interval:g}s: kubectl mlops get    {now().strftime('%Y-%m-%dT%H:%M:%SZ')}\n\n"
            out.write(("\033[H\033[2J" if clear else ("\n" if count else "")) + stamp + frame)
            out.flush()
            count += 1
            if iterations is None or count < iterations:
                sleep(interval)
    except KeyboardInterrupt:
        pass


def cmd_request(args, client: Client, out: TextIO, ns: str, err: TextIO,
                now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                sleep: Callable[[float], None] = time.sleep) -> int:
    ref = _ref(args.mdep, "ModelDeployment")
    mdep = client.get("ModelDeployment", ref.name, ns)
    warning = actions.advice(mdep, args.verb)
    if warning:
        err.write(f"warning: {ref}: {warning}\n")
    if args.verb in ("pause", "resume"):
        client.patch("ModelDeployment", ref.name, ns, actions.pause_patch(args.verb == "pause"))
        data = {"object": str(ref), "namespace": ns, "spec.paused": args.verb == "pause"}
        _out(args, data, f"{ref} {'paused' if args.verb == 'pause' else 'resumed'} (spec.paused={str(args.verb == 'pause').lower()})\n", out)
        return 0
    body, value = actions.request_patch(mdep, args.verb, now())
    client.patch("ModelDeployment", ref.name, ns, body)
    data: dict[str, Any] = {"object": str(ref), "namespace": ns, "annotation": actions.annotation(args.verb), "value": value}
    text = f"{ref}: {args.verb} requested ({actions.annotation(args.verb)}={value})\n"
    if args.wait:
        deadline = time.monotonic() + args.timeout
        while True:
            mdep = client.get("ModelDeployment", ref.name, ns)
            if actions.handled(mdep, args.verb, value):
                st = mdep.get("status") or {}
                data.update(handled=True, phase=st.get("phase"), stable=st.get("stableVersion"),
                            candidate=st.get("candidateVersion"))
                text += f"handled: phase {st.get('phase')}, stable {st.get('stableVersion') or '-'}" + (
                    f", candidate {st['candidateVersion']}" if st.get("candidateVersion") else "") + "\n"
                break
            if time.monotonic() >= deadline:
                _out(args, {**data, "handled": False}, text, out)
                raise CliError(f"the operator did not handle the request within {args.timeout:g}s "
                               f"(is it running? `kubectl mlops why {ref}`)")
            sleep(1.0)
    _out(args, data, text, out)
    return 0


def cmd_history(args, client: Client, out: TextIO, ns: str) -> int:
    ref = _ref(args.mdep, "ModelDeployment")
    data = history.history(client.get("ModelDeployment", ref.name, ns))
    _out(args, data, render.history(data), out)
    return 0


def cmd_compare(args, client: Client, out: TextIO, ns: str) -> int:
    a, b = (client.get("ModelVersion", _ref(x, "ModelVersion").name, ns) for x in (args.a, args.b))
    world = World(featuresets=client.list("FeatureSet", ns))
    data = compare.compare(world, a, b)
    _out(args, data, render.compare(data), out)
    return 0


def cmd_why(args, client: Client, out: TextIO, ns: str) -> int:
    ref = parse_ref(args.ref)
    world = client.world(ns, jobs=True)
    obj = world.get(ref.kind, ref.name, ns)
    if obj is None:
        raise CliError(f"{ref} not found in namespace {ns}")
    data = explain.explain(world, ref.kind, obj)
    _out(args, data, render.why(data), out)
    return 0


def cmd_logs(args, client: Client, out: TextIO, ns: str) -> int:
    ref = parse_ref(args.ref, ("ModelVersion", "FeatureSet", "BatchPrediction"))
    obj = client.get(ref.kind, ref.name, ns)
    world = client.job_world(ns)
    job = job_for(world, ref.kind, obj)
    st = obj.get("status") or {}
    recorded = (st.get("lineage") or {}).get("job") if ref.kind == "ModelVersion" else st.get("activeJob")
    if job is None and recorded:  # a Job without the operator's labels, still named in status
        job, pods = client.job_and_pods(ns, recorded)
        world.pods.extend(pods)
    if job is None:
        hint = ("it was registered from an artifact, or its Job was removed (jobs.ttlSecondsAfterFinished)"
                if ref.kind == "ModelVersion" else "nothing runs now and no Job is left")
        raise CliError(f"{ref}: no Job found ({hint}); try `kubectl mlops why {ref}`")
    pods = pods_of_job(world, job)
    if not pods:
        raise CliError(f"{ref}: Job {name(job)} has no pod yet; try `kubectl describe job {name(job)} -n {ns}`")
    containers = [c.get("name") for c in ((pods[-1].get("spec") or {}).get("containers") or [])]
    container = next((c for c in ("train", "materialize", "predict") if c in containers), None)
    for pod in pods if args.all_pods else pods[-1:]:
        if args.all_pods:
            out.write(f"==> pod/{name(pod)} <==\n")
        for line in client.logs(ns, name(pod), container, args.follow, args.tail):
            out.write(line + "\n")
            if args.follow:
                out.flush()
    return 0


def run(argv: list[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr,
        make_client: Callable[..., Client] = Client) -> int:
    args = parser().parse_args(argv)
    try:
        client = make_client(kubeconfig=args.kubeconfig, context=args.context)
        ns = args.namespace or client.default_namespace
        if args.verb == "get":
            return cmd_get(args, client, out, None if args.all_namespaces else ns)
        if args.verb in ("promote", "abort", "retry", "pause", "resume"):
            return cmd_request(args, client, out, ns, err)
        return {"history": cmd_history, "compare": cmd_compare, "why": cmd_why, "logs": cmd_logs}[args.verb](
            args, client, out, ns)
    except (CliError, ValueError) as e:
        err.write(f"error: {e}\n")
        return 1
    except BrokenPipeError:
        return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
