/**
 * Accuracy of the spectral pass's factorisations against exact answers on LLM-like spectra.
 *
 *   node dist/bench-accuracy.js [--sizes 8960x1536,1536x1536] [--decay 0.5]
 *
 * Each pair is built with a power-law spectrum and an update of known geometry (src/examples/planted-spectra.ts),
 * so the exact singular values, the exact normalised spectral shift (NSS) over the top kSpectrum and the exact
 * principal angles are known. It compares two ways of getting them at the analysis defaults (kSpectrum 256,
 * k 64, oversample 10, 4 power iterations):
 * - independent: a randomized SVD of W0 and another of W1, their values subtracted (the earlier method);
 * - shared: both on one converged subspace (src/linalg/shared-subspace.ts), cold and with the base's basis given.
 */
import { createBackend } from '../src/compute/backend';
import { truncatedSvd, principalAnglesDeg } from '../src/linalg/truncated-svd';
import { sharedSubspaceSvd } from '../src/linalg/shared-subspace';
import { plantedPair, normalizedShift, maxAbsDifference, RL_SIZED, SFT_SIZED } from '../src/examples/planted-spectra';

process.env.ORT_DISABLE_TELEMETRY = '1';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

function cols(X: Float64Array, rows: number, stride: number, k: number): Float64Array {
  const out = new Float64Array(rows * k);
  for (let r = 0; r < rows; r++) for (let c = 0; c < k; c++) out[r * k + c] = X[r * stride + c];
  return out;
}

async function main(): Promise<void> {
  const sizes = arg('--sizes', '8960x1536,1536x1536')
    .split(',')
    .map((s) => s.split('x').map(Number) as [number, number]);
  const decay = Number(arg('--decay', '0.5'));
  const backend = await createBackend({ device: arg('--device', 'cpu') as 'cpu' | 'cuda' | 'auto' });
  const kk = 256;
  const k = 64;
  const settings = { oversample: 10, powerIterations: 4, seed: 1234 };
  const rows: string[] = [];
  rows.push(
    '| pair | update | exact NSS | independent: NSS error | shared: NSS error | independent: worst angle error | shared: worst angle error | shared iterations (base, checkpoint) | independent s | shared cold s | shared cached s |',
  );
  rows.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const [m, n] of sizes) {
    for (const kind of ['RL', 'SFT'] as const) {
      const o = kind === 'RL' ? RL_SIZED : SFT_SIZED;
      const p = await plantedPair(backend, { m, n, decay, k, kk, seed: 7 + m, ...o });
      let t = performance.now();
      const s0 = await truncatedSvd(backend, p.W0, kk, settings);
      const s1 = await truncatedSvd(backend, p.W1, kk, settings);
      const tIndep = (performance.now() - t) / 1000;
      const indepNss = normalizedShift(s0.S, s1.S, kk);
      const indepLeft = principalAnglesDeg(cols(s0.U, m, s0.k, k), cols(s1.U, m, s1.k, k), m, k);
      const indepRight = principalAnglesDeg(cols(s0.V, n, s0.k, k), cols(s1.V, n, s1.k, k), n, k);
      t = performance.now();
      const sh = await sharedSubspaceSvd(backend, p.W0, p.W1, p.dW, { kk, k, ...settings });
      const tCold = (performance.now() - t) / 1000;
      t = performance.now();
      const phases: Record<string, number> = {};
      const cached = await sharedSubspaceSvd(backend, p.W0, p.W1, p.dW, { kk, k, ...settings, baseBasis: sh.baseBasis, timings: phases });
      if (process.argv.includes('--phases'))
        console.error(`cached phases (ms): ${JSON.stringify(phases, (_, v: unknown) => (typeof v === 'number' ? Math.round(v) : v))}, basis width ${cached.l}`);
      const tCached = (performance.now() - t) / 1000;
      const shNss = normalizedShift(sh.base.S, sh.checkpoint.S, kk);
      const pct = (x: number): string => {
        const r = (100 * (x - p.nss)) / p.nss;
        return `${Math.abs(r) < 0.01 ? r.toExponential(1) : r.toFixed(2)}%`;
      };
      const angleErr = (l: ArrayLike<number>, r: ArrayLike<number>): string =>
        `${Math.max(maxAbsDifference(l, p.anglesLeftDeg), maxAbsDifference(r, p.anglesRightDeg)).toExponential(1)} deg`;
      rows.push(
        `| ${m} x ${n} | ${kind} (rel. ${o.updateRel}) | ${p.nss.toExponential(3)} | ${pct(indepNss)} | ${pct(shNss)} (cached ${pct(normalizedShift(cached.base.S, cached.checkpoint.S, kk))}) | ${angleErr(indepLeft, indepRight)} | ${angleErr(sh.anglesLeftDeg, sh.anglesRightDeg)} | ${sh.baseConvergence?.iterations}, ${sh.checkpointConvergence.iterations} | ${tIndep.toFixed(2)} | ${tCold.toFixed(2)} | ${tCached.toFixed(2)} |`,
      );
      console.error(rows[rows.length - 1]);
    }
  }
  await backend.dispose();
  console.log(rows.join('\n'));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
