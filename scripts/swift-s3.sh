#!/usr/bin/env bash
# An OpenStack Swift all-in-one on loopback with the S3 API (s3api + tempauth), for the S3 blob store's tests,
# the benchmark and trying it out. Debian's packages: swift swift-proxy swift-account swift-container
# swift-object memcached.
#
#   scripts/swift-s3.sh start DIR   starts it with its state in DIR (made if missing) and prints, as shell
#                                   variables, what a client needs: S3_ENDPOINT, S3_REGION, AWS_ACCESS_KEY_ID,
#                                   AWS_SECRET_ACCESS_KEY (also written to DIR/env)
#   scripts/swift-s3.sh stop DIR    stops it (the data stays in DIR)
#
# One device, one replica, no background daemons (replicators, auditors, updaters): a server for tests, not
# for production. It runs as the calling user.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

stop() {
  for pidfile in "$dir"/run/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    # The servers fork workers: stop the whole process group each started.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

if [ "$action" = stop ]; then stop; exit 0; fi
[ "$action" = start ] || usage

for tool in swift-ring-builder swift-proxy-server swift-account-server swift-container-server swift-object-server memcached; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "swift-s3: $tool is missing; install Debian's swift swift-proxy swift-account swift-container swift-object memcached" >&2
    exit 1
  }
done
stop

# Five free loopback ports: proxy, account, container, object, memcached.
read -r proxy account container object cache < <(python3 - <<'PY'
import socket
sockets = [socket.socket() for _ in range(5)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in sockets])
PY
)

mkdir -p "$dir/srv/d1" "$dir/run" "$dir/log"
user=$(id -un)
cat > "$dir/swift.conf" <<CONF
[swift-hash]
swift_hash_path_suffix = repoman-$(basename "$dir")
swift_hash_path_prefix = repoman
[storage-policy:0]
name = Policy-0
default = yes
CONF

build_ring() { # name port
  local name=$1 port=$2
  rm -f "$dir/$name.builder" "$dir/$name.ring.gz"
  swift-ring-builder "$dir/$name.builder" create 2 1 0 >/dev/null
  swift-ring-builder "$dir/$name.builder" add "r1z1-127.0.0.1:$port/d1" 1 >/dev/null
  swift-ring-builder "$dir/$name.builder" rebalance >/dev/null 2>&1 || true
}
# The three rings at once (each step is a Python start-up).
build_ring account "$account" & build_ring container "$container" & build_ring object "$object" & wait
for ring in account:$account container:$container object:$object; do
  name=${ring%%:*}
  [ -s "$dir/$name.ring.gz" ] || { echo "swift-s3: could not build the $name ring" >&2; exit 1; }
  cat > "$dir/$name-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${ring#*:}
devices = $dir/srv
mount_check = false
swift_dir = $dir
user = $user
workers = 1
log_level = WARNING
[pipeline:main]
pipeline = $name-server
[app:$name-server]
use = egg:swift#$name
CONF
done

cat > "$dir/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $proxy
swift_dir = $dir
user = $user
workers = 2
log_level = WARNING
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
# Images are larger than 1000 parts of the minimum size: allow as many parts as S3 does.
max_upload_part_num = 10000
[filter:tempauth]
use = egg:swift#tempauth
user_repoman_repoman = repoman-secret .admin
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$cache
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
CONF

launch() { # name command...
  local name=$1
  shift
  setsid "$@" >"$dir/log/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/run/$name.pid"
}
launch memcached memcached -l 127.0.0.1 -p "$cache" -U 0 -m 64 $([ "$(id -u)" = 0 ] && echo -u root)
for name in account container object proxy; do
  launch "$name" "swift-$name-server" "$dir/$name-server.conf"
done

for _ in $(seq 1 300); do
  # Every server listening (the proxy answers its health check before the others are up).
  if curl -fsS "http://127.0.0.1:$proxy/healthcheck" >/dev/null 2>&1 &&
    (exec 3<>"/dev/tcp/127.0.0.1/$account" && exec 3<>"/dev/tcp/127.0.0.1/$container" &&
      exec 3<>"/dev/tcp/127.0.0.1/$object") 2>/dev/null; then
    cat > "$dir/env" <<ENV
S3_ENDPOINT=http://127.0.0.1:$proxy
S3_REGION=us-east-1
AWS_ACCESS_KEY_ID=repoman:repoman
AWS_SECRET_ACCESS_KEY=repoman-secret
ENV
    cat "$dir/env"
    exit 0
  fi
  for pidfile in "$dir"/run/*.pid; do
    kill -0 "$(cat "$pidfile")" 2>/dev/null || {
      name=$(basename "$pidfile" .pid)
      echo "swift-s3: the $name server stopped at start-up:" >&2
      tail -5 "$dir/log/$name.log" >&2
      stop
      exit 1
    }
  done
  sleep 0.1
done
echo "swift-s3: the servers did not answer within 30 s; logs in $dir/log" >&2
stop
exit 1
