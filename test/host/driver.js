// @ts-check
/* global URL */
// Drives a real VS Code workbench (code-server) in headless Chromium with playwright-core. Started by
// scripts/host-test.sh, once per phase:
//   --mode integration  opens the workbench with VS Code's test payload (extensionDevelopmentPath +
//                       extensionTestsPath): the extension host runs the mocha suite in
//                       test/host/suite/ and reports through window.codeAutomationLog/-Exit.
//   --mode ui           opens the examples folder like a user and checks what the user sees: the
//                       Gatescope view, the command palette, the dashboard webview, the CodeLens.
// Each phase writes <mode>-results.json ({ passed, failed, results }) and screenshots under --artifacts.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const MARK = '[gatescope-host] ';

function parseArgs(argv) {
  const a = {};
  for (let i = 2; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    a[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ['mode', 'url', 'folder', 'artifacts', 'expected', 'chromium', 'playwright', 'pids']) {
    if (!a[k]) throw new Error(`--${k} is required`);
  }
  return {
    mode: a.mode,
    url: a.url.replace(/\/$/, ''),
    folder: path.resolve(a.folder),
    artifacts: path.resolve(a.artifacts),
    expected: path.resolve(a.expected),
    extensionDir: a['extension-dir'] ? path.resolve(a['extension-dir']) : '',
    suite: a.suite ? path.resolve(a.suite) : '',
    chromium: a.chromium,
    playwright: path.resolve(a.playwright),
    pids: a.pids,
    timeoutS: Number(a.timeout ?? 1200),
  };
}

const A = parseArgs(process.argv);
/** @type {typeof import('playwright-core')} */
const { chromium } = require(A.playwright);
const T0 = Date.now();
const shots = path.join(A.artifacts, 'screenshots');
fs.mkdirSync(shots, { recursive: true });
const browserLog = fs.createWriteStream(path.join(A.artifacts, `browser-${A.mode}.log`));

function say(msg) {
  console.log(`[${A.mode} ${String(Math.round((Date.now() - T0) / 1000)).padStart(4)}s] ${msg}`);
}

function logLine(line) {
  browserLog.write(`${new Date().toISOString()} ${line}\n`);
}

function text(args) {
  return (Array.isArray(args) ? args : [args]).map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' ');
}

/** Rejects after `ms` with a message that says what was awaited. */
function within(what, promise, ms) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${Math.round(ms / 1000)} s waiting for ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

async function launch() {
  const server = await chromium.launchServer({
    executablePath: A.chromium,
    headless: !process.env.GATESCOPE_HOST_HEADED,
    timeout: 60_000,
    // Debian's chromium on a machine without network: no background connections, no sandbox as root.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
      '--disable-features=Translate,MediaRouter',
    ],
  });
  const proc = server.process();
  if (proc && proc.pid) fs.appendFileSync(A.pids, `${proc.pid}\n`);
  const browser = await chromium.connect(server.wsEndpoint(), { timeout: 60_000 });
  return { server, browser };
}

function wirePage(page) {
  page.on('console', (m) => logLine(`console.${m.type()} ${m.text()}`));
  page.on('pageerror', (e) => logLine(`pageerror ${e.stack ?? e.message}`));
  page.on('crash', () => logLine('page crashed'));
  page.on('requestfailed', (r) => logLine(`requestfailed ${r.url()} ${r.failure()?.errorText ?? ''}`));
}

function workbenchUrl(extra = '') {
  return `${A.url}/?folder=${encodeURIComponent(A.folder)}${extra}`;
}

// ---- integration: the mocha suite inside the extension host ------------------------------------------

