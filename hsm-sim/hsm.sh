#!/usr/bin/env bash
# Look inside the SoftHSM2 token of a NUC home (created by `nuc init --home HOME`).
#
#   hsm-sim/hsm.sh env   HOME   print `export SOFTHSM2_CONF=…` for that home (use with eval)
#   hsm-sim/hsm.sh list  HOME   log in to the token and list its objects (keys, with attributes)
#   hsm-sim/hsm.sh slots HOME   list the slots and tokens SoftHSM2 sees for that home
#
# Environment:
#   NUC_HSM_PIN         user PIN (else `pin = "…"` in the [hsm] section of HOME/nuc.toml)
#   NUC_PKCS11_MODULE   PKCS#11 module (else [hsm] module in HOME/nuc.toml,
#                       else /usr/lib/softhsm/libsofthsm2.so)
# The token label is [hsm] token_label in HOME/nuc.toml, else `nuc-ca`.
#
# Dev tool: the PIN is passed to pkcs11-tool on its command line, visible to `ps` on this
# machine. Do not use it with a production PIN.
set -euo pipefail

DEFAULT_MODULE=/usr/lib/softhsm/libsofthsm2.so
DEFAULT_TOKEN_LABEL=nuc-ca

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
    echo "hsm.sh: $*" >&2
    exit 2
}

# hsm_setting FILE KEY: the string value of KEY in the [hsm] section of the TOML file FILE,
# or nothing. Handles "basic" and 'literal' one-line strings without escapes, which is all
# nuc.toml uses for these keys.
hsm_setting() {
    local file=$1 key=$2
    [[ -f $file ]] || return 0
    awk -v want="$key" -v q="'" '
        /^[[:space:]]*\[/ {
            s = $0
            sub(/^[[:space:]]*\[[[:space:]]*/, "", s)
            sub(/[[:space:]]*\].*$/, "", s)
            in_hsm = (s == "hsm")
            next
        }
        in_hsm && match($0, "^[[:space:]]*" want "[[:space:]]*=[[:space:]]*") {
            rest = substr($0, RSTART + RLENGTH)
            c = substr(rest, 1, 1)
            if (c == "\"" || c == q) {
                rest = substr(rest, 2)
                i = index(rest, c)
                if (i > 0) { print substr(rest, 1, i - 1); exit }
            }
        }
    ' "$file"
}

# resolve_home DIR: sets HOME_DIR (absolute) and exports SOFTHSM2_CONF ([hsm] softhsm2_conf of
# nuc.toml, relative to the home; by default HOME/hsm/softhsm2.conf), checking the file exists.
resolve_home() {
    [[ -n ${1:-} ]] || die "missing HOME argument (the directory given to nuc init --home)"
    [[ -d $1 ]] || die "$1: no such directory"
    HOME_DIR=$(cd "$1" && pwd -P)
    SOFTHSM2_CONF=$(hsm_setting "$HOME_DIR/nuc.toml" softhsm2_conf)
    SOFTHSM2_CONF=${SOFTHSM2_CONF:-hsm/softhsm2.conf}
    [[ $SOFTHSM2_CONF == /* ]] || SOFTHSM2_CONF=$HOME_DIR/$SOFTHSM2_CONF
    [[ -f $SOFTHSM2_CONF ]] || die "$SOFTHSM2_CONF not found: run 'nuc init --home $1' first"
    export SOFTHSM2_CONF
}

module() {
    local m=${NUC_PKCS11_MODULE:-}
    [[ -n $m ]] || m=$(hsm_setting "$HOME_DIR/nuc.toml" module)
    [[ -n $m ]] || m=$DEFAULT_MODULE
    [[ -f $m ]] || die "PKCS#11 module $m not found (install softhsm2, or set NUC_PKCS11_MODULE)"
    printf '%s\n' "$m"
}

token_label() {
    local l
    l=$(hsm_setting "$HOME_DIR/nuc.toml" token_label)
    printf '%s\n' "${l:-$DEFAULT_TOKEN_LABEL}"
}

user_pin() {
    local p=${NUC_HSM_PIN:-}
    [[ -n $p ]] || p=$(hsm_setting "$HOME_DIR/nuc.toml" pin)
    [[ -n $p ]] || die "no user PIN: set NUC_HSM_PIN, or [hsm] pin in $HOME_DIR/nuc.toml"
    printf '%s\n' "$p"
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift

case $cmd in
    env)
        resolve_home "${1:-}"
        printf 'export SOFTHSM2_CONF=%q\n' "$SOFTHSM2_CONF"
        ;;
    list)
        resolve_home "${1:-}"
        mod=$(module)
        label=$(token_label)
        pin=$(user_pin)
        exec pkcs11-tool --module "$mod" --token-label "$label" --login --pin "$pin" --list-objects
        ;;
    slots)
        resolve_home "${1:-}"
        mod=$(module)
        exec pkcs11-tool --module "$mod" --list-slots
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        usage >&2
        exit 2
        ;;
esac
