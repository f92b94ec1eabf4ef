#!/usr/bin/env bash
# Install (or update) Jaga's central server on Debian bookworm: Mosquitto with the config
# `jaga-provision broker-config` makes, the collector and its unit, Grafana provisioning.
#
#   sudo scripts/install-server.sh --registry ./jaga-provision [--influx-url URL] ...
#   scripts/install-server.sh --root /tmp/srv --registry ./jaga-provision
#
# --registry DIR  a copy of the provisioning folder. Its private keys stay out of the server,
#                 except the collector's (identities/collector-<name>.key), the broker's, the
#                 revocation kick's (identities/collector-kick.key) and the issuing CA's
#                 (ca/issuing/<n>/ca.key, which signs units at enrolment and renewal); the
#                 broker certificate must already exist (broker-config on the laptop makes
#                 it, as the root CA key never comes here).
# --collector NAME        collector identity to use (default: main)
# --port PORT             Mosquitto's TLS port (default 8883)
# --influx-url URL        InfluxDB 1.8+, 2.x or 3 (default http://127.0.0.1:8086)
# --influx-token TOKEN    2.x/3 API token or 1.8 user:password (default none)
# --influx-bucket BUCKET  default jaga/autogen (1.8: database/retention policy)
# --root DIR      install into DIR as if it were /: every file written is under DIR, and what it
#                 would run outside (apt-get, useradd, chown, the venv, systemctl, InfluxDB
#                 checks) is printed as "would run: ..." instead.
#
# InfluxDB is not installed here: Debian's `influxdb` (1.6) lacks the /api/v2/write endpoint the
# collector writes to. Install 1.8+ or 2.x from InfluxData's packages first; the script checks
# that it answers and, on 1.x, creates the database. Safe to run again (after a new unit is
# provisioned, or a revocation): it changes only what differs and reloads Mosquitto for it.
set -euo pipefail

VENV=/opt/jaga/venv
ETC=/etc/jaga
REGISTRY=/etc/jaga/registry
STATE=/var/lib/jaga-collector
MOSQ=/etc/mosquitto/jaga
UNIT=jaga-collector.service
ENROL=jaga-enrol.service # the EST enrolment endpoint (#19)
KICK=jaga-broker-kick    # .service + .timer: revoked sessions cut every 30 s (#19)
UNIT_DIR=/etc/systemd/system
DROPIN=/etc/systemd/system/mosquitto.service.d/jaga.conf
GRAFANA=/etc/grafana/provisioning
GRAFANA_DROPIN=/etc/systemd/system/grafana-server.service.d/jaga.conf
SERVICE_USER=jaga
APT_PACKAGES=(python3 python3-venv mosquitto curl)
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

ROOT=""
SOURCE_REGISTRY=""
COLLECTOR=main
PORT=8883
INFLUX_URL=http://127.0.0.1:8086
INFLUX_TOKEN=""
INFLUX_BUCKET=jaga/autogen
CHANGED=0

usage() {
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

need() { [[ $# -ge 2 ]] || usage 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
    --root) need "$@"; ROOT="$(realpath -m "$2")"; shift 2 ;;
    --registry) need "$@"; SOURCE_REGISTRY="$2"; shift 2 ;;
    --collector) need "$@"; COLLECTOR="$2"; shift 2 ;;
    --port) need "$@"; PORT="$2"; shift 2 ;;
    --influx-url) need "$@"; INFLUX_URL="$2"; shift 2 ;;
    --influx-token) need "$@"; INFLUX_TOKEN="$2"; shift 2 ;;
    --influx-bucket) need "$@"; INFLUX_BUCKET="$2"; shift 2 ;;
    -h | --help) usage 0 ;;
    *)
        echo "install-server: unknown argument $1" >&2
        usage 2
        ;;
    esac
done

SCRIPT_NAME=install-server
# shellcheck source=scripts/lib.sh
source "$SRC/scripts/lib.sh"