async function integration() {
  if (!A.suite || !A.extensionDir) throw new Error('--suite and --extension-dir are required in integration mode');
  const resultsFile = path.join(A.artifacts, 'integration-results.json');
  fs.rmSync(resultsFile, { force: true });
  const { server, browser } = await launch();
  let code = null;
  let problem = null;
  try {
    const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    wirePage(page);
    let exited;
    const exit = new Promise((resolve) => (exited = resolve));
    await page.exposeFunction('codeAutomationLog', (type, args) => {
      const t = text(args);
      logLine(`exthost.${type} ${t}`);
      if (t.startsWith(MARK)) console.log(`  ${t.slice(MARK.length)}`);
      else if (type === 'error' && /gatescope/i.test(t)) console.log(`  [extension host error] ${t.slice(0, 2000)}`);
    });
    await page.exposeFunction('codeAutomationExit', (c, logs) => {
      for (const l of Array.isArray(logs) ? logs : []) {
        if (!l || typeof l.relativePath !== 'string' || l.relativePath.includes('..')) continue;
        const f = path.join(A.artifacts, 'workbench-logs-integration', l.relativePath);
        fs.mkdirSync(path.dirname(f), { recursive: true });
        fs.writeFileSync(f, String(l.contents ?? ''));
      }
      exited(c);
    });
    const host = new URL(A.url).host;
    const remote = (p) => `vscode-remote://${host}${p.split(path.sep).map(encodeURIComponent).join('/')}`;
    const payload = [
      ['extensionDevelopmentPath', remote(A.extensionDir)],
      ['extensionTestsPath', remote(A.suite)],
      ['skipWelcome', 'true'],
      ['skipReleaseNotes', 'true'],
    ];
    say(`workbench with the test payload: extension ${A.extensionDir}, tests ${path.relative(process.cwd(), A.suite)}`);
    await page.goto(workbenchUrl(`&payload=${encodeURIComponent(JSON.stringify(payload))}`), { timeout: 120_000 });
    try {
      code = await within('the extension host to run the suite and exit', exit, A.timeoutS * 1000);
    } catch (e) {
      problem = e.message;
    }
    await page.screenshot({ path: path.join(shots, 'integration-workbench.png') }).catch(() => undefined);
  } finally {
    await browser.close().catch(() => undefined);
    await server.close().catch(() => undefined);
  }
  // The suite writes its results; a crash or a timeout before that still counts as a failure.
  let results = fs.existsSync(resultsFile) ? JSON.parse(fs.readFileSync(resultsFile, 'utf8')) : null;
  if (!results) results = { passed: 0, failed: 0, pending: 0, results: [] };
  if (problem || code !== 0) {
    const why = problem ?? `the extension host exited with code ${code}`;
    if (results.failed === 0) {
      results.failed = 1;
      results.results.push({ title: 'integration suite', state: 'failed', durationMs: null, error: why });
      fs.writeFileSync(resultsFile, JSON.stringify(results, null, 2) + '\n');
    }
    say(`FAILED: ${why}`);
    return false;
  }
  if (results.passed === 0) {
    say('FAILED: the suite ran no test');
    return false;
  }
  say(`integration: ${results.passed} passed, ${results.failed} failed`);
  return results.failed === 0;
}

// ---- ui: the workbench as a user meets it ------------------------------------------------------------

async function ui() {
  const expected = JSON.parse(fs.readFileSync(A.expected, 'utf8'));
  const { ui: checks } = require('./ui-checks');
  const { server, browser } = await launch();
  const results = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    wirePage(page);
    await page.goto(workbenchUrl(), { timeout: 120_000 });
    await checks({ page, expected, shots, say, results, deadline: T0 + A.timeoutS * 1000 });
  } finally {
    await browser.close().catch(() => undefined);
    await server.close().catch(() => undefined);
  }
  const summary = {
    passed: results.filter((r) => r.state === 'passed').length,
    failed: results.filter((r) => r.state === 'failed').length,
    pending: 0,
    durationMs: Date.now() - T0,
    results,
  };
  fs.writeFileSync(path.join(A.artifacts, 'ui-results.json'), JSON.stringify(summary, null, 2) + '\n');
  say(`ui: ${summary.passed} passed, ${summary.failed} failed`);
  return summary.failed === 0 && summary.passed > 0;
}

(A.mode === 'integration' ? integration() : A.mode === 'ui' ? ui() : Promise.reject(new Error(`unknown --mode ${A.mode}`)))
  .then((ok) => {
    browserLog.end();
    process.exitCode = ok ? 0 : 1;
  })
  .catch((e) => {
    console.error(`[${A.mode}] driver error: ${e && e.stack ? e.stack : e}`);
    browserLog.end();
    process.exitCode = 1;
  });
