#!/usr/bin/env bash
# Install (or update) a Jaga unit on Raspberry Pi OS bookworm from this checkout and the unit's
# bundle (`jaga-provision bundle <site> <device>` on the provisioning laptop).
#
#   sudo scripts/install-agent.sh jaga-<site>-<device>.tar.gz
#   scripts/install-agent.sh --root /tmp/pi jaga-<site>-<device>.tar.gz
#
# What it does, each step skipped when already done (safe to run again, e.g. with a new bundle
# once the certificate is signed, or after updating the checkout):
#   apt packages (python3-venv, python3-lgpio, python3-picamera2), system user `jaga` in the
#   gpio and video groups, /opt/jaga/venv (--system-site-packages, for lgpio and picamera2 from
#   apt) with this project in it, the bundle in /etc/jaga (root:jaga, 0750; device.key 0640),
#   /var/lib/jaga, the systemd unit; then `systemctl enable`, `jaga-agent selftest` and start.
#   Without a key, a bundle with a one-time token (enrol.token, from `jaga-provision device add
#   --bundle` or `bundle`) enrols the unit in the same run: `jaga-agent enroll --token-file`
#   makes the key here and the site's enrolment endpoint certifies it. A bundle without a token
#   (`bundle --no-token`) runs `jaga-agent enroll` and stops there: sign the .csr, make a new
#   bundle and run this again.
#
# --root DIR installs into DIR as if it were /: every file it writes is under DIR, and what it
# would run outside (apt-get, useradd, chown, the venv, systemctl start, selftest) is printed as
# "would run: ..." instead. `systemctl --root=DIR enable` still runs: it only makes a symlink.
set -euo pipefail

VENV=/opt/jaga/venv
ETC=/etc/jaga
STATE=/var/lib/jaga
UNIT=jaga-agent.service
RENEW=jaga-agent-renew # .service + .timer: the certificate renews itself (#19)
UNIT_DIR=/etc/systemd/system
SERVICE_USER=jaga
APT_PACKAGES=(python3 python3-venv python3-lgpio)
APT_CAMERA=(python3-picamera2)
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

ROOT=""
BUNDLE=""
CHANGED=0

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --root)
        [[ $# -ge 2 ]] || usage 2
        ROOT="$(realpath -m "$2")"
        shift 2
        ;;
    --root=*)
        ROOT="$(realpath -m "${1#--root=}")"
        shift
        ;;
    -h | --help) usage 0 ;;
    -*)
        echo "install-agent: unknown option $1" >&2
        usage 2
        ;;
    *)
        [[ -z "$BUNDLE" ]] || usage 2
        BUNDLE="$1"
        shift
        ;;
    esac
done

SCRIPT_NAME=install-agent
# shellcheck source=scripts/lib.sh
source "$SRC/scripts/lib.sh"

# put_member NAME DEST MODE: a file from the bundle (only names we know; never a path from it).
put_member() {
    local tmp
    tmp="$(mktemp "$(p "$ETC")/.bundle.XXXXXX")"
    tar -xzOf "$BUNDLE" "$1" >"$tmp"
    put_file "$tmp" "$2" "$3"
    rm -f "$tmp"
}

MEMBERS=""
has_member() { grep -qx -- "$1" <<<"$MEMBERS"; }

# --- checks -----------------------------------------------------------------------------------
[[ -n "$BUNDLE" ]] || usage 2
[[ -f "$BUNDLE" ]] || die "bundle $BUNDLE not found (make it with: jaga-provision bundle <site> <device>)"
BUNDLE="$(realpath "$BUNDLE")"
MEMBERS="$(tar -tzf "$BUNDLE" 2>/dev/null)" || die "$BUNDLE is not a .tar.gz bundle"
for member in agent.toml ca.crt; do
    has_member "$member" || die "$BUNDLE has no $member: make it again with jaga-provision bundle"
done
if [[ -z "$ROOT" && "$(id -u)" -ne 0 ]]; then
    die "run as root (sudo), or try it first with --root DIR"
fi
[[ -f "$SRC/pyproject.toml" && -f "$SRC/systemd/$UNIT" ]] || die "$SRC is not a Jaga checkout"

# The unit's StateDirectory= is /var/lib/jaga and everything else is read-only for the service,
# so the outbox must be there.
data_dir="$(tar -xzOf "$BUNDLE" agent.toml |
    python3 -c 'import sys, tomllib; print(tomllib.load(sys.stdin.buffer).get("data_dir", ""))')"
[[ "${data_dir%/}" == "$STATE" ]] ||
    die "agent.toml has data_dir = \"$data_dir\"; the systemd unit keeps the outbox in $STATE"

[[ -z "$ROOT" ]] || say "installing into $ROOT (nothing outside it is changed)"