# put_tree SRC DEST DIRMODE FILEMODE OWNER: mirror SRC's files into DEST (extra files there stay).
put_tree() {
    local src="$1" dest="$2" rel
    ensure_dir "$dest" "$3"
    while IFS= read -r -d '' rel; do
        rel="${rel#./}"
        if [[ -d "$src/$rel" ]]; then
            ensure_dir "$dest/$rel" "$3"
        else
            put_file "$src/$rel" "$dest/$rel" "$4"
        fi
    done < <(cd "$src" && find . -mindepth 1 -print0 | sort -z)
    run chown -R "$5" "$dest"
}

# --- checks -----------------------------------------------------------------------------------
[[ -n "$SOURCE_REGISTRY" ]] || die "--registry DIR is required (a copy of the provisioning folder)"
[[ -f "$SOURCE_REGISTRY/ca/ca.crt" ]] || die "$SOURCE_REGISTRY has no ca/ca.crt: not a registry"
SOURCE_REGISTRY="$(realpath "$SOURCE_REGISTRY")"
[[ -f "$SOURCE_REGISTRY/identities/collector-$COLLECTOR.key" ]] ||
    die "no identities/collector-$COLLECTOR.key: run jaga-provision identity add collector $COLLECTOR"
[[ -f "$SOURCE_REGISTRY/broker/server.crt" && -f "$SOURCE_REGISTRY/broker/server.key" ]] ||
    die "no broker/server.crt: run jaga-provision broker-config on the provisioning laptop first"
if [[ -z "$ROOT" && "$(id -u)" -ne 0 ]]; then
    die "run as root (sudo), or try it first with --root DIR"
fi
[[ -f "$SRC/pyproject.toml" && -f "$SRC/systemd/$UNIT" ]] || die "$SRC is not a Jaga checkout"
if [[ -n "$ROOT" ]]; then
    say "installing into $ROOT (nothing outside it is changed)"
    PROVISION="$(command -v jaga-provision || true)"
    [[ -n "$PROVISION" ]] || die "--root needs jaga-provision on PATH (the checkout's .venv/bin)"
else
    PROVISION="$VENV/bin/jaga-provision"
fi

# --- packages, user, program --------------------------------------------------------------------
mapfile -t missing < <(missing_packages "${APT_PACKAGES[@]}")
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ -n "$ROOT" ]]; then
        echo "would run: apt-get install -y ${missing[*]}"
    else
        apt-get update -qq
        apt_install "${missing[@]}"
    fi
fi
ensure_user "$SERVICE_USER" "$STATE" "Jaga collector"
# The collector's libraries are the `collector` extra (a unit's install leaves them out).
install_program "$VENV" "$SRC[collector]"

# --- the registry, without the keys that must not be here ----------------------------------------
STAGE="$(p /var/tmp)"
mkdir -p "$STAGE"
STAGE="$(mktemp -d "$STAGE/jaga-install.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/registry"
(
    cd "$SOURCE_REGISTRY"
    find . -type f ! -name '.*' \( ! -name '*.key' -o -path "./identities/collector-$COLLECTOR.key" \
        -o -path ./broker/server.key -o -path ./identities/collector-kick.key \
        -o -path './ca/issuing/*/ca.key' \) -print0 | xargs -0 -r cp --parents -t "$STAGE/registry"
)

# Mosquitto's files, made from the registry by the project's own tool.
"$PROVISION" --dir "$STAGE/registry" broker-config --out "$STAGE/mosquitto" --install-dir "$MOSQ" \
    --port "$PORT" >"$STAGE/broker-config.log" || {
    cat "$STAGE/broker-config.log" >&2
    die "jaga-provision broker-config failed"
}
grep '^warning:' "$STAGE/broker-config.log" || true
# Mosquitto's own copy is enough, unless the enrolment endpoint serves TLS with it (#19).
[[ -d "$STAGE/registry/ca/issuing" ]] || rm -f "$STAGE/registry/broker/server.key"

# The server issues unit certificates itself (enrolment, renewal: #19): a copy that lacks some
# of them is older than the server's record and must not replace it (serials would repeat).
live="$(p "$REGISTRY/ca/issued.toml")"
if [[ -f "$live" ]]; then
    serials() { grep -o '^serial = [0-9]*' "$1" 2>/dev/null | sort -u || true; }
    lacking="$(comm -23 <(serials "$live") <(serials "$STAGE/registry/ca/issued.toml") | wc -l)"
    if ((lacking > 0)); then
        die "the server's registry holds $lacking certificate(s) your copy lacks (enrolments and renewals made here since): copy $REGISTRY back over your provisioning folder first (keep your *.key files), make your change there, and run this again with it"
    fi
