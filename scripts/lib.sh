# shellcheck shell=bash
# Shared by scripts/install-agent.sh and scripts/install-server.sh (sourced, not run).
#
# The caller sets SCRIPT_NAME (its name in messages), ROOT ("" for the real system, else the
# throwaway root every written path goes under) and CHANGED (a count of what changed).
# Every helper changes a file only when it differs, so a second run changes nothing.

say() { echo "$SCRIPT_NAME: $*"; }
die() {
    echo "$SCRIPT_NAME: error: $*" >&2
    exit 1
}
p() { echo "${ROOT}$1"; } # where a path of the installed system is on this machine

# run CMD...: run it on the real system; in --root mode print it instead.
run() {
    if [[ -n "$ROOT" ]]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

# put_file SRC DEST MODE: install SRC as DEST (a path on the installed system) with MODE,
# only when content or mode differ; counts what changed.
put_file() {
    local src="$1" dest="$2" mode="$3" target
    target="$(p "$dest")"
    if [[ -f "$target" ]] && cmp -s "$src" "$target" &&
        [[ "$(stat -c %a "$target")" == "${mode#0}" ]]; then
        return 0
    fi
    mkdir -p "$(dirname "$target")"
    install -m "$mode" "$src" "$target.jaga-new"
    mv -f "$target.jaga-new" "$target"
    CHANGED=$((CHANGED + 1))
    say "wrote $dest (mode $mode)"
}

# ensure_dir DIR MODE [OWNER]
ensure_dir() {
    local target
    target="$(p "$1")"
    if [[ ! -d "$target" ]]; then
        mkdir -p "$target"
        CHANGED=$((CHANGED + 1))
        say "made $1"
    fi
    if [[ "$(stat -c %a "$target")" != "${2#0}" ]]; then
        chmod "$2" "$target"
        CHANGED=$((CHANGED + 1))
    fi
    [[ -z "${3:-}" ]] || run chown "$3" "$1"
}

# missing_packages PKG...: prints those not installed, one a line.
missing_packages() {
    local pkg pkg_status
    for pkg in "$@"; do
        # Output captured, not piped into `grep -q`: under pipefail grep's early exit can
        # SIGPIPE the writer and turn a match into a failure.
        pkg_status="$(dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null)" || pkg_status=""
        [[ "$pkg_status" == *"ok installed"* ]] || echo "$pkg"
    done
}

# package_available PKG: the mirror has it (apt-get update first).
package_available() {
    local policy
    policy="$(apt-cache policy "$1" 2>/dev/null)" || policy=""
    [[ "$policy" =~ Candidate:\ [0-9] ]]
}

# apt_install PKG...: quietly, without questions or a progress bar.
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 "$@"
}

# ensure_user USER HOME COMMENT: a system user with its own group and no login.
ensure_user() {
    if [[ -n "$ROOT" ]]; then
        echo "would run (if missing): useradd --system --user-group --home-dir $2" \
            "--no-create-home --shell /usr/sbin/nologin $1"
    elif ! id "$1" >/dev/null 2>&1; then
        useradd --system --user-group --home-dir "$2" --no-create-home \
            --shell /usr/sbin/nologin --comment "$3" "$1"
    fi
}

# install_program VENV TARGET [VENV-OPTION...]: the venv (made once; not relocatable, so never
# under --root) and TARGET in it: this checkout, with its extras if any ("$SRC[collector]").
install_program() {
    local venv="$1" target="$2"
    shift 2
    if [[ -n "$ROOT" || ! -x "$venv/bin/python" ]]; then
        run python3 -m venv "$@" "$venv"
    fi
    run "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade "$target"
}
