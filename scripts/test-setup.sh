#!/usr/bin/env bash
# The one step before the tests: `npm test`, `npm run test:faults` and `npm run bench` run their command through
# it. It checks every system tool and service the suites use, installs what is missing (as root, with apt-get),
# starts a PostgreSQL of its own when none answers at the test URL, then runs the command given, and stops and
# removes that PostgreSQL afterwards (also when the command fails or is interrupted).
#
#   scripts/test-setup.sh [COMMAND [ARG...]]
#
# Where it cannot install (not root, or no apt-get), it stops before anything runs and prints the one command
# that would fix it. It prints what it installed and what it started; when everything is there it says nothing
# and takes about a second.
#
# PostgreSQL: the tests use REPOMAN_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test). If nothing
# answers there, a throwaway cluster is made with the system's PostgreSQL binaries (Debian's postgresql,
# installed if missing) in a temporary directory, as an unprivileged user (PostgreSQL refuses root), on a free
# loopback port, with trust authentication and a `test` database. The command then sees
#   REPOMAN_TEST_PG_URL  that cluster's URL
#   REPOMAN_TEST_PG_CTL  a program taking `stop` or `start`, which stops or starts it (the PostgreSQL fault
#                        test stops and starts the database with it; without it, that test uses pg_ctlcluster)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "test setup: $*" >&2; }
stop_here() {
  say "$1"
  say "fix it with: $2"
  exit 1
}

