#!/bin/sh
# nextest setup script (see nextest.toml): before the first VM case of an arch, build or
# reuse the cached guest, probe the accelerator and save (or reuse) the booted guest's
# state; before the first boot case (`flatcar` as the second argument), build or
# reuse both Flatcar guests (real-root and initrd merge) and their baseline boots.
#
# It runs the sysext-test binary the test build just produced: `cargo run` would rebuild
# every dependency with the non-test feature set, minutes on 2 cores. If that binary is
# older than the sources (a --release test run), the first VM case builds the guest itself.
set -eu
arch="$1"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$root/target}/debug/sysext-test"
run() {
  if [ -x "$bin" ]; then
    "$bin" "$@"
  else
    (cd "$root" && cargo run -q --bin sysext-test -- "$@")
  fi
}
# A guest the user named (SYSEXT_TEST_GUEST: a Flatcar release or disk) is read by the
# first case that needs it; nothing is built.
if [ -n "${SYSEXT_TEST_GUEST:-}" ]; then
  echo "guest: $SYSEXT_TEST_GUEST (SYSEXT_TEST_GUEST); nothing to build"
  exit 0
fi
case "${2:-debian}" in
  flatcar)
    run guest build --arch "$arch" --profile flatcar --baseline
    run guest build --arch "$arch" --profile flatcar-initrd --baseline
    ;;
  *) run guest build --arch "$arch" --save-state ;;
esac