fi

before=$CHANGED
ensure_dir "$ETC" 0750 "root:$SERVICE_USER"
# Owned by the service user: the enrolment endpoint writes it (#19); still unreadable to others.
put_tree "$STAGE/registry" "$REGISTRY" 0750 0640 "$SERVICE_USER:$SERVICE_USER"
registry_changed=$((CHANGED - before))

# --- Mosquitto ----------------------------------------------------------------------------------
# It starts as root, reads mosquitto.conf, then drops to user mosquitto before it opens the rest.
before=$CHANGED
ensure_dir "$MOSQ" 0750 "root:mosquitto"
ensure_dir "$(dirname "$DROPIN")" 0755
put_file "$SRC/systemd/mosquitto.service.d/jaga.conf" "$DROPIN" 0644
put_file "$STAGE/mosquitto/mosquitto.conf" "$MOSQ/mosquitto.conf" 0640
put_file "$STAGE/mosquitto/dynsec.json" "$MOSQ/dynsec.json" 0640 # read only at start: restart
mosquitto_restart=$((CHANGED - before))
before=$CHANGED
for file in acl ca.crt crl.pem server.crt server.key; do
    put_file "$STAGE/mosquitto/$file" "$MOSQ/$file" 0640
done
run chown -R "root:mosquitto" "$MOSQ"
mosquitto_reload=$((CHANGED - before))

# --- the collector ------------------------------------------------------------------------------
before=$CHANGED
if [[ ! -f "$(p "$ETC/collector.toml")" ]]; then
    cat >"$STAGE/collector.toml" <<EOF
# Written by scripts/install-server.sh; yours to edit (the script never replaces it).
data_dir = "$STATE"
registry_dir = "$REGISTRY"

[mqtt]
host = "127.0.0.1"
port = $PORT
client_id = "jaga-collector-$COLLECTOR"

[mqtt.tls]
ca = "$REGISTRY/ca/ca.crt"
cert = "$REGISTRY/identities/collector-$COLLECTOR.crt"
key = "$REGISTRY/identities/collector-$COLLECTOR.key"

[influx]
url = "$INFLUX_URL"
token = "$INFLUX_TOKEN"
bucket = "$INFLUX_BUCKET"
EOF
    put_file "$STAGE/collector.toml" "$ETC/collector.toml" 0640
else
    say "kept $ETC/collector.toml (edit it for other InfluxDB or MQTT settings)"
fi
run chown "root:$SERVICE_USER" "$ETC/collector.toml"
ensure_dir "$STATE" 0750 "$SERVICE_USER:$SERVICE_USER"
put_file "$SRC/systemd/$UNIT" "$UNIT_DIR/$UNIT" 0644
collector_changed=$((CHANGED - before + registry_changed))

# --- the certificate lifecycle (#19): enrolment endpoint, revocation kick ------------------------
# The endpoint writes the registry (issued log, units' certificates, spent tokens, the audit
# log the collector reads): put_tree above gave it to the service user.
put_file "$SRC/systemd/$ENROL" "$UNIT_DIR/$ENROL" 0644
# The kick speaks to this server's broker: its port, not the unit file's default 8883.
sed "s/127\.0\.0\.1:8883/127.0.0.1:$PORT/" "$SRC/systemd/$KICK.service" >"$STAGE/$KICK.service"
put_file "$STAGE/$KICK.service" "$UNIT_DIR/$KICK.service" 0644
put_file "$SRC/systemd/$KICK.timer" "$UNIT_DIR/$KICK.timer" 0644
LIFECYCLE=()
[[ ! -d "$(p "$REGISTRY/ca/issuing")" ]] || LIFECYCLE+=("$ENROL")
[[ ! -f "$(p "$REGISTRY/identities/collector-kick.key")" ]] || LIFECYCLE+=("$KICK.timer")

