#!/bin/sh
# Builds a pilot-host plugin written in C into a WebAssembly component.
#
#     build.sh OUT.wasm SOURCE.c...
#
# Steps: `wit-bindgen c` generates the bindings of the WIT contract; clang (Debian: clang, lld,
# wasi-libc, libclang-rt-dev-wasm32) compiles them, the SDK and the sources for wasm32-wasi as a
# reactor; `wasm-tools component new` wraps the module into a component with the WASI preview 1
# reactor adapter. Tools and inputs come from the environment, with these defaults:
#
#     WIT_BINDGEN=wit-bindgen  WASM_TOOLS=wasm-tools  CC=clang
#     PILOT_WIT=<this folder>/wit        the WIT contract (pilot:plugin@0.1.1)
#     PILOT_ADAPTER=<this folder>/wasi_snapshot_preview1.reactor.wasm
#     CFLAGS="-O2"                       extra flags for clang
#     PILOT_WORLD=pilot-plugin           or `pilot-control` for a control plugin (pilot_control_sdk.h;
#                                        pilot_control_sdk.c and pilot_control_http.c are built in;
#                                        its WIT folder needs control.wit and deps/)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 2 ]; then
    echo "usage: $0 OUT.wasm SOURCE.c..." >&2
    exit 2
fi
out=$1
shift
wit=${PILOT_WIT:-$here/wit}
adapter=${PILOT_ADAPTER:-$here/wasi_snapshot_preview1.reactor.wasm}
world=${PILOT_WORLD:-pilot-plugin}
case $world in
    # The world's SDK sources join the plugin's.
    pilot-plugin) set -- "$@" "$here/pilot_plugin_sdk.c"; gen=pilot_plugin ;;
    pilot-control) set -- "$@" "$here/pilot_control_sdk.c" "$here/pilot_control_http.c"; gen=pilot_control ;;
    *) echo "$0: PILOT_WORLD is \`$world\`; use \`pilot-plugin\` or \`pilot-control\`" >&2; exit 2 ;;
esac
for tool in "${WIT_BINDGEN:-wit-bindgen}" "${WASM_TOOLS:-wasm-tools}" "${CC:-clang}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$0: \`$tool\` is missing; install it (see README.md: Install the tools) or set its variable (WIT_BINDGEN, WASM_TOOLS, CC)" >&2
        exit 2
    fi
done
[ -f "$adapter" ] || { echo "$0: the WASI reactor adapter \`$adapter\` is missing; set PILOT_ADAPTER to it" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pilot-c-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
"${WIT_BINDGEN:-wit-bindgen}" c --out-dir "$work/gen" --world "$world" "$wit" >/dev/null
# shellcheck disable=SC2086
"${CC:-clang}" --target=wasm32-wasi --sysroot="${WASI_SYSROOT:-/usr}" -mexec-model=reactor \
    ${CFLAGS:--O2} -Wall -Wextra -Wno-unused-parameter -I "$work/gen" -I "$here" \
    -o "$work/core.wasm" \
    "$@" "$here/pilot_common.c" "$here/pilot_json.c" \
    "$work/gen/$gen.c" "$work/gen/${gen}_component_type.o"
"${WASM_TOOLS:-wasm-tools}" component new "$work/core.wasm" \
    --adapt "wasi_snapshot_preview1=$adapter" -o "$out"
