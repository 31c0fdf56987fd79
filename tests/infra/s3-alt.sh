#!/usr/bin/env bash
# The second S3 server of the local cluster: versitygw (posix backend) on 127.0.0.1:$S3_ALT_PORT, its
# objects under $STATE_DIR/versitygw, one bucket ($S3_ALT_BUCKET) created. The storage-contract integration
# tests run against MinIO and this server; docs/storage.md lists the guarantees of each.
# Usage: s3-alt.sh up|down|status. cluster-up / cluster-down / cluster-status call it; it can also restart
# only this server (down, then up) without touching the rest of the cluster.
source "$(dirname "$0")/lib.sh"

NAME=versitygw
BIN="$TOOLS_BIN/versitygw"
CREDS="$LOCAL_DIR/s3-alt-credentials"
DATA_DIR="$STATE_DIR/versitygw"
ENDPOINT="http://127.0.0.1:$S3_ALT_PORT"

up() {
  [ -x "$BIN" ] || "$(dirname "$0")/build-binaries.sh" versitygw
  mkdir -p "$DATA_DIR" "$LOG_DIR" "$RUN_DIR"
  if [ ! -f "$CREDS" ]; then
    ( umask 077; printf 'S3_ALT_ACCESS_KEY_ID=vgw%s\nS3_ALT_SECRET_ACCESS_KEY=%s\n' \
        "$(openssl rand -hex 4)" "$(openssl rand -hex 20)" > "$CREDS" )
  fi
  # shellcheck disable=SC1090
  source "$CREDS"
  STARTED_HERE=0
  if is_running "$NAME"; then
    log "$NAME: already running (pid $(cat "$(pidfile "$NAME")"))"
  else
    port_free_or_ours "$NAME" 127.0.0.1 "$S3_ALT_PORT"
    # The root account comes from the environment (not argv: /proc/<pid>/cmdline is world-readable).
    ROOT_ACCESS_KEY="$S3_ALT_ACCESS_KEY_ID" ROOT_SECRET_KEY="$S3_ALT_SECRET_ACCESS_KEY" start "$NAME" \
      "$BIN" --port "127.0.0.1:$S3_ALT_PORT" --region us-east-1 --health /health posix "$DATA_DIR"
    STARTED_HERE=1
  fi
  # A failed start stops what this call started, and names the component and its log.
  trap '[ $? -eq 0 ] || [ "$STARTED_HERE" = 0 ] || stop "$NAME"' EXIT
  wait_for "$NAME" 30 curl -fsS "$ENDPOINT/health"
  # versitygw requires x-amz-content-sha256 on every signed request (curl does not send it by itself).
  local s3=(curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ALT_ACCESS_KEY_ID:$S3_ALT_SECRET_ACCESS_KEY"
            -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
  "${s3[@]}" -o /dev/null -I "$ENDPOINT/$S3_ALT_BUCKET" 2>/dev/null \
    || "${s3[@]}" -X PUT -o /dev/null "$ENDPOINT/$S3_ALT_BUCKET" \
    || die "$NAME: creating bucket $S3_ALT_BUCKET at $ENDPOINT failed (log: $LOG_DIR/$NAME.log)"
  trap - EXIT
}

component_cli "$@"