# --- packages -----------------------------------------------------------------------------------
mapfile -t missing < <(missing_packages "${APT_PACKAGES[@]}" "${APT_CAMERA[@]}")
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ -n "$ROOT" ]]; then
        echo "would run: apt-get install -y --no-install-recommends ${missing[*]}"
    else
        apt-get update -qq
        wanted=()
        for pkg in "${missing[@]}"; do
            if package_available "$pkg"; then
                wanted+=("$pkg")
            else
                say "warning: no package $pkg here (not Raspberry Pi OS?); skipping it"
            fi
        done
        [[ ${#wanted[@]} -eq 0 ]] || apt_install --no-install-recommends "${wanted[@]}"
    fi
fi
if [[ -z "$ROOT" && ! -x /lib/systemd/systemd-timesyncd && ! -x /usr/lib/systemd/systemd-timesyncd ]]; then
    say "warning: systemd-timesyncd is not installed; under the unit, events then say clock_synced=false"
fi

# --- user ---------------------------------------------------------------------------------------
# Raspberry Pi OS has both groups (udev gives them /dev/gpiochip* and the camera devices).
for group in gpio video; do
    if [[ -n "$ROOT" ]]; then
        echo "would run (if missing): groupadd --system $group"
    elif ! getent group "$group" >/dev/null; then
        groupadd --system "$group"
    fi
done
ensure_user "$SERVICE_USER" "$STATE" "Jaga unit agent"
run usermod --append --groups gpio,video "$SERVICE_USER"

# --- program ------------------------------------------------------------------------------------
# --system-site-packages: lgpio and picamera2 come from apt. No extra: the collector's
# libraries (`jaga[collector]`) are not a unit's.
install_program "$VENV" "$SRC" --system-site-packages

# --- config and identity ------------------------------------------------------------------------
ensure_dir "$ETC" 0750 "root:$SERVICE_USER"
put_member agent.toml "$ETC/agent.toml" 0640
put_member ca.crt "$ETC/ca.crt" 0644
if has_member device.crt; then
    put_member device.crt "$ETC/device.crt" 0644
fi
if has_member device.key; then
    put_member device.key "$ETC/device.key" 0640
fi
if has_member "$UNIT" && ! tar -xzOf "$BUNDLE" "$UNIT" | cmp -s - "$SRC/systemd/$UNIT"; then
    say "note: the bundle's $UNIT differs from this checkout's; installing the checkout's"
fi
ENROLLED=""
if [[ ! -f "$(p "$ETC/device.key")" ]]; then
    # Field enrolment: the key is made here and never leaves the unit.
    if has_member enrol.token; then
        # The bundle's one-time token: the site's enrolment endpoint certifies the key at once.
        # The token goes through a root-only file that is gone once it is spent.
        token_file="$(mktemp "$(p "$ETC")/.enrol-token.XXXXXX")"
        tar -xzOf "$BUNDLE" enrol.token >"$token_file"
        if ! run "$VENV/bin/jaga-agent" enroll --config "$ETC/agent.toml" --token-file "$token_file"; then
            rm -f "$token_file"
            die "enrolment failed (above). A spent or expired token: make a new bundle on the laptop (jaga-provision bundle <site> <device>), update the server's registry copy, and run this again with it. The endpoint unreachable: check the server (jaga-enrol) and the network, and run this again"
        fi
        rm -f "$token_file"
        ENROLLED=token
        if [[ -z "$ROOT" ]]; then
            CHANGED=$((CHANGED + 1))
            say "enrolled: the key was made here, the certificate came from the enrolment endpoint"
        fi
    else
        run "$VENV/bin/jaga-agent" enroll --config "$ETC/agent.toml"
    fi
fi
for file in agent.toml device.key; do
    [[ ! -f "$(p "$ETC/$file")" ]] || {
        [[ "$(stat -c %a "$(p "$ETC/$file")")" == 640 ]] || {
            chmod 0640 "$(p "$ETC/$file")"
            CHANGED=$((CHANGED + 1))
        }
        run chown "root:$SERVICE_USER" "$ETC/$file"
    }
done

# --- state and unit -----------------------------------------------------------------------------
ensure_dir "$STATE" 0750 "$SERVICE_USER:$SERVICE_USER"
before=$CHANGED
put_file "$SRC/systemd/$UNIT" "$UNIT_DIR/$UNIT" 0644
put_file "$SRC/systemd/$RENEW.service" "$UNIT_DIR/$RENEW.service" 0644
put_file "$SRC/systemd/$RENEW.timer" "$UNIT_DIR/$RENEW.timer" 0644
[[ $CHANGED -eq $before ]] || run systemctl daemon-reload

if [[ ! -f "$(p "$ETC/device.crt")" && -z "$ENROLLED" ]]; then
    say "$CHANGED changes; waiting for the certificate, so $UNIT is not enabled yet"
    say "next: copy $ETC/*.csr to the provisioning laptop, run jaga-provision device sign <csr>,"
    say "      make a new bundle (jaga-provision bundle ...) and run this script again with it"
    exit 0
fi

if [[ -n "$ROOT" ]]; then
    if command -v systemctl >/dev/null; then
        systemctl --root="$ROOT" --quiet enable "$UNIT" "$RENEW.timer"
    else
        echo "would run: systemctl enable $UNIT $RENEW.timer"
    fi
    echo "would run: systemctl start $RENEW.timer"
else
    systemctl --quiet enable "$UNIT" "$RENEW.timer"
    systemctl start "$RENEW.timer"
fi

# --- selftest, then run -------------------------------------------------------------------------
# A GPIO line belongs to one process at a time: the selftest reads the pins while the service
# is stopped for those few seconds, as the service's own user (so the file modes are checked).
run systemctl stop "$UNIT"
say "$CHANGED changes; selftest:"
status=0
if [[ -n "$ROOT" ]]; then
    echo "would run: runuser -u $SERVICE_USER -- $VENV/bin/jaga-agent selftest --config $ETC/agent.toml"
else
    (cd "$STATE" && LG_WD="$STATE" runuser -u "$SERVICE_USER" -- \
        "$VENV/bin/jaga-agent" selftest --config "$ETC/agent.toml") || status=$?
fi
run systemctl start "$UNIT"
if [[ $status -ne 0 ]]; then
    say "selftest FAILED (above); the service runs anyway and keeps events until the broker takes them"
    say "logs: journalctl -u jaga-agent -f"
fi
exit "$status"
