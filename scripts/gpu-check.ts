/**
 * GPU check (run through scripts/gpu-check.sh on a machine with an NVIDIA GPU):
 *  1. the CUDA execution provider is picked (device 'cuda' must start, 'auto' must choose it);
 *  2. its results equal the CPU's within tolerance: products, and the whole spectral pass of a
 *     1536 x 8960 and a 1536 x 1536 pair (angles, NSS, overlaps, off-principal energy);
 *  3. timings of both, as ratios.
 * Exits 0 when CUDA is used and agrees, 1 when it disagrees, 2 when CUDA cannot be used.
 */
import { createBackend, type ComputeBackend } from '../src/compute/backend';
import { analyzePair, type TensorPair } from '../src/analysis/spectral';
import { DEFAULT_SETTINGS, type TensorSpectral } from '../src/report/schema';
import { Rng } from '../src/linalg/random';

function pairOf(rng: Rng, m: number, n: number): TensorPair {
  // A decaying spectrum (as in trained weights): low-rank structure plus noise, and a sparse update.
  const w0 = new Float32Array(m * n);
  rng.fillGaussian(w0);
  const r = 32;
  const a = new Float32Array(m * r);
  const b = new Float32Array(r * n);
  rng.fillGaussian(a);
  rng.fillGaussian(b);
  for (let i = 0; i < m; i++)
    for (let t = 0; t < r; t++) {
      const s = a[i * r + t] * (4 / (1 + t));
      for (let j = 0; j < n; j++) w0[i * n + j] += s * b[t * n + j];
    }
  for (let i = 0; i < w0.length; i++) w0[i] *= 0.02;
  const w1 = Float32Array.from(w0);
  const mask = new Uint8Array(m * n);
  let changed = 0;
  for (let i = 0; i < w1.length; i++) {
    if (rng.nextUniform() < 0.4) {
      w1[i] += 1e-4 * rng.nextGaussian();
      mask[i] = 1;
      changed++;
    }
  }
  return { name: `${m}x${n}`, m, n, w0, w1, mask, changed, dtype0: 'F32', dtype1: 'F32', nonFinite: 0 };
}

function compare(cpu: TensorSpectral, gpu: TensorSpectral): string[] {
  const bad: string[] = [];
  const close = (name: string, x: number | null, y: number | null, abs: number, rel: number): void => {
    if (x === null || y === null) {
      if (x !== y) bad.push(`${name}: ${x} vs ${y}`);
      return;
    }
    if (Math.abs(x - y) > abs + rel * Math.abs(x)) bad.push(`${name}: cpu ${x} vs cuda ${y}`);
  };
  close('principalAngleMaxDeg', cpu.principalAngleMaxDeg, gpu.principalAngleMaxDeg, 0.05, 0.02);
  close('nss', cpu.nss, gpu.nss, 1e-6, 1e-2);
  close('offPrincipalEnergy', cpu.offPrincipalEnergy, gpu.offPrincipalEnergy, 1e-4, 1e-3);
  close('overlapPrincipal', cpu.overlapPrincipal, gpu.overlapPrincipal, 2e-3, 0);
  close('overlapLowMagnitude', cpu.overlapLowMagnitude, gpu.overlapLowMagnitude, 1e-9, 0);
  close('updateSpectralNorm', cpu.updateSpectralNorm, gpu.updateSpectralNorm, 0, 1e-3);
  for (let i = 0; i < Math.min(16, cpu.sigmaBase.length); i++) close(`sigmaBase[${i}]`, cpu.sigmaBase[i], gpu.sigmaBase[i], 0, 1e-4);
  return bad;
}

async function timed(backend: ComputeBackend, p: TensorPair): Promise<{ s: TensorSpectral; seconds: number }> {
  await analyzePair(backend, p, DEFAULT_SETTINGS);
  const t = process.hrtime.bigint();
  const r = await analyzePair(backend, p, DEFAULT_SETTINGS);
  return { s: r.spectral, seconds: Number(process.hrtime.bigint() - t) / 1e9 };
}

async function main(): Promise<number> {
  process.env.ORT_DISABLE_TELEMETRY = '1';
  let cuda: ComputeBackend;
  try {
    cuda = await createBackend({ device: 'cuda' });
  } catch (e) {
    console.error(`gpu-check: CUDA cannot be used: ${(e as Error).message}`);
    return 2;
  }
  const logs: string[] = [];
  const auto = await createBackend({ device: 'auto', log: (l) => logs.push(l) });
  console.log(`device 'cuda' -> ${cuda.name}; device 'auto' -> ${auto.name}${logs.length ? ` (${logs.join('; ')})` : ''}`);
  await auto.dispose();
  const cpu = await createBackend({ device: 'cpu' });
  const rng = new Rng(2024);
  let failures = 0;
  for (const [m, n] of [
    [1536, 8960],
    [1536, 1536],
  ] as const) {
    const p = pairOf(rng, m, n);
    const c = await timed(cpu, p);
    const g = await timed(cuda, p);
    const bad = compare(c.s, g.s);
    failures += bad.length;
    console.log(
      `${m} x ${n}: cpu ${c.seconds.toFixed(2)} s, cuda ${g.seconds.toFixed(2)} s (${(c.seconds / g.seconds).toFixed(1)}x); angle ${g.s.principalAngleMaxDeg.toFixed(3)} deg, NSS ${g.s.nss.toExponential(3)}: ${bad.length ? `MISMATCH ${bad.join('; ')}` : 'equal within tolerance'}`,
    );
  }
  await cpu.dispose();
  await cuda.dispose();
  return failures ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(e.stack ?? e.message);
    process.exit(1);
  },
);
