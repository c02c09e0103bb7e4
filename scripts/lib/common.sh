# shellcheck shell=bash
# Shared helpers for ripen's scripts (scripts/servers, scripts/test, scripts/run).
# Source it from bash; it is safe under `set -euo pipefail` and sets no shell
# options itself.
#
# Servers are started as plain background processes owned by the caller (no
# systemd, no service user), with all state under $ripen_root/.run/NAME/.
# Processes are only ever stopped through the PID files written there, never
# by process name.

# Debian packages the project needs to build, test and run. Add to this list.
RIPEN_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  librabbitmq-dev libhiredis-dev nlohmann-json3-dev libspdlog-dev libcli11-dev libcurl4-openssl-dev
  libtomlplusplus-dev libgtest-dev libgmock-dev libhowardhinnant-date-dev tzdata
  redis-server redis-tools rabbitmq-server
  clang-format clang clang-tidy libclang-rt-14-dev
  procps curl ca-certificates jq ccache
  python3-pika
  libssl-dev openssl stunnel4
)

ripen_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RIPEN_RUN_DIR="$ripen_root/.run"
# Debian's /usr/sbin/rabbitmq-server and /usr/sbin/rabbitmqctl are wrappers
# that `su rabbitmq` when run as root (which resets HOME, so the Erlang cookie
# differs, and cannot write under .run/); call the real scripts directly.
RIPEN_RABBITMQ_BIN=/usr/lib/rabbitmq/bin
# "NAME/redis" and "NAME/rabbitmq" for every server this shell started itself
# (not reused); see stop_started_servers.
RIPEN_STARTED=()

ripen_log() { printf '[ripen] %s\n' "$*" >&2; }
ripen_die() {
  ripen_log "error: $*"
  exit 1
}

# Milliseconds since the epoch.
ripen_now_ms() { date +%s%3N; }

# "1.234" seconds elapsed since START_MS.
ripen_elapsed() {
  local ms=$(($(ripen_now_ms) - $1))
  printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

# True if PID is a live process (zombies count as gone: PID 1 does not reap
# them on every machine).
ripen_pid_alive() {
  local pid=${1:-} stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# True if PID is alive and its command line contains WORD (guards against a
# stale PID file whose number was reused by another process).
ripen_pid_is() {
  local pid=$1 word=$2 cmdline
  ripen_pid_alive "$pid" || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *"$word"* ]]
}

# Prints the PID stored in FILE, if the file holds one.
ripen_read_pidfile() {
  local file=$1 pid=""
  if [[ -r $file ]]; then read -r pid <"$file" 2>/dev/null || true; fi
  [[ $pid =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
  return 0
}

# Waits up to SECONDS for PID to exit; false if it is still alive.
ripen_wait_pid_gone() {
  local pid=$1 deadline=$(($(ripen_now_ms) + $2 * 1000))
  while ripen_pid_alive "$pid"; do
    (($(ripen_now_ms) < deadline)) || return 1
    sleep 0.1
  done
}

# SIGTERM PID, wait up to SECONDS (default 10), then SIGKILL.
ripen_kill_pid() {
  local pid=$1 grace=${2:-10}
  ripen_pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! ripen_wait_pid_gone "$pid" "$grace"; then
    ripen_log "pid $pid did not exit after SIGTERM within ${grace}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    ripen_wait_pid_gone "$pid" 5 || return 1
  fi
}

# The programs of a build dir, by their place in it (build/bin/ has symlinks
# to them; a process started through one runs the file itself).
RIPEN_PROGRAMS=(producer/ripen dispatcher/ripen-dispatcher worker/ripen-worker)

# Prints "PID PATH" for every live process whose executable (/proc/PID/exe) is
# one of RIPEN_PROGRAMS in a build*/ dir of this checkout: the exact path,
# never a name, so another checkout's programs, the test binaries and
# everything else are left alone. A binary relinked (or a build dir removed)
# since the process started still counts: the kernel shows it as
# "PATH (deleted)".
ripen_checkout_program_pids() {
  local root proc exe dir rel real ok
  root=$(realpath -e "$ripen_root") || return 0
  # A build dir that is a symlink runs its programs from where it points.
  local dirs=()
  for dir in "$ripen_root"/build*/; do
    real=$(realpath -e "$dir" 2>/dev/null) && dirs+=("$real")
  done
  for proc in /proc/[0-9]*; do
    exe=$(readlink "$proc/exe" 2>/dev/null) || continue
    exe=${exe% (deleted)}
    dir=${exe%/*/*}
    rel=${exe#"$dir"/}
    [[ " ${RIPEN_PROGRAMS[*]} " == *" $rel "* ]] || continue
    ok=0
    if [[ ${dir%/*} == "$root" && ${dir##*/} == build* ]]; then
      ok=1
    else
      for real in "${dirs[@]}"; do [[ $dir == "$real" ]] && ok=1; done
    fi
    ((ok)) && ripen_pid_alive "${proc#/proc/}" && printf '%s %s\n' "${proc#/proc/}" "$exe"
  done
  return 0
}

