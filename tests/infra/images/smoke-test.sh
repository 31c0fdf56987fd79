#!/usr/bin/env bash
# Smoke test of the built images, the way the cluster runs them: each image archive made by
# build-images.sh is imported into a private containerd (own root/state/socket under a temp dir, CRI
# off, so the cluster's containerd is never touched) and run with `ctr run --read-only` and only a
# tmpfs on /tmp, as the image's own user. Inside, it proves:
#   - the process is UID/GID 10001 and the root filesystem refuses writes (/, /opt/venv, /etc);
#   - the runtime image imports sklearn, scipy.stats, pandas, pyarrow, onnxruntime and mlops_operator,
#     loads the mlops-train, mlops-serve and mlops-route entrypoints, and has none of the operator-only
#     packages (kopf, kubernetes, optuna) nor kserve; the operator image loads mlops-operator and has no
#     ML libraries;
#   - all of that wrote nothing to /tmp (no bytecode or cache writes needed).
#
#   tests/infra/images/smoke-test.sh [runtime] [operator]     (default: both; needs root)
# shellcheck source=tests/infra/lib.sh
source "$(dirname "$0")/../lib.sh"

ARCHIVE_DIR="$CACHE_DIR/images/archives"
RUNTIME_IMAGE="${RUNTIME_IMAGE:-localhost/mlops-runtime:dev}"
OPERATOR_IMAGE="${OPERATOR_IMAGE:-localhost/mlops-operator:dev}"
declare -A IMAGE_TAG=([runtime]="$RUNTIME_IMAGE" [operator]="$OPERATOR_IMAGE")

# What each image must (and must not) be able to import, checked inside the container.
read -r -d '' CHECK <<'PY' || true
import importlib, importlib.metadata as md, os, sys
kind = sys.argv[1]
assert (os.getuid(), os.getgid()) == (10001, 10001), f"runs as {os.getuid()}:{os.getgid()}, not 10001:10001"
for path in ("/probe", "/opt/venv/probe", "/etc/probe"):
    try:
        open(path, "w").close()
    except OSError as e:  # EROFS even where UID 10001 lacks permission: the kernel checks read-only first
        assert e.errno == 30, f"{path}: {e} (expected EROFS: is the root filesystem read-only?)"
    else:
        raise AssertionError(f"{path} was writable")
scripts = {ep.name: ep for ep in md.entry_points(group="console_scripts")}
if kind == "runtime":
    import sklearn, scipy.stats, pandas, pyarrow.parquet, onnxruntime, skl2onnx, mlops_operator  # noqa: F401
    wanted = ["mlops-train", "mlops-serve", "mlops-route"]
    for extra in ("kopf", "kubernetes", "optuna", "kserve"):
        assert importlib.util.find_spec(extra) is None, f"runtime image contains {extra}"
else:
    import kopf, mlops_operator  # noqa: F401
    wanted = ["mlops-operator"]
    for ml in ("sklearn", "kserve", "pandas"):
        assert importlib.util.find_spec(ml) is None, f"operator image contains {ml}"
for name in wanted:
    scripts[name].load()  # imports the entrypoint's module: every import it needs is in the image
open("/tmp/probe", "w").close(); os.unlink("/tmp/probe")  # the emptyDir stand-in is writable
left = os.listdir("/tmp")
assert not left, f"imports wrote to /tmp: {left}"
print(f"{kind}: uid 10001, read-only root, entrypoints {', '.join(wanted)} load, sklearn={'sklearn' in sys.modules}")
PY

main() {
  local -a names=("$@"); [ ${#names[@]} -gt 0 ] || names=(runtime operator)
  [ "$(id -u)" -eq 0 ] || die "the smoke test runs a private containerd: run it as root"
  need containerd "Run tests/infra/install-deps.sh."
  local work; work=$(mktemp -d /tmp/mlops-image-smoke.XXXXXX)
  local sock="$work/containerd.sock" ns=mlops-smoke pid n
  cat > "$work/config.toml" <<EOF
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
EOF
  containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
  pid=$!
  # shellcheck disable=SC2064  # expand now: the trap must stop exactly this containerd
  trap "kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf '$work'" EXIT
  local _; for _ in $(seq 1 60); do ctr --address "$sock" version >/dev/null 2>&1 && break; sleep 0.5; done
  ctr --address "$sock" version >/dev/null 2>&1 || { tail "$work/containerd.log" >&2; die "private containerd did not start"; }
  for n in "${names[@]}"; do
    local archive="$ARCHIVE_DIR/mlops-$n.docker.tar" tag="${IMAGE_TAG[$n]:-}"
    [ -n "$tag" ] || die "unknown image '$n' (runtime | operator)"
    [ -s "$archive" ] || die "no archive $archive: run 'IMAGES_IMPORT=0 tests/infra/build-images.sh $n' first"
    log "smoke $n: import $archive"
    ctr --address "$sock" -n "$ns" images import "$archive" >/dev/null
    log "smoke $n: ctr run --read-only (tmpfs /tmp only) $tag"
    ctr --address "$sock" -n "$ns" run --rm --read-only \
      --mount "type=tmpfs,src=tmpfs,dst=/tmp,options=rw:nosuid:nodev:mode=1777" \
      "$tag" "smoke-$n-$$" python -c "$CHECK" "$n" || die "smoke $n: the check inside $tag failed (output above)"
  done
  log "smoke: ${names[*]} passed"
}

main "$@"
