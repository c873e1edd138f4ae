#!/usr/bin/env bash
# Debian packages the tests need, installed only when missing (apt-get needs root
# or sudo): Chromium for the browser tests, PostgreSQL client tools for CI's
# database run, Node.js and npm for guacamole-common-js, and the real servers the
# real-guacd integration suite connects to (tests/integration/README.md): Xvfb,
# x11vnc, xterm and xclip (VNC), TigerVNC's Xtigervnc (VNC's clipboard),
# FreeRDP's shadow server and winpr-hash (RDP, NLA), and OpenSSH's server (SSH).
#
# The servers' packages must not leave their own daemons running (e.g. sshd on
# port 22): services are kept from starting during the install (policy-rc.d),
# and the ssh service is stopped and disabled if it runs anyway. The tests start
# private instances on loopback ports chosen at run time.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pg_isready >/dev/null 2>&1 || need+=(postgresql-client)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
servers=()
command -v Xvfb >/dev/null 2>&1 || servers+=(xvfb)
command -v x11vnc >/dev/null 2>&1 || servers+=(x11vnc)
command -v xterm >/dev/null 2>&1 || servers+=(xterm)
command -v xclip >/dev/null 2>&1 || servers+=(xclip)
command -v Xtigervnc >/dev/null 2>&1 || servers+=(tigervnc-standalone-server)
command -v freerdp-shadow-cli >/dev/null 2>&1 || servers+=(freerdp2-shadow-x11)
command -v winpr-hash >/dev/null 2>&1 || servers+=(winpr-utils)
[[ -x /usr/sbin/sshd ]] || servers+=(openssh-server)
need+=("${servers[@]}")

if ((${#need[@]} == 0)); then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

# Keep the packages' services from starting while they are installed; a
# policy-rc.d that is already there (containers often have one) is left alone.
POLICY=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  own_policy=1
fi
cleanup() { if ((own_policy)); then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

echo "installing: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"

# If the ssh service started anyway (systemd ignores policy-rc.d for socket
# units on some setups), stop it and keep it from starting at boot.
if [[ " ${servers[*]} " == *" openssh-server "* ]]; then
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
  elif [[ -f /run/sshd.pid ]]; then
    $SUDO kill "$(cat /run/sshd.pid)" 2>/dev/null || true
  fi
fi