# Stops every process ripen_checkout_program_pids finds (the ones scripts/run
# started and any started by hand, in the foreground or not): SIGTERM to all
# at once (a worker drains its running tasks), up to GRACE seconds (default
# 15) for each to exit, then SIGKILL. Says what it stopped; false if one
# survived even SIGKILL.
ripen_stop_checkout_programs() {
  local grace=${1:-15} pid exe root rc=0
  local pids=() exes=()
  root=$(realpath -e "$ripen_root")
  while read -r pid exe; do
    pids+=("$pid") exes+=("$exe")
  done < <(ripen_checkout_program_pids)
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local i
  for i in "${!pids[@]}"; do
    if ripen_kill_pid "${pids[$i]}" "$grace"; then
      ripen_log "${exes[$i]##*/}: stopped (pid ${pids[$i]}, ${exes[$i]#"$root"/})"
    else
      ripen_log "${exes[$i]##*/} (pid ${pids[$i]}) would not exit"
      rc=1
    fi
  done
  return "$rc"
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
ripen_port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# URL with any user:password@ part masked, for printing.
ripen_redact_url() { sed -E 's#//[^/@]*@#//***@#' <<<"$1"; }

# ---------------------------------------------------------------------------
# Packages

ensure_packages() {
  local missing=() p
  for p in "${RIPEN_PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) != installed ]]; then
      missing+=("$p")
    fi
  done
  ((${#missing[@]} > 0)) || return 0

  ripen_log "installing missing Debian packages: ${missing[*]}"
  local sudo=()
  if ((EUID != 0)); then sudo=(sudo); fi
  # Keep the packages' postinst from starting system-wide redis/rabbitmq
  # services on the default ports: the scripts start their own servers.
  local policy=/usr/sbin/policy-rc.d added_policy=0 rc=0
  if ((EUID == 0)) && [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
  fi
  {
    "${sudo[@]}" apt-get update -q &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
  } || rc=$?
  if ((added_policy)); then rm -f "$policy"; fi
  ((rc == 0)) || ripen_die "package installation failed (exit $rc)"
}

# ---------------------------------------------------------------------------
# Build

# Sets RIPEN_CCACHE_ARGS to the cmake arguments that compile through ccache
# when it is installed (and to none of it when it is not, so a build dir
# configured with it still builds after it is removed).
ripen_ccache_args() {
  if command -v ccache >/dev/null; then
    RIPEN_CCACHE_ARGS=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  else
    RIPEN_CCACHE_ARGS=(-DCMAKE_CXX_COMPILER_LAUNCHER=)
  fi
}

# build_ripen [BUILD_DIR] [extra cmake args...] [--target TARGET...]
# Configures BUILD_DIR (default build/) and builds TARGETs (default: all).
build_ripen() {
  local dir="$ripen_root/build"
  if (($# > 0)) && [[ $1 != -* ]]; then
    [[ -n $1 ]] && dir=$1
    shift
  fi
  local args=() targets=()
  while (($# > 0)); do
    if [[ $1 == --target ]]; then
      shift
      targets=("$@")
      break
    fi
    args+=("$1")
    shift
  done
  # A build dir configured earlier with another generator cannot be switched
  # to Ninja in place; drop its cache.
  if [[ -f $dir/CMakeCache.txt ]] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$dir/CMakeCache.txt"; then
    ripen_log "$dir was configured with another generator; removing its CMake cache"
    rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
  fi
  ripen_log "building ${targets[*]:-everything} in $dir${args[*]:+ (${args[*]})}"
  ripen_ccache_args
  # Warnings are errors in the builds of the dev and test scripts (RIPEN_WERROR
  # is off by default, for users: see CMakeLists.txt).
  cmake -S "$ripen_root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRIPEN_WERROR=ON \
    "${RIPEN_CCACHE_ARGS[@]}" "${args[@]}" &&
    cmake --build "$dir" -j"$(nproc)" ${targets[@]+--target "${targets[@]}"}
}

# ---------------------------------------------------------------------------
# Servers

# ripen_ports NAME: sets RIPEN_REDIS_PORT, RIPEN_AMQP_PORT, RIPEN_DIST_PORT.
ripen_ports() {
  case $1 in
    dev) RIPEN_REDIS_PORT=6379 RIPEN_AMQP_PORT=5672 RIPEN_DIST_PORT=25672 ;;
    test) RIPEN_REDIS_PORT=6391 RIPEN_AMQP_PORT=5691 RIPEN_DIST_PORT=25691 ;;
    *) ripen_die "unknown server set '$1' (expected dev or test)" ;;
  esac
}

ripen_redis_ping() {
  [[ $(timeout 3 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]
}

# start_redis NAME PORT [extra redis-server arguments...]
start_redis() {
  local name=$1 port=$2
  shift 2
  local extra=("$@")
  local dir="$RIPEN_RUN_DIR/$name/redis"
  mkdir -p "$dir"
  local pid
  pid=$(ripen_read_pidfile "$dir/redis.pid")

  if ripen_redis_ping "$port"; then
    if ripen_pid_is "$pid" redis-server; then
      ripen_log "redis ($name): already running on 127.0.0.1:$port (pid $pid), reusing it"
    else
      ripen_log "redis ($name): a Redis server not started by these scripts answers on 127.0.0.1:$port; reusing it (it will not be stopped)"
    fi
    return 0
  fi
  if ripen_port_open "$port"; then
    ripen_die "redis ($name): port $port is in use by something that does not answer Redis PING"
  fi
  command -v redis-server >/dev/null || ripen_die "redis-server not found (run ensure_packages)"

  printf '%s\n' "$port" >"$dir/port"
  rm -f "$dir/redis.pid"
  local start
  start=$(ripen_now_ms)
  if ! redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" \
    --appendonly yes --save "" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "${extra[@]}"; then
    tail -n 30 "$dir/redis.log" >&2 2>/dev/null || true
    ripen_die "redis ($name): redis-server failed to start"
  fi
  local deadline=$((start + 20000))
  until ripen_redis_ping "$port"; do
    if (($(ripen_now_ms) >= deadline)); then
      ripen_log "redis ($name): no PONG on port $port after 20s; last lines of $dir/redis.log:"
      tail -n 30 "$dir/redis.log" >&2 2>/dev/null || true
      pid=$(ripen_read_pidfile "$dir/redis.pid")
      [[ -n $pid ]] && ripen_kill_pid "$pid" 5
      ripen_die "redis ($name) did not start"
    fi
    sleep 0.1
  done
  pid=$(ripen_read_pidfile "$dir/redis.pid")
  RIPEN_STARTED+=("$name/redis")
  ripen_log "redis ($name): up on 127.0.0.1:$port (pid ${pid:-?}) in $(ripen_elapsed "$start")s; data and log in ${dir#"$ripen_root"/}"
}

# Loads the RabbitMQ settings of NAME (written by start_rabbitmq) into
# RIPEN_RMQ_NODE and RIPEN_RMQ_ENV (VAR=value words for env(1)).
# Returns false if start_rabbitmq never ran for NAME.
ripen_rabbitmq_env() {
  local name=$1
  local dir="$RIPEN_RUN_DIR/$name/rabbitmq"
  RIPEN_RMQ_NODE="ripen-$name@localhost"
  [[ -f $dir/ports ]] || return 1
  local port="" dist="" epmd=""
  read -r port dist epmd <"$dir/ports" || true
  [[ -n $port && -n $dist && -n $epmd ]] || return 1
  RIPEN_RMQ_ENV=(
    "HOME=$dir/home"
    "LC_ALL=C.UTF-8"
    # An empty env file, so /etc/rabbitmq/rabbitmq-env.conf is not read.
    "RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf"
    "RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf"
    "RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins"
    "RABBITMQ_MNESIA_BASE=$dir/mnesia"
    "RABBITMQ_LOG_BASE=$dir/log"
    "RABBITMQ_PID_FILE=$dir/rabbitmq.pid"
    "RABBITMQ_NODENAME=$RIPEN_RMQ_NODE"
    "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1"
    "RABBITMQ_NODE_PORT=$port"
    "RABBITMQ_DIST_PORT=$dist"
    # Scheduler busy-waiting off: the broker shares its cores with Redis and
    # ripen's own processes here, and Erlang schedulers that spin while idle
    # take CPU from them (RabbitMQ's advice for shared hosts).
    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none"
    # A private epmd per server set: nothing shared is left behind on stop.
    "ERL_EPMD_PORT=$epmd"
    "ERL_EPMD_ADDRESS=127.0.0.1"
    "ERL_CRASH_DUMP=$dir/log/erl_crash.dump"
  )
}

# ripen_rabbitmqctl NAME ARGS...: rabbitmqctl against NAME's node, with the
# node's HOME (Erlang cookie) and epmd.
ripen_rabbitmqctl() {
  local name=$1
  shift
  ripen_rabbitmq_env "$name" || ripen_die "rabbitmq ($name) was never started by these scripts"
  env "${RIPEN_RMQ_ENV[@]}" "$RIPEN_RABBITMQ_BIN/rabbitmqctl" -n "$RIPEN_RMQ_NODE" "$@"
}

ripen_rabbitmq_dump_logs() {
  local dir=$1
  local f="$dir/log/startup.log" cause
  if [[ -s $f ]]; then
    ripen_log "last lines of ${f#"$ripen_root"/}:"
    tail -n 40 "$f" >&2 || true
    cause=$(grep -E '^ERROR|BOOT FAILED|reason:' "$f" | sort -u | head -n 5) || true
    if [[ -n $cause ]]; then
      ripen_log "likely cause:"
      printf '%s\n' "$cause" >&2
    fi
  fi
  ripen_log "full node log: ${dir#"$ripen_root"/}/log/$RIPEN_RMQ_NODE.log"
}

# Kills what start_rabbitmq left for NAME (beam, wrapper shell, epmd), by PID
# files only.
ripen_rabbitmq_kill_all() {
  local dir=$1 pid
  pid=$(ripen_read_pidfile "$dir/rabbitmq.pid")
  if ripen_pid_is "$pid" beam; then ripen_kill_pid "$pid" 20 || true; fi
  pid=$(ripen_read_pidfile "$dir/wrapper.pid")
  if ripen_pid_is "$pid" rabbitmq-server; then ripen_kill_pid "$pid" 5 || true; fi
  pid=$(ripen_read_pidfile "$dir/epmd.pid")
  if ripen_pid_is "$pid" epmd; then ripen_kill_pid "$pid" 5 || true; fi
  rm -f "$dir/rabbitmq.pid" "$dir/wrapper.pid" "$dir/epmd.pid"
}

# start_rabbitmq NAME PORT DISTPORT [EPMDPORT]  (EPMDPORT defaults to DISTPORT+1)
start_rabbitmq() {
  local name=$1 port=$2 dist=$3 epmd=${4:-$(($3 + 1))}
  local dir="$RIPEN_RUN_DIR/$name/rabbitmq"
  local bin="$RIPEN_RABBITMQ_BIN"

  local pid
  pid=$(ripen_read_pidfile "$dir/rabbitmq.pid")
  if ! ripen_pid_is "$pid" beam && ripen_port_open "$port"; then
    ripen_log "rabbitmq ($name): a broker not started by these scripts accepts connections on 127.0.0.1:$port; reusing it (it will not be stopped)"
    return 0
  fi
  [[ -x $bin/rabbitmq-server ]] || ripen_die "$bin/rabbitmq-server not found (run ensure_packages)"

  mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
  chmod 700 "$dir/home"
  printf '%s %s %s\n' "$port" "$dist" "$epmd" >"$dir/ports"
  : >"$dir/rabbitmq-env.conf"
  printf '[].\n' >"$dir/enabled_plugins"
  cat >"$dir/rabbitmq.conf" <<'EOF'
# Written by scripts/lib/common.sh. Local development/test broker.
disk_free_limit.absolute = 50MB
# Classic queues version 2 (the default from RabbitMQ 3.13 on): persistent
# messages cost the broker less CPU and wait less behind its disk writes.
classic_queue.default_version = 2
log.console = false
log.file.level = info
EOF
  ripen_rabbitmq_env "$name"
  local ctl=(env "${RIPEN_RMQ_ENV[@]}" "$bin/rabbitmqctl" -n "$RIPEN_RMQ_NODE")

  local start started=0
  start=$(ripen_now_ms)
  if ripen_pid_is "$pid" beam; then
    ripen_log "rabbitmq ($name): node $RIPEN_RMQ_NODE already running (pid $pid), reusing it"
  else
    rm -f "$dir/rabbitmq.pid"
    local epmd_pid
    epmd_pid=$(ripen_read_pidfile "$dir/epmd.pid")
    if ! ripen_pid_is "$epmd_pid" epmd; then
      if ripen_port_open "$epmd"; then
        ripen_log "rabbitmq ($name): epmd port $epmd already in use; assuming it is an epmd and using it"
        rm -f "$dir/epmd.pid"
      else
        # setsid: own session, so a ^C in the calling terminal does not reach it.
        setsid epmd -port "$epmd" -address 127.0.0.1 >"$dir/log/epmd.log" 2>&1 </dev/null &
        printf '%s\n' "$!" >"$dir/epmd.pid"
      fi
    fi
    ripen_log "rabbitmq ($name): starting node $RIPEN_RMQ_NODE on 127.0.0.1:$port (dist $dist, epmd $epmd)"
    (
      cd "$dir" || exit 1
      exec env "${RIPEN_RMQ_ENV[@]}" setsid "$bin/rabbitmq-server" \
        >"$dir/log/startup.log" 2>&1 </dev/null
    ) &
    local wrapper=$!
    printf '%s\n' "$wrapper" >"$dir/wrapper.pid"
    started=1

    # The node writes its PID file early in boot; fail fast if it dies first.
    local deadline=$((start + 60000))
    until [[ -s $dir/rabbitmq.pid ]]; do
      if ! ripen_pid_alive "$wrapper" || (($(ripen_now_ms) >= deadline)); then
        ripen_log "rabbitmq ($name): the node exited or wrote no PID file within 60s"
        ripen_rabbitmq_dump_logs "$dir"
        ripen_rabbitmq_kill_all "$dir"
        ripen_die "rabbitmq ($name) did not start"
      fi
      sleep 0.2
    done
  fi

  if ! timeout 90 "${ctl[@]}" wait "$dir/rabbitmq.pid" --timeout 60 >"$dir/log/wait.log" 2>&1; then
    cat "$dir/log/wait.log" >&2 || true
    ripen_rabbitmq_dump_logs "$dir"
    ripen_rabbitmq_kill_all "$dir"
    ripen_die "rabbitmq ($name) did not come up"
  fi
  local deadline=$(($(ripen_now_ms) + 20000))
  until ripen_port_open "$port"; do
    if (($(ripen_now_ms) >= deadline)); then
      ripen_rabbitmq_dump_logs "$dir"
      ripen_rabbitmq_kill_all "$dir"
      ripen_die "rabbitmq ($name): node is up but 127.0.0.1:$port accepts no connections"
    fi
    sleep 0.2
  done
  pid=$(ripen_read_pidfile "$dir/rabbitmq.pid")
  if ((started)); then RIPEN_STARTED+=("$name/rabbitmq"); fi
  ripen_log "rabbitmq ($name): up on 127.0.0.1:$port (node $RIPEN_RMQ_NODE, pid ${pid:-?}) in $(ripen_elapsed "$start")s; data and logs in ${dir#"$ripen_root"/}"
}

stop_redis() {
  local name=$1
  local dir="$RIPEN_RUN_DIR/$name/redis"
  local pid
  pid=$(ripen_read_pidfile "$dir/redis.pid")
  if ! ripen_pid_is "$pid" redis-server; then
    rm -f "$dir/redis.pid"
    ripen_log "redis ($name): not running"
    return 0
  fi
  ripen_kill_pid "$pid" 15 || ripen_die "redis ($name): pid $pid would not exit"
  rm -f "$dir/redis.pid"
  ripen_log "redis ($name): stopped (pid $pid)"
}

stop_rabbitmq() {
  local name=$1
  local dir="$RIPEN_RUN_DIR/$name/rabbitmq"
  local pid wrapper epmd_pid
  pid=$(ripen_read_pidfile "$dir/rabbitmq.pid")
  wrapper=$(ripen_read_pidfile "$dir/wrapper.pid")
  epmd_pid=$(ripen_read_pidfile "$dir/epmd.pid")
  if ! ripen_pid_is "$pid" beam && ! ripen_pid_is "$wrapper" rabbitmq-server &&
    ! ripen_pid_is "$epmd_pid" epmd; then
    rm -f "$dir/rabbitmq.pid" "$dir/wrapper.pid" "$dir/epmd.pid"
    ripen_log "rabbitmq ($name): not running"
    return 0
  fi
  if ripen_pid_is "$pid" beam && ripen_rabbitmq_env "$name"; then
    env "${RIPEN_RMQ_ENV[@]}" timeout 90 "$RIPEN_RABBITMQ_BIN/rabbitmqctl" -n "$RIPEN_RMQ_NODE" \
      stop "$dir/rabbitmq.pid" >"$dir/log/stop.log" 2>&1 ||
      ripen_log "rabbitmq ($name): rabbitmqctl stop failed (see ${dir#"$ripen_root"/}/log/stop.log); killing pid $pid"
  fi
  ripen_rabbitmq_kill_all "$dir"
  ripen_log "rabbitmq ($name): stopped${pid:+ (pid $pid)}"
}

# stop_servers NAME [redis|rabbitmq ...]: stops what start_* started for NAME
# (both by default). Never fails because nothing is running.
stop_servers() {
  local name=$1
  shift
  local what=("$@")
  ((${#what[@]} > 0)) || what=(redis rabbitmq)
  local w
  for w in "${what[@]}"; do
    case $w in
      redis) stop_redis "$name" ;;
      rabbitmq) stop_rabbitmq "$name" ;;
      *) ripen_die "stop_servers: unknown server '$w'" ;;
    esac
  done
}

# Stops exactly the servers this shell started (see RIPEN_STARTED), leaving
# reused ones alone.
stop_started_servers() {
  local entry
  for entry in "${RIPEN_STARTED[@]}"; do
    stop_servers "${entry%%/*}" "${entry#*/}"
  done
  RIPEN_STARTED=()
}

# Prints whether NAME's servers run; false if either is down.
status_servers() {
  local name=$1 rc=0 pid
  ripen_ports "$name"
  pid=$(ripen_read_pidfile "$RIPEN_RUN_DIR/$name/redis/redis.pid")
  if ripen_redis_ping "$RIPEN_REDIS_PORT"; then
    if ripen_pid_is "$pid" redis-server; then
      echo "redis ($name): running on 127.0.0.1:$RIPEN_REDIS_PORT (pid $pid)"
    else
      echo "redis ($name): a Redis not started by these scripts answers on 127.0.0.1:$RIPEN_REDIS_PORT"
    fi
  else
    echo "redis ($name): not running (port $RIPEN_REDIS_PORT)"
    rc=1
  fi
  pid=$(ripen_read_pidfile "$RIPEN_RUN_DIR/$name/rabbitmq/rabbitmq.pid")
  if ripen_pid_is "$pid" beam; then
    if ripen_port_open "$RIPEN_AMQP_PORT"; then
      echo "rabbitmq ($name): running on 127.0.0.1:$RIPEN_AMQP_PORT (node ripen-$name@localhost, pid $pid)"
    else
      echo "rabbitmq ($name): node process $pid is alive but 127.0.0.1:$RIPEN_AMQP_PORT is closed (booting?)"
      rc=1
    fi
  elif ripen_port_open "$RIPEN_AMQP_PORT"; then
    echo "rabbitmq ($name): a broker not started by these scripts listens on 127.0.0.1:$RIPEN_AMQP_PORT"
  else
    echo "rabbitmq ($name): not running (port $RIPEN_AMQP_PORT)"
    rc=1
  fi
  return "$rc"
}

# export_urls REDIS_PORT AMQP_PORT: exports RIPEN_REDIS_URL / RIPEN_AMQP_URL
# for the local servers, unless the user already set them.
export_urls() {
  : "${RIPEN_REDIS_URL:=redis://127.0.0.1:$1/0}"
  : "${RIPEN_AMQP_URL:=amqp://guest:guest@127.0.0.1:$2/%2f}"
  export RIPEN_REDIS_URL RIPEN_AMQP_URL
}

# start_servers NAME: starts NAME's Redis and RabbitMQ, except for a server
# whose URL the user set in the environment (RIPEN_REDIS_URL / RIPEN_AMQP_URL),
# then exports both URLs.
start_servers() {
  local name=$1
  ripen_ports "$name"
  if [[ -n ${RIPEN_REDIS_URL:-} ]]; then
    ripen_log "RIPEN_REDIS_URL is set ($(ripen_redact_url "$RIPEN_REDIS_URL")); not starting a local Redis"
  else
    start_redis "$name" "$RIPEN_REDIS_PORT"
  fi
  if [[ -n ${RIPEN_AMQP_URL:-} ]]; then
    ripen_log "RIPEN_AMQP_URL is set ($(ripen_redact_url "$RIPEN_AMQP_URL")); not starting a local RabbitMQ"
  else
    start_rabbitmq "$name" "$RIPEN_AMQP_PORT" "$RIPEN_DIST_PORT"
  fi
  export_urls "$RIPEN_REDIS_PORT" "$RIPEN_AMQP_PORT"
}
