"""`helm test`: the operator answers its health endpoint and every mlops.dev kind the chart ships is served.

Runs in the operator image with the standard library only. Arguments: the operator Service's URL of
/healthz, the seconds to keep trying (the leader labels its pod a moment after it starts), and the plurals
of the chart's CRDs, comma-separated.
"""
import json
import os
import ssl
import sys
import time
import urllib.request

SA = "/var/run/secrets/kubernetes.io/serviceaccount"


def healthy(url, patience):
    deadline = time.monotonic() + patience
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                print(f"{url}: HTTP {answer.status}")
                return True
        except OSError as exc:
            if time.monotonic() > deadline:
                print(f"{url}: no healthy answer ({exc})")
                return False
            time.sleep(2)


def served_kinds():
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    with open(f"{SA}/token") as f:
        token = f.read().strip()
    request = urllib.request.Request(f"https://{host}:{port}/apis/mlops.dev/v1alpha1",
                                     headers={"Authorization": f"Bearer {token}"})
    context = ssl.create_default_context(cafile=f"{SA}/ca.crt")
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        return {r["name"] for r in json.load(answer)["resources"] if "/" not in r["name"]}


def main():
    url, patience, kinds = sys.argv[1], float(sys.argv[2]), set(sys.argv[3].split(","))
    ok = healthy(url, patience)
    try:
        served = served_kinds()
    except (OSError, KeyError, ValueError) as exc:
        print(f"API discovery of mlops.dev/v1alpha1 failed: {exc}")
        served = set()
    missing = sorted(kinds - served)
    print("mlops.dev/v1alpha1 serves: " + ", ".join(sorted(served & kinds)))
    if missing:
        print("missing: " + ", ".join(missing))
    return 0 if ok and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
