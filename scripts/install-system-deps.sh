#!/usr/bin/env bash
# Debian packages the tests need: PostgreSQL client tools (CI's database run).
# Installs only what is missing; needs root (or sudo) for apt-get.
set -euo pipefail

need=()
command -v pg_isready >/dev/null 2>&1 || need+=(postgresql-client)

if ((${#need[@]} == 0)); then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "installing: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
