#!/usr/bin/env bash
# Install what Atoll needs on a Debian 12 machine: the system packages listed in scripts/deps/*.apt
# and a virtualenv (.venv) holding Atoll itself with its test tools. Idempotent; run as root.
# --bench also installs what the benchmarks compare against (scripts/deps/bench/*.apt).
set -euo pipefail
cd "$(dirname "$0")/.."

lists=(scripts/deps/*.apt)
if [ "${1:-}" = "--bench" ]; then
    lists+=(scripts/deps/bench/*.apt)
fi
packages=$(sed -e 's/#.*//' "${lists[@]}" | tr -s ' \n' '\n' | sed '/^$/d' | sort -u)
missing=()
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's python3 with system site packages: the Ceph and libvirt bindings come from Debian packages.
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test,postgresql]'
# An editable install leaves the sources uncompiled; where PYTHONDONTWRITEBYTECODE is set, every atoll
# command would compile them again (~0.2 s of each start). Compile them once here, as pip does for a wheel.
.venv/bin/python -m compileall -q -j 0 provider customization atoll_common >/dev/null
echo "atoll installed: $(.venv/bin/atoll --version)"
