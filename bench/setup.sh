#!/usr/bin/env bash
# Idempotent setup for the batchmail benchmarks.
#   - Debian `postfix`, only for its test program smtp-sink (the MTA is never started)
#   - Debian `time`, for /usr/bin/time -v
#   - mailmerge==2.3.0 in its own virtualenv under bench/output/
# Needs root (or sudo) for the apt-get part; safe to run again (does nothing if all is there).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK_DIR="${BENCH_DIR}/output"
MM_VENV="${WORK_DIR}/mailmerge-venv"
MM_VERSION="2.3.0"
PYTHON="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot apt-get install"
    SUDO="sudo"
fi

APT_UPDATED=0
apt_install() {
    if [[ "${APT_UPDATED}" -eq 0 ]]; then
        log "apt-get update"
        ${SUDO} apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    ${SUDO} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

find_smtp_sink() {
    command -v smtp-sink 2>/dev/null || { [[ -x /usr/sbin/smtp-sink ]] && echo /usr/sbin/smtp-sink; } || true
}

postfix_master_running() {
    # The Postfix MTA daemon is the `master` process (command line like /usr/lib/postfix/sbin/master).
    pgrep -f '^/usr/lib/postfix/sbin/master' >/dev/null 2>&1
}

install_postfix() {
    local policy=/usr/sbin/policy-rc.d backup=""
    echo "postfix postfix/main_mailer_type select No configuration" \
        | ${SUDO} debconf-set-selections
    # Forbid service starts during the install (exit 101 = "action not allowed").
    if [[ -e "${policy}" ]]; then
        backup="$(mktemp)"
        ${SUDO} cp -p "${policy}" "${backup}"
    fi
    printf '#!/bin/sh\nexit 101\n' | ${SUDO} tee "${policy}" >/dev/null
    ${SUDO} chmod 755 "${policy}"
    local rc=0
    apt_install postfix || rc=$?
    if [[ -n "${backup}" ]]; then
        ${SUDO} cp -p "${backup}" "${policy}"
        rm -f "${backup}"
    else
        ${SUDO} rm -f "${policy}"
    fi
    [[ "${rc}" -eq 0 ]] || die "apt-get install postfix failed (rc=${rc})"
}

ensure_smtp_sink() {
    if [[ -n "$(find_smtp_sink)" ]]; then
        log "smtp-sink already installed: $(find_smtp_sink)"
    else
        install_postfix
        [[ -n "$(find_smtp_sink)" ]] || die "postfix installed but smtp-sink not found"
        log "installed postfix (for smtp-sink): $(find_smtp_sink)"
    fi
    if postfix_master_running; then
        log "the Postfix MTA daemon is running: stopping it (the bench only needs smtp-sink)"
        ${SUDO} postfix stop >/dev/null 2>&1 || true
        sleep 1
        postfix_master_running && die "could not stop the Postfix MTA daemon"
    fi
    log "Postfix MTA daemon: not running (good)"
}

ensure_time() {
    if [[ -x /usr/bin/time ]] && /usr/bin/time -v true >/dev/null 2>&1; then
        log "/usr/bin/time -v already available"
    else
        apt_install time
        log "installed Debian 'time' (/usr/bin/time)"
    fi
}

mailmerge_installed_version() {
    [[ -x "${MM_VENV}/bin/python" ]] || return 0
    "${MM_VENV}/bin/python" -c \
        'import importlib.metadata as m; print(m.version("mailmerge"))' 2>/dev/null || true
}

mailmerge_works() {
    # The entry point's shebang holds the venv's absolute path: a moved venv breaks it.
    [[ "$(mailmerge_installed_version)" == "${MM_VERSION}" ]] \
        && "${MM_VENV}/bin/mailmerge" --version >/dev/null 2>&1
}

ensure_mailmerge() {
    if mailmerge_works; then
        log "mailmerge ${MM_VERSION} already in ${MM_VENV#"${BENCH_DIR}/"}"
        return
    fi
    if [[ -e "${MM_VENV}" ]]; then
        log "${MM_VENV#"${BENCH_DIR}/"} is broken (moved or incomplete): recreating it"
        rm -rf "${MM_VENV}"
    fi
    mkdir -p "${WORK_DIR}"
    "${PYTHON}" -m venv "${MM_VENV}"
    log "pip install mailmerge==${MM_VERSION} into ${MM_VENV#"${BENCH_DIR}/"}"
    "${MM_VENV}/bin/python" -m pip install -q --disable-pip-version-check \
        "mailmerge==${MM_VERSION}"
    mailmerge_works || die "mailmerge install failed"
    log "installed mailmerge ${MM_VERSION}"
}

ensure_smtp_sink
ensure_time
ensure_mailmerge
log "done"
