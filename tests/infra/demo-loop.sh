# shellcheck shell=bash
# Sourced by demo.sh (last step): continuous training with real load, the real Prometheus and the real
# Alertmanager, driven by tests/infra/demo_loop.py (it reuses the e2e kits and prints every change it waits for):
#   branch 1: drifted traffic -> drift alert -> Alertmanager -> RetrainPolicy -> fresh FeatureSet snapshot ->
#             retrain -> fair champion/challenger gate -> canary judged by Prometheus -> promoted
#   branch 3: a canary judged on accuracy from labels sent as feedback through the entry Service, promoted;
#             then wrong labels -> accuracy falls -> rolled back inside postPromotion, the failed version
#             not tracked again
# Expects DEMO_NS, REPO_ROOT, die() and the cluster environment from demo.sh.

(cd "$REPO_ROOT" && DEMO_NS="$DEMO_NS" "$REPO_ROOT/.venv/bin/python" -m tests.infra.demo_loop) \
  || die "the continuous-training step failed (the message above says what to look at); rerun only this step with DEMO_ONLY_LOOP=1 make demo"
kubectl -n "$DEMO_NS" get rp,mdep
