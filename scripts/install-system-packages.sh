#!/usr/bin/env bash
# Debian packages the replica tests and the browser test use: redis-server and PostgreSQL
# (started on loopback by tests/servers.py) and Chromium with its driver (tests/test_web_demo.py).
# Installs only what is missing; needs root (or sudo) and Debian's package registry.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
# the packages' own servers are not needed (the tests start their own on free ports)
if command -v service >/dev/null; then
  $sudo service redis-server stop >/dev/null 2>&1 || true
  $sudo service postgresql stop >/dev/null 2>&1 || true
fi
