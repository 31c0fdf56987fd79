# Sourced by demo.sh (step 5): one cluster, many teams. A second namespace applies the SAME ModelVersion
# name; each ends Ready on an artifact of its own (models/<namespace>/...), and a version deleted and
# re-applied (an Argo CD replace, a restore) adopts its own committed artifact instead of training again.
TEAM_B="$DEMO_NS-b"
kubectl get namespace "$TEAM_B" >/dev/null 2>&1 || kubectl create namespace "$TEAM_B" >/dev/null
kubectl label namespace "$TEAM_B" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
kubectl -n "$DEMO_NS" get secret mlops-s3 -o json \
  | python3 -c 'import json,sys; s=json.load(sys.stdin); m=s["metadata"]; [m.pop(k,None) for k in list(m) if k!="name"]; print(json.dumps(s))' \
  | kubectl -n "$TEAM_B" apply -f - >/dev/null
sed "s/^  name: bc-v1\$/  name: $MV/" "$REPO_ROOT/manifests/examples/modelversion.yaml" | kubectl -n "$TEAM_B" apply -f -
DEMO_NS="$TEAM_B" wait_phase mv "$MV" Ready Rejected Failed
for ns in "$DEMO_NS" "$TEAM_B"; do
  printf '  %-14s %s  artifact %s\n' "$ns" "$MV" "$(kubectl -n "$ns" get mv "$MV" -o jsonpath='{.status.artifact.uri}')"
done
[ "$(kubectl -n "$TEAM_B" get mv "$MV" -o jsonpath='{.status.phase}')" = Ready ] || die "$TEAM_B/$MV is not Ready"
printf 'deleting %s/%s and applying it again (same spec): it adopts its own artifact\n' "$TEAM_B" "$MV"
kubectl -n "$TEAM_B" delete mv "$MV" --wait=true >/dev/null
sed "s/^  name: bc-v1\$/  name: $MV/" "$REPO_ROOT/manifests/examples/modelversion.yaml" | kubectl -n "$TEAM_B" apply -f - >/dev/null
DEMO_NS="$TEAM_B" wait_phase mv "$MV" Ready Rejected Failed
printf '  %s/%s: %s (%s)\n' "$TEAM_B" "$MV" "$(kubectl -n "$TEAM_B" get mv "$MV" -o jsonpath='{.status.phase}')" \
  "$(kubectl -n "$TEAM_B" get mv "$MV" -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}')"
