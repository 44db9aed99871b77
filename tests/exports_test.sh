#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# libtaskgrid.so exports exactly the public API: every defined dynamic
# symbol is a tg_* function declared with TG_EXPORT in
# sdk/include/taskgrid/, none is an internal (tg__*, tgs_*, tgw_*, pb_*,
# ...), and every public SDK function is there.
set -euo pipefail
lib=$1
shift
headers=("$@")

exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort -u)
declared=$(grep -ho 'TG_EXPORT [^(]*\btg_[a-z0-9_]*(' "${headers[@]}" |
           grep -o 'tg_[a-z0-9_]*($' | tr -d '(' | sort -u)

fail=0
for s in $exported; do
    case "$s" in
    _init|_fini|__bss_start|_edata|_end) continue ;;
    esac
    if ! grep -qx "$s" <<<"$declared"; then
        echo "exported but not public API: $s"
        fail=1
    fi
done
# The SDK's own functions (not the plug-in ABI, which the worker
# provides) must all be exported.
sdk_declared=$(grep -ho 'TG_EXPORT [^(]*\btg_[a-z0-9_]*(' \
               $(printf '%s\n' "${headers[@]}" | grep -v '/plugin.h$') |
               grep -o 'tg_[a-z0-9_]*($' | tr -d '(' | sort -u)
for s in $sdk_declared; do
    if ! grep -qx "$s" <<<"$exported"; then
        echo "public API missing from $lib: $s"
        fail=1
    fi
done
n=$(wc -w <<<"$exported")
if [ "$fail" != 0 ]; then
    echo "FAIL: $lib exports $n symbols"
    exit 1
fi
echo "ok: $lib exports $n symbols, all public tg_* API"
