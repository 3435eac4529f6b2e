#!/usr/bin/env bash
# Starts the Debian PostgreSQL cluster on loopback and makes a throw-away test database.
# Prints the SQLAlchemy URL for TEST_DATABASE_URL on stdout; prints nothing if it cannot.
set -uo pipefail
command -v pg_lsclusters >/dev/null || exit 0
ver=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1{print $1}')
if [[ -z "$ver" ]]; then
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_createcluster "$ver" main >/dev/null 2>&1 || exit 0
fi
pg_ctlcluster "$ver" main start >/dev/null 2>&1 || true
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 && break
  sleep 0.5
done
pg_isready -q -h 127.0.0.1 || exit 0
as_pg() { if [[ $(id -u) == 0 ]]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
as_pg "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='studio_test'\" | grep -q 1 || psql -qc \"CREATE ROLE studio_test LOGIN SUPERUSER PASSWORD 'studio_test'\"" >/dev/null 2>&1 || exit 0
as_pg "dropdb --if-exists studio_test >/dev/null 2>&1; createdb -O studio_test studio_test" >/dev/null 2>&1 || exit 0
echo "postgresql+psycopg://studio_test:studio_test@127.0.0.1:5432/studio_test"
