#!/usr/bin/env bash
# The password-hook service: `python -m password_hook` on all interfaces of its container.
# Settings are the PASSWORD_HOOK_* variables from .env (password_hook/README.md). In the local-stack profile the
# user pool and app client exist only once the seeder has run, so PASSWORD_HOOK_ENV_FILE names the file where
# it wrote their ids; that file is read first and .env values it does not set still apply.
set -euo pipefail

if [[ -n "${PASSWORD_HOOK_ENV_FILE:-}" ]]; then
    for _ in $(seq 1 60); do
        [[ -f "${PASSWORD_HOOK_ENV_FILE}" ]] && break
        sleep 2
    done
    if [[ ! -f "${PASSWORD_HOOK_ENV_FILE}" ]]; then
        echo "error: ${PASSWORD_HOOK_ENV_FILE} did not appear; did local-stack-seed run?" >&2
        exit 2
    fi
    set -a
    # shellcheck source=/dev/null
    . "${PASSWORD_HOOK_ENV_FILE}"
    set +a
fi

exec python -m password_hook --host 0.0.0.0 --port "${PASSWORD_HOOK_PORT:-8088}"
