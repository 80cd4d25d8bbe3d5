#!/bin/sh
# Builds the libFuzzer target in its own clang build directory and runs it for a bounded time.
#   tests/fuzz/run.sh [SECONDS]     (default 60)
# Exits non-zero when the fuzzer finds a crash, a sanitizer report or a broken invariant; the
# input that did it is left in $BUILD/artifacts/. BUILD defaults to <source>/build-fuzz
# (override with WSLB_FUZZ_BUILD_DIR).
set -eu
seconds=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${WSLB_FUZZ_BUILD_DIR:-$root/build-fuzz}

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ not found, installing clang" >&2
  apt-get install -y clang >/dev/null
fi
generator=""
if command -v ninja >/dev/null 2>&1; then generator="-G Ninja"; fi

mkdir -p "$build"
# shellcheck disable=SC2086
if ! cmake -S "$here" -B "$build" $generator -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1 ||
   ! cmake --build "$build" --target http_request_fuzz -j 2 >"$build/build.log" 2>&1; then
  cat "$build/configure.log" "$build/build.log" 2>/dev/null >&2
  echo "fuzz: build failed" >&2
  exit 2
fi

# New interesting inputs go to a scratch corpus in the build dir; the seeds in the tree stay
# as they are.
mkdir -p "$build/corpus" "$build/artifacts"
echo "fuzz: running http_request_fuzz for ${seconds}s (log: $build/fuzz.log)"
# libFuzzer's progress lines go to the log; the summary (or the failure) is printed here.
if ! "$build/http_request_fuzz" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=70000 \
    -dict="$here/http.dict" -artifact_prefix="$build/artifacts/" -print_final_stats=1 \
    "$build/corpus" "$here/corpus" >"$build/fuzz.log" 2>&1; then
  tail -n 80 "$build/fuzz.log" >&2
  echo "fuzz: FAILED; the input is in $build/artifacts/" >&2
  exit 1
fi
grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$build/fuzz.log" || tail -n 5 "$build/fuzz.log"
