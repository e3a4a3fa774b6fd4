#!/usr/bin/env bash
# Debian's `prometheus` package brings `promtool` (the alert rules' unit tests) and the
# `prometheus` server (the end-to-end test, which runs it itself on a loopback port; the
# package's service is never started). Installed only where apt is and promtool is not.
# Never fails: without them, those tests skip and say why.
set -uo pipefail

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "== apt-get is not available: the promtool and Prometheus tests will skip" >&2
    exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo -n)
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
install() {
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
        prometheus >>"$log" 2>&1
}
started=$SECONDS
# A machine whose package lists are missing or stale needs one `apt-get update` first.
if install || { "${sudo[@]}" apt-get update -q >>"$log" 2>&1 && install; }; then
    echo "== installed Debian's prometheus package in $((SECONDS - started)) s" \
        "($(promtool --version 2>&1 | head -n 1))" >&2
else
    echo "== could not install Debian's prometheus package after $((SECONDS - started)) s;" \
        "the promtool and Prometheus tests will skip. apt said:" >&2
    tail -n 5 "$log" >&2
fi
exit 0
