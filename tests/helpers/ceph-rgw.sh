#!/usr/bin/env bash
# A throwaway single-node Ceph RADOS Gateway (a real S3 server) on 127.0.0.1, for tests and benchmarks.
# One monitor, one memstore OSD (data lives in RAM), radosgw (beast frontend); no mgr, auth=none.
#
#   ceph-rgw.sh start DIR        boot mon + OSD + radosgw in DIR (wiped first; ~2-3 s) and print
#                                  S3_ENDPOINT=http://127.0.0.1:PORT AWS_ACCESS_KEY_ID=.. AWS_SECRET_ACCESS_KEY=.. CEPH_CONF=..
#                                as the last line on stdout (progress goes to stderr and DIR/log/boot.log)
#   ceph-rgw.sh stop DIR         SIGKILL exactly the processes recorded in DIR/pids (and the watchdog)
#   ceph-rgw.sh stop-gateway DIR   stop only radosgw (simulates an object-store outage)
#   ceph-rgw.sh start-gateway DIR  start radosgw again on the same port, over the same data
#   ceph-rgw.sh pause-gateway DIR  SIGSTOP radosgw (connections hang: a store that stops answering)
#   ceph-rgw.sh resume-gateway DIR SIGCONT radosgw
#
# env for start: RGW_PORT (7480), MON_PORT (3300), AK (testaccesskey), SK (testsecretkey),
#   WATCH_PID (unset): if set, a watchdog stops the cluster and removes DIR once that process is gone
#   (so a crashed test run does not leave daemons behind).
# env for stop / stop-gateway: GRACEFUL=1 sends SIGTERM first (SIGKILL after 3 s).
# Needs the Debian packages: ceph-mon ceph-osd radosgw ceph-common (and curl).
# Logs: DIR/log/*.log (daemon logs), DIR/log/*.stdout, DIR/log/boot.log.
set -euo pipefail
self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
cmd=${1:-}
DIR=${2:-}
usage() { sed -n 2,19p "$self" >&2; exit 2; }
[ -n "$cmd" ] && [ -n "$DIR" ] || usage
case "$DIR" in /*) ;; *) DIR=$(pwd)/$DIR ;; esac
CONF=$DIR/ceph.conf

now_ms() { echo $(($(date +%s%N) / 1000000)); }
T0=$(now_ms)
log() {
  local t=$(($(now_ms) - T0))
  local line
  line=$(printf '[ceph-rgw %3d.%03ds] %s' $((t / 1000)) $((t % 1000)) "$*")
  echo "$line" >&2
  [ -d "$DIR/log" ] && echo "$line" >>"$DIR/log/boot.log"
  return 0
}
die() {
  log "ERROR: $*"
  exit 1
}
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
# Only signal a PID if it is still one of ours: its command line mentions DIR (guards against PID reuse).
ours() { alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$DIR"; }

# start NAME CMD... : run a daemon in the foreground (-f) in the background of this shell, record its PID
spawn() {
  local n=$1
  shift
  "$@" </dev/null >"$DIR/log/$n.stdout" 2>&1 &
  echo "$! $n" >>"$DIR/pids"
}
pid_of() { awk -v n="$1" '$2 == n { p = $1 } END { if (p) print p }' "$DIR/pids" 2>/dev/null; }
show_log() { # on failure: the end of a daemon's logs, to stderr
  local f
  for f in "$DIR/log/$1.stdout" "$DIR/log/$1.log"; do
    [ -s "$f" ] && { echo "---- tail $f" >&2; tail -n 25 "$f" >&2; }
  done
  return 0
}
# wait_until SECONDS DAEMON-NAME DESCRIPTION CMD... : poll CMD every 0.1 s; fail if the daemon died or time ran out
wait_until() {
  local secs=$1 name=$2 what=$3
  shift 3
  local deadline=$(($(now_ms) + secs * 1000)) pid
  pid=$(pid_of "$name")
  while ! "$@" >/dev/null 2>&1; do
    if [ -n "$pid" ] && ! alive "$pid"; then
      show_log "$name"
      die "$name (pid $pid) exited while waiting for: $what"
    fi
    if [ "$(now_ms)" -gt "$deadline" ]; then
      show_log "$name"
      die "timed out after ${secs}s waiting for: $what"
    fi
    sleep 0.1
  done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
rgw_answers() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/"; }

kill_pid() { # SIG PID NAME
  if ours "$2"; then
    kill "-$1" "$2" 2>/dev/null && log "stopped $3 (pid $2, SIG$1)"
  fi
  return 0
}
wait_gone() { # PID... : up to 3 s, then SIGKILL what is left
  local i p left
  for i in $(seq 1 30); do
    left=0
    for p in "$@"; do ours "$p" && left=1; done
    [ $left = 0 ] && return 0
    sleep 0.1
  done
  for p in "$@"; do ours "$p" && kill -KILL "$p" 2>/dev/null && log "killed pid $p"; done
  return 0
}
# Throwaway cluster: SIGKILL straight away (a memstore OSD otherwise spends seconds dumping its RAM store).
SIG=KILL
[ "${GRACEFUL:-0}" = 1 ] && SIG=TERM

stop_daemons() {
  [ -f "$DIR/pids" ] || return 0
  local pids=() pid name
  while read -r pid name; do
    [ -n "$pid" ] || continue
    kill_pid "$SIG" "$pid" "$name"
    pids+=("$pid")
  done < <(tac "$DIR/pids")
  [ ${#pids[@]} = 0 ] || wait_gone "${pids[@]}"
}

start_gateway() {
  # shellcheck disable=SC1091
  . "$DIR/env"
  local old
  old=$(pid_of rgw.gw)
  if [ -n "$old" ] && ours "$old"; then die "radosgw already running (pid $old)"; fi
  spawn rgw.gw radosgw -c "$CONF" -n client.rgw.gw -f
  wait_until 60 rgw.gw "radosgw answering on 127.0.0.1:$RGW_PORT" rgw_answers "$RGW_PORT"
  log "radosgw answering on 127.0.0.1:$RGW_PORT (pid $(pid_of rgw.gw))"
}

stop_gateway() {
  local pid
  pid=$(pid_of rgw.gw)
  if [ -n "$pid" ]; then
    kill_pid "$SIG" "$pid" rgw.gw
    wait_gone "$pid"
  fi
  if [ -f "$DIR/pids" ]; then
    awk '$2 != "rgw.gw"' "$DIR/pids" >"$DIR/pids.tmp" && mv "$DIR/pids.tmp" "$DIR/pids"
  fi
}

case "$cmd" in
start)
  RGW_PORT=${RGW_PORT:-7480}
  MON_PORT=${MON_PORT:-3300}
  AK=${AK:-testaccesskey}
  SK=${SK:-testsecretkey}
  for b in monmaptool ceph-mon ceph-osd ceph radosgw radosgw-admin curl; do
    command -v "$b" >/dev/null || die "$b not found: apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common curl"
  done
  port_open "$MON_PORT" && die "port $MON_PORT (MON_PORT) is already in use"
  port_open "$RGW_PORT" && die "port $RGW_PORT (RGW_PORT) is already in use"
  if [ -f "$DIR/pids" ]; then stop_daemons; fi
  rm -rf "$DIR"
  mkdir -p "$DIR"/{mon,osd,run,log,rgw}
  : >"$DIR/pids"
  booted=0
  on_exit() {
    if [ "$booted" != 1 ]; then
      log "boot failed; stopping what was started (logs kept in $DIR/log)"
      stop_daemons || true
    fi
  }
  trap on_exit EXIT
  printf 'RGW_PORT=%s\nMON_PORT=%s\nAK=%s\nSK=%s\n' "$RGW_PORT" "$MON_PORT" "$AK" "$SK" >"$DIR/env"
  FSID=$(cat /proc/sys/kernel/random/uuid)
  cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon_host = v2:127.0.0.1:$MON_PORT
public_network = 127.0.0.0/8
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
auth_allow_insecure_global_id_reclaim = true
run_dir = $DIR/run
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
pid_file = $DIR/run/\$name.pid
mon_data = $DIR/mon/\$cluster-\$id
osd_data = $DIR/osd/\$cluster-\$id
keyring = $DIR/keyring
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
# faster map commits (default 1 s): pool creation / OSD boot take ms instead of seconds
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
mon_tick_interval = 1
ms_bind_ipv6 = false
# auth=none only allows the crc connection mode; radosgw otherwise asks for 'secure' and fails with EACCES (-13)
ms_mon_client_mode = crc
ms_mon_service_mode = crc
ms_mon_cluster_mode = crc
ms_client_mode = crc
ms_service_mode = crc
ms_cluster_mode = crc
# one small machine: the OSD keeps objects in RAM (memstore), up to 4 GiB
osd_objectstore = memstore
memstore_device_bytes = 4294967296
osd_memory_target = 939524096
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1
mon_osd_down_out_interval = 0
[client.rgw.gw]
# without tcp_nodelay every GET takes ~48 ms (Nagle + delayed ACK)
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw_data = $DIR/rgw
rgw_thread_pool_size = 64
rgw_enable_usage_log = false
rgw_dynamic_resharding = false
EOF
  log "config written to $CONF (fsid $FSID, mon port $MON_PORT, rgw port $RGW_PORT)"

  if [ -n "${WATCH_PID:-}" ]; then
    # Watchdog: when the owning process is gone, stop the daemons and remove DIR.
    nohup bash "$self" watch "$DIR" "$WATCH_PID" </dev/null >"$DIR/log/watchdog.stdout" 2>&1 &
    echo $! >"$DIR/watchdog.pid"
  fi

  monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >"$DIR/log/monmap.stdout" 2>&1 ||
    die "monmaptool failed: $(cat "$DIR/log/monmap.stdout")"
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" >"$DIR/log/mon-mkfs.stdout" 2>&1 ||
    die "ceph-mon --mkfs failed: $(cat "$DIR/log/mon-mkfs.stdout")"
  spawn mon.a ceph-mon -c "$CONF" -i a -f
  wait_until 30 mon.a "ceph-mon listening on 127.0.0.1:$MON_PORT" port_open "$MON_PORT"
  log "mon.a up (pid $(pid_of mon.a))"

  OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
  OSD_ID=$(ceph -c "$CONF" --connect-timeout 20 osd new "$OSD_UUID" 2>"$DIR/log/osd-new.stderr") ||
    die "ceph osd new failed: $(cat "$DIR/log/osd-new.stderr")"
  mkdir -p "$DIR/osd/ceph-$OSD_ID"
  ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$DIR/log/osd-mkfs.stdout" 2>&1 ||
    die "ceph-osd --mkfs failed: $(tail -n 20 "$DIR/log/osd-mkfs.stdout")"
  spawn "osd.$OSD_ID" ceph-osd -c "$CONF" -i "$OSD_ID" -f
  log "osd.$OSD_ID started (pid $(pid_of "osd.$OSD_ID"), memstore)"

  # Pre-create RGW's pools in one ceph CLI session (the CLI is Python and slow to start): otherwise
  # radosgw spends ~9 s creating them at startup and the first CreateBucket/PutObject take seconds.
  # The same session then waits for the OSD to be up.
  {
    for p in .rgw.root default.rgw.log default.rgw.control default.rgw.meta default.rgw.buckets.index \
      default.rgw.buckets.data default.rgw.buckets.non-ec; do
      echo "osd pool create $p 8 8"
      echo "osd pool application enable $p rgw"
    done
  } | ceph -c "$CONF" --connect-timeout 20 >"$DIR/log/pools.log" 2>&1 || die "creating the rgw pools failed: $(tail -n 20 "$DIR/log/pools.log")"
  log "rgw pools created"
  osd_up() { ceph -c "$CONF" --connect-timeout 5 osd stat 2>/dev/null | grep -q '1 up'; }
  wait_until 60 "osd.$OSD_ID" "osd.$OSD_ID up" osd_up
  log "osd.$OSD_ID up"

  start_gateway

  radosgw-admin -c "$CONF" -n client.admin user create --uid=test --display-name=test \
    --access-key="$AK" --secret="$SK" >"$DIR/log/user-create.json" 2>"$DIR/log/user-create.stderr" ||
    die "radosgw-admin user create failed: $(tail -n 20 "$DIR/log/user-create.stderr")"
  log "S3 user created; ready"
  booted=1
  echo "S3_ENDPOINT=http://127.0.0.1:$RGW_PORT AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK CEPH_CONF=$CONF"
  ;;
stop)
  if [ -f "$DIR/watchdog.pid" ]; then
    wd=$(cat "$DIR/watchdog.pid")
    [ -n "$wd" ] && [ "$wd" != "$$" ] && ours "$wd" && kill -KILL "$wd" 2>/dev/null
    rm -f "$DIR/watchdog.pid"
  fi
  stop_daemons
  ;;
stop-gateway)
  [ -f "$DIR/env" ] || die "no cluster in $DIR"
  stop_gateway
  ;;
start-gateway)
  [ -f "$DIR/env" ] || die "no cluster in $DIR"
  start_gateway
  ;;
pause-gateway | resume-gateway)
  pid=$(pid_of rgw.gw)
  [ -n "$pid" ] && ours "$pid" || die "radosgw is not running in $DIR"
  if [ "$cmd" = pause-gateway ]; then sig=STOP; else sig=CONT; fi
  kill "-$sig" "$pid"
  log "sent SIG$sig to rgw.gw (pid $pid)"
  ;;
watch) # internal: watch DIR OWNER-PID
  owner=${3:?owner pid}
  while kill -0 "$owner" 2>/dev/null && [ -f "$DIR/pids" ]; do sleep 1; done
  if [ -f "$DIR/pids" ]; then
    log "owner process $owner is gone: stopping the cluster and removing $DIR"
    stop_daemons
    [ -f "$CONF" ] && rm -rf "$DIR"
  fi
  ;;
*) usage ;;
esac
