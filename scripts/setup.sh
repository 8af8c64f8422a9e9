#!/usr/bin/env bash
# Create .venv and install soundscene into it (torch 2.13.0 first, so the resolver keeps it), with its
# applications (HTTP service, MQTT, ONNX export).
# Usage: scripts/setup.sh [test]   -- "test" also installs the test tools, and the real MQTT broker and headless
#                                     browser that the tests drive (Debian packages mosquitto and chromium,
#                                     and postgresql, whose server the hub tests start in a temporary folder,
#                                     installed with apt-get when missing and this runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "test" ]; then
  missing=()
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing ${missing[*]} (apt-get)"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "the tests need: ${missing[*]} (e.g. sudo apt-get install -y ${missing[*]})" >&2
    fi
  fi
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
if [ "${1:-}" = "test" ]; then
  .venv/bin/python -m pip install -q -e ".[test]"
else
  .venv/bin/python -m pip install -q -e ".[all]"
fi