# Debian packages of missing tools, in the order found.
missing=()
# need PACKAGE PROBE...: the package is missing unless one probe is found (a command on PATH or in /usr/sbin,
# or an absolute path that exists; a path may be a glob).
need() {
  local package=$1 probe
  shift
  for probe in "$@"; do
    if [[ $probe == /* ]]; then
      compgen -G "$probe" >/dev/null && return 0
    else
      command -v "$probe" >/dev/null 2>&1 && return 0
      [ -x "/usr/sbin/$probe" ] || [ -x "/sbin/$probe" ] && return 0
    fi
  done
  [[ " ${missing[*]} " == *" $package "* ]] || missing+=("$package")
}

# Logins with real grid proxies (grid-proxy-init), made by Globus' own tool.
need globus-proxy-utils grid-proxy-init
# The byte tests upload and download with curl and wget; qemu-img reads images over HTTPS with its curl driver.
need curl curl
need wget wget
need qemu-utils qemu-img
need qemu-block-extra '/usr/lib/*/qemu/block-curl.so'
# The format inspector's and conversions' tests wrap images with the real compressors.
need xz-utils xz
need bzip2 bzip2
need zstd zstd
# The client's tests run it in a pseudo-terminal (script); save-image and the PostgreSQL cluster act as other
# users (setpriv, runuser).
need bsdutils script
need util-linux setpriv
need util-linux runuser
# The benchmark's smoke test runs nginx beside Repoman and draws its charts with rsvg-convert.
need nginx-light nginx
need librsvg2-bin rsvg-convert
# save-image: rsync copies trees, e2fsprogs writes and checks filesystems, attr and acl set what its test
# checks is kept, fakeroot is its method without root, debootstrap makes real trees, GRUB for BIOS is embedded.
need rsync rsync
need e2fsprogs mkfs.ext4
need e2fsprogs debugfs
need attr setfattr
need acl setfacl
need fakeroot fakeroot
need debootstrap debootstrap
need grub-pc-bin /usr/lib/grub/i386-pc/boot.img
need grub-common grub-mkimage
# The S3 store's tests run against OpenStack Swift with its S3 API (scripts/swift-s3.sh).
need swift swift-ring-builder
need swift-proxy swift-proxy-server
need swift-account swift-account-server
need swift-container swift-container-server
need swift-object swift-object-server
need memcached memcached
# The cloud sync's tests against a real Keystone and Glance on loopback (scripts/openstack.sh), set up with
# the openstack command line.
need keystone keystone-manage
need glance-api glance-api
need python3-openstackclient openstack
need python3 python3
# Several servers behind a real HAProxy.
need haproxy haproxy
# The web interface's tests drive Debian's Chromium, signed in through an NSS database (certutil, pk12util)
# with PKCS#12 files from openssl; the TLS tests check against openssl too.
need chromium /usr/bin/chromium
need libnss3-tools certutil
need libnss3-tools pk12util
need openssl openssl
# The grid's HTTP tools against the server (grid-tools.test.ts): gfal2's command line and Python binding
# with its HTTP plugin, davix's command line, and a davix vector read compiled against davix-dev with g++.
need gfal2-util-scripts gfal-copy
need gfal2-plugin-http '/usr/lib/*/gfal2-plugins/libgfal_plugin_http.so'
need python3-gfal2 '/usr/lib/python3/dist-packages/gfal2.*.so'
need davix davix-get
need davix-dev /usr/include/davix/davix.hpp
need g++ g++

PG_URL=${REPOMAN_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}

# Prints nothing and succeeds when PostgreSQL answers at $1; else prints why not.
pg_answers() {
  node - "$1" <<'JS'
const { createRequire } = require('node:module');
const fail = (error) => {
  console.log((error.message || error.code || String(error)).split('\n')[0]);
  process.exitCode = 1;
};
try {
  const pg = createRequire(`${process.cwd()}/package.json`)('pg');
  const client = new pg.Client({ connectionString: process.argv[2], connectionTimeoutMillis: 3000 });
  client
    .connect()
    .then(() => client.query('select 1'))
    .then(
      () => client.end(),
      (error) => {
        fail(error);
        return client.end().catch(() => {});
      },
    );
} catch (error) {
  fail(error); // no node_modules yet: npm install first
}
JS
}

pg_bin() { compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -1 | xargs -r dirname; }

pg_reason=''
if ! pg_reason=$(pg_answers "$PG_URL" 2>&1); then
  [ -n "$(pg_bin)" ] || missing+=(postgresql)
else
  pg_reason=''
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    stop_here "missing the Debian packages ${missing[*]}" "sudo apt-get install -y ${missing[*]}"
  fi
  command -v apt-get >/dev/null 2>&1 ||
    stop_here "missing ${missing[*]} (Debian's package names) and there is no apt-get" \
      "install the equivalents of: ${missing[*]}"
  say "installing ${missing[*]} (apt-get update, then apt-get install)"
  log=$(mktemp)
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
    tail -20 "$log" >&2
    rm -f "$log"
    stop_here "apt-get could not install ${missing[*]}" "apt-get update && apt-get install -y ${missing[*]}"
  fi
  rm -f "$log"
  say "installed ${missing[*]}"
fi

# The browser tests put a policy file of their own in Chromium's managed policy directory.
POLICY_DIR=/etc/chromium/policies/managed
if [ "$(id -u)" -eq 0 ]; then
  [ -d "$POLICY_DIR" ] || { mkdir -p "$POLICY_DIR" && say "created $POLICY_DIR (Chromium's policies, for the browser tests)"; }
elif ! [ -w "$POLICY_DIR" ]; then
  stop_here "the browser tests write a Chromium policy in $POLICY_DIR and the save-image tests need root" \
    "sudo npm test (or npm run test:unit: the tests that need nothing but Node)"
fi

pg_dir=''
cleanup() {
  if [ -n "$pg_dir" ]; then
    "$pg_dir/ctl" stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
    say "stopped and removed the throwaway PostgreSQL"
    pg_dir=''
  fi
}

if [ -n "$pg_reason" ]; then
  bin=$(pg_bin)
  [ -n "$bin" ] || stop_here "PostgreSQL's binaries are missing" "apt-get install -y postgresql"
  pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/repoman-pg-XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  as=()
  if [ "$(id -u)" -eq 0 ]; then
    pg_user=postgres
    id -u postgres >/dev/null 2>&1 || pg_user=nobody
    chown "$pg_user" "$pg_dir"
    as=(runuser -u "$pg_user" --)
  fi
  port=$(node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
  # PostgreSQL's user may not enter the clone (under /root): everything runs from the cluster's directory.
  cd "$pg_dir"
  "${as[@]}" "$bin/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 --no-sync >"$pg_dir/initdb.log" 2>&1 ||
    { cat "$pg_dir/initdb.log" >&2; stop_here "initdb failed" "see the lines above"; }
  # What the PostgreSQL fault test stops and starts; `start` returns once it accepts connections.
  cat >"$pg_dir/ctl" <<CTL
#!/bin/sh
# stop or start the throwaway PostgreSQL of scripts/test-setup.sh
cd "$pg_dir" || exit 1
case "\$1" in
  start) exec ${as[*]} "$bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w -t 60 \\
           -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start ;;
  stop) exec ${as[*]} "$bin/pg_ctl" -D "$pg_dir/data" -w -m fast stop ;;
  *) echo "usage: \$0 start|stop" >&2; exit 2 ;;
esac
CTL
  chmod 755 "$pg_dir/ctl"
  "$pg_dir/ctl" start >/dev/null || { cat "$pg_dir/log" >&2; stop_here "PostgreSQL did not start" "see its log above"; }
  "${as[@]}" "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc 'CREATE DATABASE test' >/dev/null
  export REPOMAN_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/test"
  export REPOMAN_TEST_PG_CTL="$pg_dir/ctl"
  cd "$OLDPWD"
  say "nothing answers at $PG_URL ($pg_reason): started a throwaway PostgreSQL at $REPOMAN_TEST_PG_URL (removed after the run)"
fi

[ $# -gt 0 ] || exit 0
if [ -z "$pg_dir" ]; then exec "$@"; fi
status=0
"$@" || status=$?
exit "$status"