# --- Grafana ------------------------------------------------------------------------------------
# Grafana itself comes from Grafana's own packages; its provisioning folder is filled either way.
before=$CHANGED
if [[ -d "$SRC/broker/grafana/provisioning" ]]; then
    put_tree "$SRC/broker/grafana/provisioning" "$GRAFANA" 0755 0644 "root:root"
    ensure_dir "$(dirname "$GRAFANA_DROPIN")" 0755
    put_file "$SRC/systemd/grafana-server.service.d/jaga.conf" "$GRAFANA_DROPIN" 0644
fi
grafana_changed=$((CHANGED - before))

# --- run ----------------------------------------------------------------------------------------
if [[ -n "$ROOT" ]]; then
    if command -v systemctl >/dev/null; then
        systemctl --root="$ROOT" --quiet enable "$UNIT" "${LIFECYCLE[@]}"
    else
        echo "would run: systemctl enable $UNIT ${LIFECYCLE[*]}"
    fi
    say "$CHANGED changes"
    ((${#LIFECYCLE[@]} == 0)) || echo "would run: systemctl restart ${LIFECYCLE[*]}"
    echo "would run: systemctl daemon-reload; systemctl enable mosquitto; systemctl restart mosquitto"
    echo "would run: curl $INFLUX_URL/ping, create the database on InfluxDB 1.x"
    echo "would run: systemctl restart $UNIT; systemctl is-active mosquitto $UNIT"
    ((grafana_changed == 0)) || echo "would run: systemctl try-restart grafana-server.service"
    exit 0
fi

say "$CHANGED changes"
systemctl daemon-reload
systemctl --quiet enable mosquitto.service "$UNIT"
if ((mosquitto_restart > 0)) || ! systemctl --quiet is-active mosquitto.service; then
    systemctl restart mosquitto.service
elif ((mosquitto_reload > 0)); then
    systemctl reload mosquitto.service # ACL, CRL and certificates; connections stay
fi

if ! systemctl cat grafana-server.service >/dev/null 2>&1; then
    say "note: Grafana is not installed (Grafana's own packages); it will read $GRAFANA"
elif ((grafana_changed > 0)); then
    systemctl try-restart grafana-server.service
fi

# InfluxDB must answer, and be new enough for the v2 write API.
version="$(curl -sS -m 5 -o /dev/null -w '%header{x-influxdb-version}' "$INFLUX_URL/ping" || true)"
case "$version" in
"") die "no InfluxDB answers at $INFLUX_URL/ping: install InfluxDB 1.8+ or 2.x and run this again" ;;
1.[0-7].* | 1.[0-7]) die "InfluxDB $version at $INFLUX_URL is too old: the collector needs 1.8+" ;;
1.*)
    db="${INFLUX_BUCKET%%/*}"
    auth=()
    [[ -z "$INFLUX_TOKEN" ]] || auth=(-u "$INFLUX_TOKEN")
    curl -sS -m 10 -f "${auth[@]}" -XPOST "$INFLUX_URL/query" \
        --data-urlencode "q=CREATE DATABASE \"$db\"" >/dev/null
    say "InfluxDB $version: database $db ready"
    ;;
*) say "InfluxDB $version: make sure bucket $INFLUX_BUCKET exists (influx bucket create)" ;;
esac

if ((collector_changed > 0)) || ! systemctl --quiet is-active "$UNIT"; then
    # Type=notify: this returns once the collector has subscribed (READY=1), or fails.
    systemctl restart "$UNIT"
fi
if ((${#LIFECYCLE[@]} > 0)); then
    systemctl --quiet enable "${LIFECYCLE[@]}"
    systemctl restart "${LIFECYCLE[@]}" # the endpoint reads the issuing CA at start
else
    say "note: no issuing CA (jaga-provision issuing-ca create) or no collector-kick identity in the registry: $ENROL / $KICK.timer not enabled"
fi
systemctl --quiet is-active mosquitto.service "$UNIT"
systemctl status --no-pager --lines=0 "$UNIT" | sed -n '1,4p'
say "running: mosquitto on port $PORT, $UNIT (journalctl -u $UNIT -f)"
