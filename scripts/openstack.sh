#!/usr/bin/env bash
# A Keystone and a Glance on loopback, with SQLite and a filesystem store, for the cloud sync's tests and for
# trying it out. Debian's packages: keystone glance-api python3-openstackclient (and uwsgi-plugin-python3,
# which keystone brings).
#
#   scripts/openstack.sh start DIR   starts them with their state in DIR (made if missing) and prints, as shell
#                                    variables, what a client needs: OS_AUTH_URL, OS_REGION_NAME, OS_USERNAME,
#                                    OS_PASSWORD, OS_PROJECT_NAME, OS_USER_DOMAIN_NAME, OS_PROJECT_DOMAIN_NAME,
#                                    OS_IDENTITY_API_VERSION, GLANCE_URL (also written to DIR/env)
#   scripts/openstack.sh stop DIR    stops them (the state stays in DIR)
#   scripts/openstack.sh start-glance DIR / stop-glance DIR
#                                    starts or stops Glance alone (a cloud that fails and comes back)
#
# Glance's web-download import may fetch from loopback here (`[import_filtering_opts] allowed_hosts`, any port),
# which stock Glance refuses; it trusts the CAs in $OPENSTACK_CA_FILE, if set, beside the system's. Keystone
# runs in uWSGI with one process and one thread (SQLite allows one writer) and closes every connection (its
# HTTP socket mishandles keep-alive). A cloud for tests, not for production. It runs as the calling user.
set -euo pipefail

usage() { echo "usage: $0 start|stop|start-glance|stop-glance DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
# Debian's Python, whatever python3 comes first on PATH (the OpenStack modules live in its dist-packages).
py=/usr/bin/python3

stop_one() { # name
  local pidfile="$dir/run/$1.pid"
  [ -e "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  # uWSGI and Glance fork workers: stop the whole process group each started.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
}
stop() { stop_one glance; stop_one keystone; }

launch() { # name command...
  local name=$1
  shift
  setsid "$@" >"$dir/log/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/run/$name.pid"
}

# waits until URL answers (any HTTP status), or the process of NAME dies
wait_for() { # name url
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "$2" && return 0
    kill -0 "$(cat "$dir/run/$1.pid")" 2>/dev/null || {
      echo "openstack: $1 stopped at start-up:" >&2
      tail -20 "$dir/log/$1.log" >&2
      return 1
    }
    sleep 0.1
  done
  echo "openstack: $1 did not answer within 60 s; its log is $dir/log/$1.log" >&2
  return 1
}

start_glance() {
  # shellcheck disable=SC1091
  . "$dir/ports"
  launch glance env ${OPENSTACK_CA_FILE:+REQUESTS_CA_BUNDLE="$dir/ca-bundle.pem" SSL_CERT_FILE="$dir/ca-bundle.pem"} \
    glance-api --config-file "$dir/glance-api.conf"
  wait_for glance "http://127.0.0.1:$glance/"
}

case $action in
stop) stop; exit 0 ;;
stop-glance) stop_one glance; exit 0 ;;
start-glance) start_glance; exit 0 ;;
start) ;;
*) usage ;;
esac

for tool in keystone-manage glance-api glance-manage uwsgi openstack; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "openstack: $tool is missing; install Debian's keystone glance-api python3-openstackclient" >&2
    exit 1
  }
done
stop
rm -rf "$dir/keystone" "$dir/glance" "$dir/log" "$dir/run"
mkdir -p "$dir/keystone/fernet-keys" "$dir/keystone/credential-keys" "$dir/glance/images" \
  "$dir/glance/staging" "$dir/glance/tasks" "$dir/log" "$dir/run"
chmod 700 "$dir/keystone/fernet-keys" "$dir/keystone/credential-keys"

read -r keystone glance < <($py - <<'PY'
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in sockets])
PY
)
printf 'keystone=%s\nglance=%s\n' "$keystone" "$glance" >"$dir/ports"
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
user=$(id -un)
group=$(id -gn)
auth="http://127.0.0.1:$keystone/v3"

cat >"$dir/keystone.conf" <<CONF
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///$dir/keystone/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = $dir/keystone/fernet-keys
[fernet_receipts]
key_repository = $dir/keystone/fernet-keys
[credential]
key_repository = $dir/keystone/credential-keys
CONF

km() { keystone-manage --config-file "$dir/keystone.conf" "$@" >>"$dir/log/keystone-manage.log" 2>&1; }
km db_sync
# WAL: a request's reading connection must not hold off its writing one ("database is locked").
wal() { $py -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("pragma journal_mode=wal")' "$1"; }
wal "$dir/keystone/keystone.db"
km fernet_setup --keystone-user "$user" --keystone-group "$group"
km credential_setup --keystone-user "$user" --keystone-group "$group"
km bootstrap --bootstrap-password "$password" --bootstrap-admin-url "$auth/" --bootstrap-internal-url "$auth/" \
  --bootstrap-public-url "$auth/" --bootstrap-region-id RegionOne

launch keystone env OS_KEYSTONE_CONFIG_FILES="$dir/keystone.conf" uwsgi --plugin python3 \
  --http-socket "127.0.0.1:$keystone" --add-header 'Connection: close' --wsgi-file /usr/bin/keystone-wsgi-public \
  --master --processes 1 --threads 1 --die-on-term --lazy-apps
wait_for keystone "$auth/"

cat >"$dir/env" <<ENV
OS_AUTH_URL=$auth
OS_REGION_NAME=RegionOne
OS_USERNAME=admin
OS_PASSWORD=$password
OS_PROJECT_NAME=admin
OS_USER_DOMAIN_NAME=Default
OS_PROJECT_DOMAIN_NAME=Default
OS_IDENTITY_API_VERSION=3
GLANCE_URL=http://127.0.0.1:$glance
ENV
set -a
# shellcheck disable=SC1091
. "$dir/env"
set +a
os() { openstack "$@" >>"$dir/log/openstack.log" 2>&1; }
# Glance's own account, and its place in the catalog.
os project create service
os user create --password "$password" glance
os role add --project service --user glance admin
os service create --name glance image
os endpoint create --region RegionOne image public "http://127.0.0.1:$glance"
os endpoint create --region RegionOne image internal "http://127.0.0.1:$glance"

if [ -n "${OPENSTACK_CA_FILE:-}" ]; then
  cat /etc/ssl/certs/ca-certificates.crt "$OPENSTACK_CA_FILE" >"$dir/ca-bundle.pem" 2>/dev/null ||
    cp "$OPENSTACK_CA_FILE" "$dir/ca-bundle.pem"
fi
cat >"$dir/glance-api.conf" <<CONF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $glance
workers = 1
use_stderr = true
enabled_backends = fs:file
enabled_import_methods = [glance-direct,web-download]
[database]
connection = sqlite:///$dir/glance/glance.db
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $dir/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $dir/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $dir/glance/tasks
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:$keystone
auth_url = http://127.0.0.1:$keystone
auth_type = password
interface = public
project_domain_name = Default
user_domain_name = Default
project_name = service
username = glance
password = $password
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
[import_filtering_opts]
# Repoman on loopback, on any port: what stock Glance refuses (docs/clouds.md says what a site sets).
allowed_hosts = [127.0.0.1,localhost]
allowed_ports = []
CONF
glance-manage --config-file "$dir/glance-api.conf" db_sync >"$dir/log/glance-manage.log" 2>&1
wal "$dir/glance/glance.db"
start_glance
cat "$dir/env"
