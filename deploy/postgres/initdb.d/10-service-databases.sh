#!/usr/bin/env bash
# One database and one login role per service (okr_goal, okr_metrics, okr_alignment), each
# owning its database so the service can create its schema and tables at start-up, and none
# able to connect to another's. The postgres image runs this once, on an empty data volume;
# the passwords come from the container's environment (docker-compose passes them from .env).
set -euo pipefail

create_service_database() {
    local name=$1 password=$2
    # psql variables, quoted by psql itself (:"identifier", :'literal'): a password with
    # quotes in it cannot break the statements.
    psql --variable=ON_ERROR_STOP=1 --no-psqlrc --username="${POSTGRES_USER:-postgres}" --dbname=postgres \
        --set=name="$name" --set=password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
}

create_service_database okr_goal "${GOAL_DB_PASSWORD:?GOAL_DB_PASSWORD is not set}"
create_service_database okr_metrics "${METRICS_DB_PASSWORD:?METRICS_DB_PASSWORD is not set}"
create_service_database okr_alignment "${ALIGNMENT_DB_PASSWORD:?ALIGNMENT_DB_PASSWORD is not set}"
