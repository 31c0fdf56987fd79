#!/usr/bin/env bash
# The online feature store of the local cluster: Debian's redis-server on $NODE_IP:$REDIS_PORT (reachable from
# pods, like MinIO), password-protected, no persistence (materialization rebuilds it). The password lives in
# $LOCAL_DIR/redis-credentials and reaches redis-server through its config file, never argv.
# Usage: redis.sh up|down|status. cluster-up / cluster-down / cluster-status call it; it can also start only
# this server on a running cluster without touching the rest.
source "$(dirname "$0")/lib.sh"

NAME=redis
CREDS="$LOCAL_DIR/redis-credentials"
DATA_DIR="$STATE_DIR/redis"
CONF="$DATA_DIR/redis.conf"

redis_ping() { redis-cli -h "$NODE_IP" -p "$REDIS_PORT" ping | grep -q PONG; }

up() {
  command -v redis-server >/dev/null || "$(dirname "$0")/install-deps.sh"
  mkdir -p "$DATA_DIR" "$LOG_DIR" "$RUN_DIR"
  if [ ! -f "$CREDS" ]; then
    ( umask 077; printf 'REDIS_PASSWORD=%s\n' "$(openssl rand -hex 24)" > "$CREDS" )
  fi
  # shellcheck disable=SC1090
  source "$CREDS"
  ( umask 077; cat > "$CONF.new" <<CONF
bind $NODE_IP
port $REDIS_PORT
protected-mode yes
requirepass $REDIS_PASSWORD
daemonize no
save ""
appendonly no
dir $DATA_DIR
maxmemory 512mb
maxmemory-policy volatile-ttl
CONF
  mv "$CONF.new" "$CONF" )
  STARTED_HERE=0
  if is_running "$NAME"; then
    log "$NAME: already running (pid $(cat "$(pidfile "$NAME")"))"
  else
    port_free_or_ours "$NAME" "$NODE_IP" "$REDIS_PORT"
    start "$NAME" redis-server "$CONF"
    STARTED_HERE=1
  fi
  trap '[ $? -eq 0 ] || [ "$STARTED_HERE" = 0 ] || stop "$NAME"' EXIT
  export REDISCLI_AUTH="$REDIS_PASSWORD"  # redis-cli reads the password here, not from argv
  wait_for "$NAME" 30 redis_ping
  trap - EXIT
}

component_cli "$@"
