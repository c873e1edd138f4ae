#!/usr/bin/env bash
# Debian packages the tests need, installed only when missing (apt-get needs root
# or sudo): Chromium for the browser tests, PostgreSQL client tools for CI's
# database run, Node.js and npm for guacamole-common-js.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pg_isready >/dev/null 2>&1 || need+=(postgresql-client)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)

if ((${#need[@]} == 0)); then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "installing: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
