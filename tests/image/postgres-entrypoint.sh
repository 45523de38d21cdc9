#!/bin/sh
# As the official image does on a first start: a cluster in PGDATA whose superuser is
# POSTGRES_USER with POSTGRES_PASSWORD, a database POSTGRES_DB, other hosts let in by password.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:?}" > "$pwfile"
    initdb --username="${POSTGRES_USER:=postgres}" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    if [ "${POSTGRES_DB:=$POSTGRES_USER}" != postgres ]; then
        echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\"" |
            postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "postgres-entrypoint: made a cluster with database $POSTGRES_DB"
fi
exec "$@"
