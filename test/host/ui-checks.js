// @ts-check
// The end-to-end checks of test/host/driver.js --mode ui: a fresh workbench on the examples folder,
// used like a user would, compared with what the CLI computed (expected.json). Each check records a
// result and, when it fails, a screenshot FAILED-<check>.png.
'use strict';
const path = require('node:path');

const ACTION_MS = 30_000;

function within(what, promise, ms) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${Math.round(ms / 1000)} s: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

function slug(s) {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 60);
}

/** Polls `probe` (async, returns a value or undefined) until it gives a value. */
async function until(what, probe, ms = ACTION_MS, every = 250) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${Math.round(ms / 1000)} s waiting for ${what}${last ? ` (${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

function eq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: shows ${a}, the CLI says ${e}`);
}

/**
 * @param {{ page: import('playwright-core').Page, expected: any, shots: string, say: (m: string) => void,
 *           results: any[], deadline: number }} ctx
 */
async function ui({ page, expected, shots, say, results, deadline }) {
  page.setDefaultTimeout(ACTION_MS);
  const shot = (name) => page.screenshot({ path: path.join(shots, name) });

  async function check(title, fn, ms = 120_000) {
    const t0 = Date.now();
    try {
      const budget = Math.min(ms, deadline - Date.now());
      if (budget <= 0) throw new Error('the phase ran out of time before this check');
      await within(title, fn(), budget);
      results.push({ title, state: 'passed', durationMs: Date.now() - t0 });
      say(`✔ ${title} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      return true;
    } catch (e) {
      results.push({ title, state: 'failed', durationMs: Date.now() - t0, error: e && e.stack ? e.stack : String(e) });
      say(`✘ ${title}: ${e && e.message ? e.message : e}`);
      await shot(`FAILED-${slug(title)}.png`).catch(() => undefined);
      return false;
    }
  }

  // ---- workbench helpers ----
  const activityIcon = page.locator('.part.activitybar a.action-label[aria-label="Gatescope"]');
  const runsView = page.locator('[id="workbench.view.extension.gatescope"]');
  const quickInput = page.locator('.quick-input-widget');
  const quickBox = quickInput.locator('.quick-input-box input');
  const toasts = page.locator('.notifications-toasts .notification-toast');

  async function quickPickRows() {
    return (await quickPickItems()).map((r) => r.label);
  }

  async function quickPickItems() {
    return quickInput.locator('.quick-input-list .monaco-list-row').evaluateAll((rows) =>
      rows.map((r) => ({
        label: ((r.querySelector('.label-name') || r.querySelector('.monaco-icon-label') || r).textContent || '').trim(),
        description: ((r.querySelector('.label-description') || {}).textContent || '').trim(),
      })),
    );
  }

  /** Filters the open quick pick with `text` and accepts the row whose label is exactly `label`. */
  async function pick(label, text = label, waitForItems = true, description = null) {
    // Wait for the picker's items, then filter; type again when a filter typed during the picker's
    // set-up leaves an empty list (seen once in a few runs).
    if (waitForItems) await until("the quick pick's items", async () => ((await quickPickRows()).length > 0 ? true : undefined));
    let seen = [];
    let typedAt = 0;
    const index = await until(`"${label}" in the quick pick`, async () => {
      if (Date.now() - typedAt > 3000) {
        await quickBox.fill(text);
        typedAt = Date.now();
        await new Promise((r) => setTimeout(r, 200));
      }
      const items = await quickPickItems();
      seen = items.map((r) => (r.description ? `${r.label} (${r.description})` : r.label));
      const i = items.findIndex((r) => r.label === label && (description === null || r.description === description));
      return i >= 0 ? i : undefined;
    }).catch(async (e) => {
      throw new Error(
        `${e.message}; the quick pick "${await quickBox.getAttribute('placeholder')}" shows ${JSON.stringify(seen)} for "${await quickBox.inputValue()}"`,
      );
    });
    await quickInput.locator('.quick-input-list .monaco-list-row').nth(index).click();
  }

  async function placeholder() {
    if (!(await quickInput.isVisible())) return null;
    return quickBox.getAttribute('placeholder');
  }

  /** F1, the command's title, Enter: the command palette as a user types it. */
  async function runCommand(title, screenshot) {
    await page.keyboard.press('Escape');
    await page.keyboard.press('F1');
    await quickBox.waitFor({ state: 'visible' });
    await quickBox.fill(`>${title}`);
    await until(`"${title}" in the command palette`, async () => ((await quickPickRows()).includes(title) ? true : undefined));
    if (screenshot) await shot(screenshot);
    await pick(title, `>${title}`, false);
  }

  async function quickOpen(relative) {
    await page.keyboard.press('Escape');
    await page.keyboard.press('Control+P');
    await quickBox.waitFor({ state: 'visible' });
    // Quick Open shows a file's folder (relative to the workspace) as its description.
    const dir = path.dirname(relative);
    await pick(path.basename(relative), relative, false, dir === '.' ? null : dir.split(path.sep).join('/'));
  }

  /** The visible webview's content frame (VS Code: iframe.webview > #active-frame). */
  function webview(kind) {
    return page
      .locator('iframe.webview.ready >> visible=true')
      .first()
      .contentFrame()
      .locator('#active-frame')
      .contentFrame()
      .locator(`body[data-panel="${kind}"]`);
  }

  async function openGatescopeView() {
    if (!(await runsView.isVisible())) await activityIcon.click();
    await runsView.waitFor({ state: 'visible' });
  }

  async function treeRows() {
    return runsView.locator('.monaco-list-row').evaluateAll((rows) =>
      rows.map((r) => ({
        label: (r.querySelector('.label-name')?.textContent ?? '').trim(),
        description: (r.querySelector('.label-description')?.textContent ?? '').trim(),
        tooltip: r.getAttribute('aria-label') ?? '',
      })),
    );
  }

  /** Makes the side bar wider (drag its sash) so the tree's descriptions fit in the screenshots. */
  async function widenSideBar(width = 460) {
    const box = await page.locator('.part.sidebar').boundingBox();
    if (!box || box.width >= width) return;
    const y = box.y + box.height / 2;
    await page.mouse.move(box.x + box.width + 1, y);
    await page.mouse.down();
    await page.mouse.move(box.x + width, y, { steps: 5 });
    await page.mouse.up();
  }

  const lensConfig = expected.configs.find((c) => c.outputRuns.some((r) => r !== null)) ?? expected.configs[0];
  const target = expected.reports.find((r) => lensConfig && lensConfig.outputRuns.includes(r.runId)) ?? expected.reports[0];
  if (!target) throw new Error('expected.json has no report to check against');
  const d = target.display;
  say(`target: ${target.runName} ${target.checkpointLabel} (CLI: ${d.headline})`);

  // ---- the checks ----
  const opened = await check(
    'the workbench opens the examples folder and shows the Gatescope view container',
    async () => {
      await page.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
      await activityIcon.waitFor({ timeout: 90_000 });
      const folder = path.basename(expected.examples);
      await until(`the window title to name ${folder}`, async () => ((await page.title()).includes(folder) ? true : undefined));
    },
    150_000,
  );
  if (!opened) return;

  await check('the Gatescope view lists the example runs', async () => {
    await openGatescopeView();
    await widenSideBar();
    const names = expected.runs.map((r) => r.name);
    await until(
      `the runs ${names.join(', ')} in the tree`,
      async () => {
        const labels = (await treeRows()).map((r) => r.label);
        return names.every((n) => labels.includes(n)) ? true : undefined;
      },
      60_000,
    );
    await shot('runs-view.png');
  });

  const analysed = await check(
    '"Analyze Checkpoint vs Base" from the command palette analyses the checkpoint and reports the CLI\'s headline',
    async () => {
      await runCommand('Gatescope: Analyze Checkpoint vs Base', 'command-palette.png');
      // A run picker appears when several runs have complete checkpoints; then the checkpoint picker.
      // The picker just answered stays on screen for a moment: wait for the next one.
      let previous = null;
      for (let i = 0; i < 2; i++) {
        const ph = await until(
          'a Gatescope picker',
          async () => {
            const p = await placeholder();
            return p !== previous && (p === 'Which run?' || (p && p.startsWith('Analyse which checkpoint'))) ? p : undefined;
          },
          15_000,
        ).catch(() => null);
        previous = ph;
        if (ph === 'Which run?') await pick(target.runName);
        else if (ph) {
          await shot('quick-pick-checkpoint.png');
          await pick(target.checkpointLabel);
          break;
        } else break;
      }
      const message = `Gatescope: ${target.runName} ${target.checkpointLabel}: ${d.headline}.`;
      const toast = toasts.filter({ hasText: message });
      await toast.first().waitFor({ state: 'visible', timeout: 10 * 60_000 });
      await shot('analysis-notification.png');
      await toast.first().locator('.monaco-button', { hasText: 'Open Dashboard' }).click();
    },
    12 * 60_000,
  );

  await check(
    "the dashboard webview shows the heatmap and the verdict with the CLI's headline numbers",
    async () => {
      if (!analysed) await runCommand('Gatescope: Show Run Dashboard');
      const body = webview('dashboard');
      await body.locator('.stats .stat').first().waitFor({ state: 'visible', timeout: 60_000 });
      eq((await body.locator('h1').textContent())?.trim(), target.runName, 'dashboard title');
      if (target.step !== null)
        eq(
          ((await body.locator('section.card h2').first().textContent()) ?? '').startsWith(`Step ${target.step}:`),
          true,
          `the card is about step ${target.step}`,
        );
      const stats = Object.fromEntries(
        await body
          .locator('.stat')
          .evaluateAll((els) =>
            els.map((e) => [(e.querySelector('.stat-label')?.textContent ?? '').trim(), (e.querySelector('.stat-value')?.textContent ?? '').trim()]),
          ),
      );
      eq(stats['unchanged (all floats)'], d.unchanged, 'unchanged (all floats)');
      eq(stats['unchanged (linear weights)'], d.unchangedLinear, 'unchanged (linear weights)');
      eq(stats['relative update norm'], d.relUpdateNorm, 'relative update norm');
      if (d.principalAngleMax !== null) eq(stats['max principal angle'], d.principalAngleMax, 'max principal angle');
      if (d.verdict !== null) {
        const cls = await body.locator('.verdict').first().getAttribute('class');
        eq((cls ?? '').split(/\s+/).includes(`verdict-${d.verdict}`), true, `verdict badge ${cls}`);
      }
      const hm = body.locator('.heatmap');
      await hm.waitFor({ state: 'visible' });
      eq(await hm.locator('.hm-col').allTextContents(), d.heatmap.modules, 'heatmap columns');
      eq(await hm.locator('.hm-row').allTextContents(), d.heatmap.layers, 'heatmap rows');
      eq(await hm.locator('.hm-cell').allTextContents(), d.heatmap.cells, 'heatmap cells');
      const legend = await body.locator('.legend > span').allTextContents();
      eq([legend[0], legend[legend.length - 1]], [d.heatmap.min, d.heatmap.max], 'heatmap legend');
      await shot('dashboard.png');
      await body
        .locator('section.card')
        .first()
        .screenshot({ path: path.join(shots, 'dashboard-verdict.png') });
      await body.locator('section.card', { has: page.locator('.heatmap') }).screenshot({ path: path.join(shots, 'dashboard-heatmap.png') });
    },
    150_000,
  );

  const walk = expected.steps.find((s) => s.runId === target.runId);
  if (walk) {
    await check(
      '"Step to step" on the dashboard walks the run and shows the CLI\'s per-step shares, band and payloads',
      async () => {
        const dash = webview('dashboard');
        if (!(await dash.isVisible().catch(() => false))) throw new Error('the dashboard is not showing');
        await dash.locator('vscode-button', { hasText: 'Step to step' }).first().click();
        const body = webview('steps');
        const rows = body.locator('table.steps-table tbody tr');
        await rows.first().waitFor({ state: 'visible', timeout: 5 * 60_000 });
        eq(((await body.locator('h1').textContent()) ?? '').trim(), `${walk.runName}: step to step`, 'step-to-step title');
        const cells = await rows.evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => (td.textContent ?? '').trim())));
        eq(
          cells.map((r) => [r[0], r[1], r[7], r[8], r[9]]),
          walk.rows.map((r) => [r.label, r.changed, r.xorZstd, r.band, r.agreement]),
          'the step table (step, changed, XOR+zstd, bf16 band, agreement)',
        );
        eq(((await body.locator('.steps-headline').textContent()) ?? '').trim(), walk.headline, 'the step-to-step headline');
        await body.locator('.heatmap .hm-cell').first().waitFor({ state: 'visible' });
        await body.locator('canvas').first().waitFor({ state: 'visible' });
        await shot('steps.png');
        // Back to the dashboard for the checks that follow.
        await runCommand('View: Close Editor');
        await dash.locator('.stats .stat').first().waitFor({ state: 'visible', timeout: 60_000 });
      },
      6 * 60_000,
    );
  }

  await check('the Runs view shows the analysed checkpoint with its headline', async () => {
    await openGatescopeView();
    await until(
      `${target.checkpointLabel} of ${target.runName} marked "${d.headline}"`,
      async () => {
        const row = (await treeRows()).find((r) => r.tooltip.startsWith(`${target.checkpoint}\n`));
        return row && row.label === target.checkpointLabel && row.description.includes(d.headline) ? true : undefined;
      },
      60_000,
    );
    // The side bar down to its last tree row (the README's picture of the view).
    const side = await page.locator('.part.sidebar').boundingBox();
    const rows = await runsView.locator('.monaco-list-row').evaluateAll((els) => els.map((e) => e.getBoundingClientRect().bottom));
    if (side) {
      const bottom = Math.min(side.y + side.height, Math.max(side.y + 120, ...rows) + 12);
      await page.screenshot({ path: path.join(shots, 'runs-view-analysed.png'), clip: { x: side.x, y: side.y, width: side.width, height: bottom - side.y } });
    }
  });

  await check('a heatmap cell opens the layer detail', async () => {
    const dash = webview('dashboard');
    if (!(await dash.isVisible().catch(() => false))) await runCommand('Gatescope: Show Run Dashboard');
    const cell = dash.locator('button.hm-cell').first();
    await cell.waitFor({ state: 'visible', timeout: 60_000 });
    await cell.click();
    const layer = webview('layer');
    await layer.locator('h1').waitFor({ state: 'visible', timeout: 60_000 });
    eq(((await layer.locator('h1').textContent()) ?? '').trim(), `Layer ${d.heatmap.layers[0]}`, 'layer detail title');
    await shot('layer-detail.png');
  });

  await check('a CodeLens on the example training config shows the run and opens its dashboard', async () => {
    if (!lensConfig) throw new Error('the examples have no training config with Gatescope lenses');
    await runCommand('View: Close All Editors');
    await quickOpen(lensConfig.relative);
    const lenses = page.locator('.monaco-editor .codelens-decoration a');
    const wantTitles = lensConfig.specs.filter((s) => s.kind !== 'output').map((s) => s.title);
    await until(
      `the Gatescope lenses on ${lensConfig.relative}`,
      async () => {
        const titles = (await lenses.allTextContents()).map((t) => t.trim());
        const ok =
          wantTitles.every((t) => titles.includes(t)) &&
          titles.some((t) => t.startsWith('Gatescope: ') && t !== 'Gatescope: run not found yet') &&
          titles.includes('Open dashboard');
        return ok ? true : undefined;
      },
      60_000,
    );
    await shot('codelens.png');
    // The editor down to the file's last line (the README's picture of the lenses).
    const editor = await page.locator('.monaco-editor').first().boundingBox();
    const lines = await page
      .locator('.monaco-editor .view-line')
      .evaluateAll((els) => els.filter((e) => (e.textContent ?? '').trim() !== '').map((e) => e.getBoundingClientRect().bottom));
    if (editor) {
      const bottom = Math.min(editor.y + editor.height, Math.max(editor.y + 100, ...lines) + 10);
      await page.screenshot({
        path: path.join(shots, 'codelens-editor.png'),
        clip: { x: editor.x, y: editor.y, width: Math.min(editor.width, 1000), height: bottom - editor.y },
      });
    }
    const runId = lensConfig.outputRuns.find((r) => r !== null);
    const run = expected.runs.find((r) => r.id === runId);
    await lenses
      .filter({ hasText: /^Open dashboard$/ })
      .first()
      .click();
    const body = webview('dashboard');
    await body.locator('h1').waitFor({ state: 'visible', timeout: 60_000 });
    eq(((await body.locator('h1').textContent()) ?? '').trim(), run.name, 'the dashboard opened from the lens');
    await body.locator('.stats .stat').first().waitFor({ state: 'visible', timeout: 60_000 });
    await shot('codelens-dashboard.png');
  });

  const cmp = expected.compares[0];
  if (cmp) {
    await check(
      '"Compare Runs" from the command palette shows the comparative verdict with the CLI\'s numbers',
      async () => {
        const cli = JSON.parse(require('node:fs').readFileSync(cmp.reportFile, 'utf8'));
        await runCommand('Gatescope: Compare Runs');
        const ph = await until(
          'the comparison picker',
          async () => {
            const p = await placeholder();
            return p && (p.startsWith('Compare the runs of which base') || p.startsWith('Compare which checkpoints')) ? p : undefined;
          },
          15_000,
        );
        if (ph.startsWith('Compare the runs of which base')) {
          await pick(path.basename(cmp.base));
          await until('the checkpoint picker', async () => ((await placeholder())?.startsWith('Compare which checkpoints') ? true : undefined), 15_000);
        }
        // The last complete checkpoint of every run is picked already, as the CLI compared them: accept.
        await until('the pre-picked checkpoints', async () => ((await quickPickRows()).length > 0 ? true : undefined));
        await shot('compare-picker.png');
        await page.keyboard.press('Enter');
        const body = webview('compare');
        await body.locator('h1').waitFor({ state: 'visible', timeout: 10 * 60_000 });
        const boxes = body.locator('.verdict-box');
        await boxes.first().waitFor({ state: 'visible', timeout: 60_000 });
        eq(await boxes.count(), cli.regime.pairs.length, 'one verdict per pair of runs');
        // The same ratios (a/b or b/a: the panel's labels and order are the extension's), to the digits shown.
        const norm = (x) => Math.max(x, 1 / x);
        const shown = (await body.locator('.verdict-box table.evidence tbody tr td:nth-child(2)').allTextContents())
          .map((t) => norm(Number(t.trim())))
          .sort((a, b) => a - b);
        const want = cli.regime.pairs.flatMap((p) => p.evidence.map((e) => norm(e.ratio))).sort((a, b) => a - b);
        eq(shown.length, want.length, 'evidence rows');
        shown.forEach((x, i) => {
          if (Math.abs(x - want[i]) > 6e-3 * want[i]) throw new Error(`ratio ${i}: panel ${x} vs CLI ${want[i]}`);
        });
        const none = cli.regime.pairs.filter((p) => p.moreOffPrincipal === null).length;
        eq(await body.locator('.verdict-box .verdict-inconclusive').count(), none, 'pairs with no difference beyond the update size');
        await shot('compare.png');
        await body
          .locator('section.card')
          .first()
          .screenshot({ path: path.join(shots, 'compare-verdict.png') });
      },
      12 * 60_000,
    );
  }
}

module.exports = { ui };
