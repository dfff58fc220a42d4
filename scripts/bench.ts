/**
 * `npm run bench`: generates, deterministically in a temp folder, a bf16 base and checkpoint shaped like
 * Qwen2.5-1.5B (28 layers, hidden 1536, intermediate 8960, 12 heads / 2 KV heads, vocab 151936) with
 * RL-like sparse, low-magnitude updates, then measures in the same run, as ratios against references
 * on the same machine:
 *   - the diff pass (M1, norms, M4) in GB/s, against `cat` of the same files (warm cache) and numpy;
 *   - the spectral pass for one 1536 x 8960 and one 1536 x 1536 pair, against a numpy randomized SVD with
 *     the same k, oversampling and power iterations doing the same measurements;
 *   - the whole Three-Gate report (`gatescope analyze`) of the same shape with LLM-like spectra in its
 *     linear weights (planted pairs), cold and with the base subspaces cached: wall time and peak RSS.
 * Exits non-zero only when it cannot run. Options: --layers N (fewer layers for a quick run), --keep DIR
 * (generate once, reuse), --only diff|spectral|report|steps (one part, for profiling), --device auto|cpu|cuda
 * (for the whole report), --analyze-args "--k-spectrum 64 ..." (extra options of that run).
 * --only shards: one checkpoint of the LLM-like model in one process, then through `gatescope slurm
 * analyze --wait` on 1, 2 and 4 tasks (SLURM_CONF or the system's Slurm), each merge checked equal.
 * --only adapter: a rank-16 LoRA adapter on every linear weight of the base: the diff pass over its merged
 * view (the merge computed on read) on one and on two threads, against the same pass over the dense merged
 * checkpoint written out; and the spectral pass on one factored weight against the same weight dense.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSafetensors, float32ToBf16Bytes, type TensorSpec } from '../src/formats/writer';
import { plantedPair, RL_SIZED } from '../src/examples/planted-spectra';
import { qwenTensorSpecs, qwenConfig, type SyntheticShape } from '../src/examples/synthetic';
import { Checkpoint } from '../src/formats/checkpoint';
import { diffCheckpoints } from '../src/analysis/diff';
import { defaultThreads, diffCheckpointsParallel } from '../src/analysis/diff-parallel';
import { openCheckpointFor, MergedWeight } from '../src/analysis/adapter';
import { Rng } from '../src/linalg/random';
import { analyzePair, readPair } from '../src/analysis/spectral';
import { createBackend } from '../src/compute/backend';
import { DEFAULT_SETTINGS } from '../src/report/schema';
import { AnalysisPlan } from '../src/analysis/plan';

const QWEN_1_5B: SyntheticShape = { hidden: 1536, intermediate: 8960, layers: 28, heads: 12, kvHeads: 2, vocab: 151936 };

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** xorshift32: cheap and deterministic; statistical quality is irrelevant for timing data. */
function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** bf16 bit patterns of N(0, sigma) at 65536 evenly spaced quantiles: indexing it with a random u16 samples it. */
function normalTable(mean: number, sigma: number): Uint16Array {
  const t = new Uint16Array(65536);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < 65536; i++) {
    const p = (i + 0.5) / 65536;
    f[0] = mean + sigma * inverseNormal(p);
    t[i] = ((u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return t;
}

/** Inverse of the standard normal CDF (Acklam's rational approximation, relative error below 1.2e-9). */
function inverseNormal(p: number): number {
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - lo) return -inverseNormal(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

const CHUNK = 1 << 22;

/**
 * Tensor bytes, chunk by chunk. The checkpoint regenerates the base's values from the same per-tensor seed
 * and moves a share of them by 1-2 bf16 ULPs up or down: more often for small magnitudes and on every
 * 5th row (RL-like: sparse, low-magnitude, row-striped).
 */
function* tensorBytes(spec: TensorSpec, index: number, checkpoint: boolean, updateSeed = 0x27d4eb2f): Generator<Uint8Array> {
  const numel = spec.shape.reduce((a, b) => a * b, 1);
  const cols = spec.shape.length === 2 ? spec.shape[1] : numel;
  const isNorm = spec.shape.length === 1 && !spec.name.endsWith('bias');
  const table = isNorm ? normTable : weightTable;
  const rand = xorshift(0x9e3779b9 ^ (index * 0x85ebca6b));
  const upd = xorshift(updateSeed ^ (index * 0x165667b1));
  for (let start = 0; start < numel; start += CHUNK) {
    const n = Math.min(CHUNK, numel - start);
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = table[rand() & 0xffff];
    if (checkpoint) {
      for (let i = 0; i < n; i++) {
        const r = upd();
        const bits = out[i];
        const exp = (bits >>> 7) & 0xff;
        const row = Math.floor((start + i) / cols);
        // Threshold out of 256: small weights move more, and striped rows more still.
        const threshold = (exp < 119 ? 150 : exp < 121 ? 110 : 60) + (row % 5 === 0 ? 60 : 0);
        // One or two ULPs, up or down in magnitude with equal odds: a direction-blind step (zeros stay put).
        if ((r & 0xff) < threshold && (bits & 0x7fff) !== 0) out[i] = (bits + ((r >>> 8) & 1 ? 1 : -1) * (1 + ((r >>> 9) & 1))) & 0xffff;
      }
    }
    yield new Uint8Array(out.buffer);
  }
}

const weightTable = normalTable(0, 0.02);
const normTable = normalTable(1, 0.05);

async function generate(dir: string, shape: SyntheticShape): Promise<{ base: string; ckpt: string; bytes: number }> {
  const specs = qwenTensorSpecs(shape);
  const index = new Map(specs.map((s, i) => [s.name, i]));
  const base = path.join(dir, 'base');
  const ckpt = path.join(dir, 'checkpoint-100');
  for (const [folder, isCkpt] of [
    [base, false],
    [ckpt, true],
  ] as const) {
    await fsp.mkdir(folder, { recursive: true });
    await fsp.writeFile(path.join(folder, 'config.json'), JSON.stringify(qwenConfig(shape, isCkpt ? '../base' : undefined), null, 2));
    await writeSafetensors(path.join(folder, 'model.safetensors'), specs, (s) => tensorBytes(s, index.get(s.name)!, isCkpt), { metadata: { format: 'pt' } });
  }
  const bytes = (await fsp.stat(path.join(base, 'model.safetensors'))).size + (await fsp.stat(path.join(ckpt, 'model.safetensors'))).size;
  return { base, ckpt, bytes };
}

function seconds(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function havePythonNumpy(): string | null {
  for (const py of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(py, ['-c', 'import numpy; print(numpy.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  return null;
}

/** numpy in the same conditions: the OpenBLAS overrides some machines set for old builds slow a current numpy. */
function pythonEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return env;
}

async function main(): Promise<void> {
  const layers = Number(arg('--layers') ?? QWEN_1_5B.layers);
  const shape = { ...QWEN_1_5B, layers };
  const keep = arg('--keep');
  const dir = keep ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'gatescope-bench-')));
  const lines: string[] = [];
  const say = (s: string): void => {
    console.log(s);
    lines.push(s);
  };
  say(`machine: ${os.cpus()[0]?.model ?? '?'} x ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`);
  say(`model: Qwen2.5-1.5B shape, ${layers} layers, bf16, RL-like sparse low-magnitude update`);
  const t0 = process.hrtime.bigint();
  const only = arg('--only');
  const want = (part: string): boolean => only === undefined || only === part;
  if (only === 'spectral' || only === 'report' || only === 'shards') {
    // None needs the diff benchmark's model.
    if (only === 'spectral') await benchSpectral(dir, say);
    else if (only === 'report') await benchReport(await generateLlmLike(dir, shape, say), layers, say);
    else await benchShards(await generateLlmLike(dir, shape, say), layers, say);
    if (!keep) await fsp.rm(dir, { recursive: true, force: true });
    return;
  }
  const exists = keep
    ? await fsp.stat(path.join(dir, 'checkpoint-100', 'model.safetensors')).then(
        () => true,
        () => false,
      )
    : false;
  const gen = exists
    ? { base: path.join(dir, 'base'), ckpt: path.join(dir, 'checkpoint-100'), bytes: (await fsp.stat(path.join(dir, 'base', 'model.safetensors'))).size * 2 }
    : await generate(dir, shape);
  say(`generated ${(gen.bytes / 1e9).toFixed(2)} GB in ${seconds(t0).toFixed(1)} s (${dir})`);
  const files = [path.join(gen.base, 'model.safetensors'), path.join(gen.ckpt, 'model.safetensors')];

  if (only === 'adapter') {
    await benchAdapter(gen, dir, say);
    if (!keep) await fsp.rm(dir, { recursive: true, force: true });
    return;
  }
  if (want('diff')) await benchDiff(gen, files, say);
  if (want('spectral')) await benchSpectral(dir, say);
  if (want('report')) await benchReport(await generateLlmLike(dir, shape, say), layers, say);
  if (want('steps')) await benchSteps(gen, dir, shape, say);
  if (!keep) await fsp.rm(dir, { recursive: true, force: true });
}

type Say = (s: string) => void;
interface Generated {
  base: string;
  ckpt: string;
  bytes: number;
}

async function benchDiff(gen: Generated, files: string[], say: Say): Promise<void> {
  let t0: bigint;
  // Read rate: cat to /dev/null, warm cache (second run).
  execFileSync('sh', ['-c', `cat ${files.map((f) => `'${f}'`).join(' ')} > /dev/null`]);
  t0 = process.hrtime.bigint();
  execFileSync('sh', ['-c', `cat ${files.map((f) => `'${f}'`).join(' ')} > /dev/null`]);
  const catRate = gen.bytes / 1e9 / seconds(t0);

  // The diff pass in this process on one thread, best of two: the JavaScript reference kernel, then the
  // WebAssembly SIMD kernel the passes use.
  const inProcess = async (kernel: 'js' | 'auto'): Promise<{ rate: number; unchanged: number }> => {
    let rate = 0;
    let unchanged = 0;
    for (let rep = 0; rep < 2; rep++) {
      const b = await Checkpoint.open(gen.base);
      const c = await Checkpoint.open(gen.ckpt);
      t0 = process.hrtime.bigint();
      const r = await diffCheckpoints(AnalysisPlan.of(b, c, 'diff'), { eta: DEFAULT_SETTINGS.eta, kernel });
      rate = Math.max(rate, gen.bytes / 1e9 / seconds(t0));
      let ch = 0;
      let n = 0;
      for (const t of r.tensors) {
        ch += t.changed;
        n += t.numel - t.nonFinite;
      }
      unchanged = 1 - ch / n;
      await b.close();
      await c.close();
    }
    return { rate, unchanged };
  };
  const js = await inProcess('js');
  const simd = await inProcess('auto');
  // The whole CLI process, as a user runs it (start-up, headers, worker threads, the report), best of three.
  const cli = path.join(__dirname, '..', 'bin', 'gatescope.js');
  let cliSeconds = Infinity;
  let cliRssMb = 0;
  for (let rep = 0; rep < 3; rep++) {
    t0 = process.hrtime.bigint();
    const run = spawnSync(
      '/usr/bin/time',
      ['-f', '%M', process.execPath, cli, 'diff', gen.base, gen.ckpt, '--quiet', '--json', path.join(os.tmpdir(), `gatescope-bench-diff-${process.pid}.json`)],
      { encoding: 'utf8' },
    );
    const s = seconds(t0);
    if (run.status !== 0) throw new Error(`gatescope diff failed: ${run.stderr.slice(-500)}`);
    cliSeconds = Math.min(cliSeconds, s);
    cliRssMb = Math.max(cliRssMb, Number(run.stderr.trim().split('\n').pop()) / 1024);
  }
  await fsp.rm(path.join(os.tmpdir(), `gatescope-bench-diff-${process.pid}.json`), { force: true });
  const cliRate = gen.bytes / 1e9 / cliSeconds;
  say('');
  say(`diff pass (M1, norms, M4, ULP median), ${(gen.bytes / 1e9).toFixed(2)} GB, unchanged ${(simd.unchanged * 100).toFixed(2)}%:`);
  say(`  one thread, JavaScript reference kernel: ${js.rate.toFixed(2)} GB/s`);
  say(`  one thread, WebAssembly SIMD kernel: ${simd.rate.toFixed(2)} GB/s -> ${(simd.rate / js.rate).toFixed(2)}x the reference kernel`);
  say(
    `  gatescope diff (whole CLI process, ${defaultThreads()} threads): ${cliSeconds.toFixed(2)} s, ${cliRate.toFixed(2)} GB/s, peak RSS ${cliRssMb.toFixed(0)} MB`,
  );
  say(`  read rate (cat, warm cache): ${catRate.toFixed(2)} GB/s -> the CLI at ${((cliRate / catRate) * 100).toFixed(0)}% of it`);
  const diffRate = cliRate;
  const py = havePythonNumpy();
  if (py) {
    const ref = JSON.parse(
      execFileSync(py, [path.join(__dirname, '..', 'scripts', 'bench-reference.py'), 'diff', ...files], {
        encoding: 'utf8',
        env: pythonEnv(),
        maxBuffer: 1 << 20,
      }),
    ) as { seconds: number; unchanged: number };
    const refRate = gen.bytes / 1e9 / ref.seconds;
    say(
      `  numpy reference: ${refRate.toFixed(2)} GB/s (unchanged ${(ref.unchanged * 100).toFixed(2)}%) -> the CLI ${(diffRate / refRate).toFixed(2)}x, one SIMD thread ${(simd.rate / refRate).toFixed(2)}x`,
    );
  } else say('  numpy reference: skipped (no python3 with numpy; apt-get install python3-numpy)');
}

/**
 * A PEFT adapter (rank 16, alpha 32, F32 factors) on every linear weight of the generated base, and the
 * dense checkpoint its merge makes, written out through the merged view. The diff pass over the adapter
 * (merge on read) against the same pass over the dense merge: what computing the merge costs, and what the
 * second thread buys. Rates are of the bytes compared (base + merged model), as for the dense diff.
 */
async function benchAdapter(gen: Generated, dir: string, say: Say): Promise<void> {
  const adapterDir = path.join(dir, 'lora', 'checkpoint-100');
  const mergedDir = path.join(dir, 'lora-merged');
  const r = 16;
  const base = await Checkpoint.open(gen.base);
  try {
    const linear = [...base.tensors.values()].filter((t) => /\.(q|k|v|o|gate|up|down)_proj\.weight$/.test(t.info.name)).map((t) => t.info);
    const rng = new Rng(99);
    const specs: TensorSpec[] = [];
    const data = new Map<string, Float32Array>();
    for (const t of linear) {
      const [m, n] = t.shape;
      const module = t.name.replace(/\.weight$/, '');
      const a = new Float32Array(r * n);
      const b = new Float32Array(m * r);
      rng.fillGaussian(a);
      rng.fillGaussian(b);
      // An RL-sized update: B small against A's unit entries, as after a few hundred steps from B = 0.
      for (let i = 0; i < a.length; i++) a[i] /= Math.sqrt(n);
      for (let i = 0; i < b.length; i++) b[i] *= 1e-4;
      for (const [suffix, shape, values] of [
        ['lora_A', [r, n], a],
        ['lora_B', [m, r], b],
      ] as const) {
        const name = `base_model.model.${module}.${suffix}.weight`;
        specs.push({ name, dtype: 'F32', shape: [...shape] });
        data.set(name, values);
      }
    }
    await fsp.mkdir(adapterDir, { recursive: true });
    await writeSafetensors(path.join(adapterDir, 'adapter_model.safetensors'), specs, (sp) => new Uint8Array(data.get(sp.name)!.buffer));
    await fsp.writeFile(
      path.join(adapterDir, 'adapter_config.json'),
      JSON.stringify({
        peft_type: 'LORA',
        r,
        lora_alpha: 2 * r,
        target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
      }),
    );
  } finally {
    await base.close();
  }
  // The dense merge, written through the view (the same bytes merging would store).
  {
    const b = await Checkpoint.open(gen.base);
    const view = await openCheckpointFor(b, adapterDir);
    const refs = [...view.tensors.values()];
    await fsp.mkdir(mergedDir, { recursive: true });
    await fsp.copyFile(path.join(gen.base, 'config.json'), path.join(mergedDir, 'config.json'));
    const byName = new Map(refs.map((x) => [x.info.name, x]));
    await writeSafetensors(
      path.join(mergedDir, 'model.safetensors'),
      refs.map((x) => ({ name: x.info.name, dtype: x.info.dtype, shape: x.info.shape })),
      async function* (sp) {
        const ref = byName.get(sp.name)!;
        const step = 1 << 22;
        for (let i = 0; i < ref.info.numel; i += step) yield await ref.file.readElements(ref.info, i, Math.min(step, ref.info.numel - i));
      },
    );
    await view.close();
    await b.close();
  }
  const bytes = 2 * (await fsp.stat(path.join(gen.base, 'model.safetensors'))).size;
  const rate = async (ckptDir: string, threads: number): Promise<{ rate: number; changed: number }> => {
    let best = 0;
    let changed = 0;
    for (let rep = 0; rep < 2; rep++) {
      const b = await Checkpoint.open(gen.base);
      const c = await openCheckpointFor(b, ckptDir);
      const t0 = process.hrtime.bigint();
      const res = await diffCheckpointsParallel(AnalysisPlan.of(b, c, 'diff'), { eta: DEFAULT_SETTINGS.eta, threads });
      best = Math.max(best, bytes / 1e9 / seconds(t0));
      changed = res.tensors.reduce((x, t) => x + t.changed, 0);
      await c.close();
      await b.close();
    }
    return { rate: best, changed };
  };
  const dense1 = await rate(mergedDir, 1);
  const lora1 = await rate(adapterDir, 1);
  const dense2 = await rate(mergedDir, 2);
  const lora2 = await rate(adapterDir, 2);
  if (lora1.changed !== dense1.changed || lora2.changed !== dense1.changed)
    throw new Error(`the merged view and the dense merge disagree: ${lora1.changed} / ${lora2.changed} vs ${dense1.changed} changed`);
  say('');
  say(
    `LoRA adapter (rank ${r} on every linear weight), diff pass over ${(bytes / 1e9).toFixed(2)} GB (base + merged model), ${dense1.changed} entries changed by the merge:`,
  );
  say(`  dense merged checkpoint: ${dense1.rate.toFixed(2)} GB/s on one thread, ${dense2.rate.toFixed(2)} GB/s on two`);
  say(
    `  adapter, merge computed on read: ${lora1.rate.toFixed(2)} GB/s on one thread (${(lora1.rate / dense1.rate).toFixed(2)}x the dense merge), ` +
      `${lora2.rate.toFixed(2)} GB/s on two (${(lora2.rate / lora1.rate).toFixed(2)}x one thread, ${(lora2.rate / dense2.rate).toFixed(2)}x the dense merge)`,
  );

  // The spectral pass on the first 8960 x 1536 weight: factored update against the same weight merged densely.
  const backend = await createBackend({ device: 'cpu' });
  try {
    const b = await Checkpoint.open(gen.base);
    const view = await openCheckpointFor(b, adapterDir);
    const m = await Checkpoint.open(mergedDir);
    const name = [...view.tensors.keys()].find((n) => n.endsWith('mlp.down_proj.weight'))!;
    const factored = await readPair(b.tensors.get(name)!, view.tensors.get(name)!, DEFAULT_SETTINGS.eta);
    const dense = await readPair(b.tensors.get(name)!, m.tensors.get(name)!, DEFAULT_SETTINGS.eta);
    if (!(view.tensors.get(name)!.file instanceof MergedWeight) || !factored.update) throw new Error('the adapter weight has no factors');
    await analyzePair(backend, dense, DEFAULT_SETTINGS); // warm the sessions
    const time = async (p: typeof dense): Promise<number> => {
      let best = Infinity;
      for (let rep = 0; rep < 2; rep++) {
        const t0 = process.hrtime.bigint();
        await analyzePair(backend, p, DEFAULT_SETTINGS);
        best = Math.min(best, seconds(t0));
      }
      return best;
    };
    const td = await time(dense);
    const tf = await time(factored);
    say(
      `  spectral pass on ${name} [${factored.m} x ${factored.n}], base subspace computed each time: the bf16 merge ${td.toFixed(2)} s, ` +
        `the factored update ${tf.toFixed(2)} s (${(td / tf).toFixed(2)}x)`,
    );
    await m.close();
    await view.close();
    await b.close();
  } finally {
    await backend.dispose();
  }
}

/**
 * The step-to-step pass over a run of base -> checkpoint-100 -> checkpoint-200 (each checkpoint read once),
 * against the diff pass run on each consecutive pair (each inner checkpoint read twice), same process.
 */
async function benchSteps(gen: Generated, dir: string, shape: SyntheticShape, say: Say): Promise<void> {
  const { stepsOfRun } = await import('../src/analysis/steps');
  const run = path.join(dir, 'steps-run');
  const c100 = path.join(run, 'checkpoint-100');
  const c200 = path.join(run, 'checkpoint-200');
  if (
    !(await fsp.stat(path.join(c200, 'model.safetensors')).then(
      () => true,
      () => false,
    ))
  ) {
    await fsp.mkdir(c100, { recursive: true });
    await fsp
      .link(path.join(gen.ckpt, 'model.safetensors'), path.join(c100, 'model.safetensors'))
      .catch(() => fsp.copyFile(path.join(gen.ckpt, 'model.safetensors'), path.join(c100, 'model.safetensors')));
    const specs = qwenTensorSpecs(shape);
    const index = new Map(specs.map((sp, i) => [sp.name, i]));
    await fsp.mkdir(c200, { recursive: true });
    await writeSafetensors(path.join(c200, 'model.safetensors'), specs, (sp) => tensorBytes(sp, index.get(sp.name)!, true, 0x51ed270b), {
      metadata: { format: 'pt' },
    });
    for (const c of [c100, c200]) await fsp.writeFile(path.join(c, 'config.json'), JSON.stringify(qwenConfig(shape, '../../base'), null, 2));
  }
  const fileBytes = (await fsp.stat(path.join(gen.base, 'model.safetensors'))).size;
  const chain = [gen.base, c100, c200];
  let stepsSeconds = Infinity;
  let xor = 0;
  let dense = 0;
  for (let rep = 0; rep < 2; rep++) {
    const t0 = process.hrtime.bigint();
    const r = await stepsOfRun(run, { base: gen.base, learningRate: 1e-6 });
    stepsSeconds = Math.min(stepsSeconds, seconds(t0));
    xor = r.steps[1].payload.xorZstd ?? 0;
    dense = r.steps[1].payload.dense;
  }
  let diffSeconds = Infinity;
  for (let rep = 0; rep < 2; rep++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i + 1 < chain.length; i++) {
      const b = await Checkpoint.open(chain[i]);
      const c = await Checkpoint.open(chain[i + 1]);
      await diffCheckpoints(AnalysisPlan.of(b, c, 'diff'), { eta: DEFAULT_SETTINGS.eta });
      await b.close();
      await c.close();
    }
    diffSeconds = Math.min(diffSeconds, seconds(t0));
  }
  say('');
  say(
    `steps pass, 3 checkpoints (2 steps), ${((3 * fileBytes) / 1e9).toFixed(2)} GB read once: ${stepsSeconds.toFixed(1)} s, ${((3 * fileBytes) / 1e9 / stepsSeconds).toFixed(2)} GB/s`,
  );
  say(
    `  diff pass on each consecutive pair (4 reads): ${diffSeconds.toFixed(1)} s -> steps ${(diffSeconds / stepsSeconds).toFixed(2)}x the pairwise diffs (which give no payloads)`,
  );
  say(`  second step: XOR+zstd ${(xor / 2 ** 20).toFixed(0)} MiB of ${(dense / 2 ** 20).toFixed(0)} MiB dense`);
}

/**
 * The spectral pass on two pairs with LLM-like spectra (power-law singular values, no clean gaps; see
 * src/examples/planted-spectra.ts) stored in bf16 like real checkpoints: cold (the base's subspace
 * computed), with the base's subspace cached (every later checkpoint of the base), and the numpy script.
 */
async function benchSpectral(dir: string, say: Say): Promise<void> {
  const py = havePythonNumpy();
  say('');
  const settings = DEFAULT_SETTINGS;
  say(
    `spectral pass (k=${settings.k}, top ${settings.kSpectrum} singular values, oversample ${settings.oversample}, ${settings.powerIterations} power iterations, M5-M8, the verdict's nulls), LLM-like spectra, bf16:`,
  );
  const backend = await createBackend({ device: (arg('--device') as 'auto' | 'cpu' | 'cuda' | undefined) ?? 'auto', log: (l) => say(`  ${l}`) });
  const shapes = [
    ['model.layers.0.mlp.up_proj.weight', 8960, 1536],
    ['model.layers.0.self_attn.q_proj.weight', 1536, 1536],
  ] as const;
  const sdir = path.join(dir, 'llm-spectra');
  const files = [path.join(sdir, 'base.safetensors'), path.join(sdir, 'checkpoint.safetensors')];
  if (
    !(await fsp.stat(files[1]).then(
      () => true,
      () => false,
    ))
  ) {
    const planted = new Map<string, [Float32Array, Float32Array]>();
    for (const [name, m, n] of shapes) {
      const p = await plantedPair(backend, { m, n, decay: 0.5, k: settings.k, kk: settings.kSpectrum, seed: m + n, ...RL_SIZED });
      planted.set(name, [p.W0.data, p.W1.data]);
    }
    const specs = shapes.map(([name, m, n]) => ({ name, dtype: 'BF16' as const, shape: [m, n] }));
    await writeSafetensors(files[0], specs, (sp) => float32ToBf16Bytes(planted.get(sp.name)![0]));
    await writeSafetensors(files[1], specs, (sp) => float32ToBf16Bytes(planted.get(sp.name)![1]));
  }
  const b = await Checkpoint.open(files[0]);
  const c = await Checkpoint.open(files[1]);
  for (const [name] of shapes) {
    const pair = await readPair(b.tensors.get(name)!, c.tensors.get(name)!, settings.eta);
    await analyzePair(backend, pair, settings); // warm sessions
    const stored: { data?: Float32Array } = {};
    const basis = { get: async () => stored.data, put: async (d: Float32Array) => void (stored.data = d) };
    let t0 = process.hrtime.bigint();
    const phases: Record<string, number> = {};
    const r = await analyzePair(backend, pair, settings, { timings: phases, basis });
    const cold = seconds(t0);
    t0 = process.hrtime.bigint();
    const cachedPhases: Record<string, number> = {};
    await analyzePair(backend, pair, settings, { timings: cachedPhases, basis });
    const cached = seconds(t0);
    const shapeText = `${pair.m} x ${pair.n}`;
    let refText = 'numpy reference skipped';
    if (py) {
      const ref = JSON.parse(
        execFileSync(
          py,
          [
            path.join(__dirname, '..', 'scripts', 'bench-reference.py'),
            'spectral',
            ...files,
            name,
            String(settings.kSpectrum),
            String(settings.k),
            String(settings.oversample),
            String(settings.powerIterations),
            String(settings.alpha),
          ],
          { encoding: 'utf8', env: pythonEnv() },
        ),
      ) as Record<string, number>;
      refText = `numpy ${ref.seconds.toFixed(2)} s -> cold ${(ref.seconds / cold).toFixed(2)}x, base cached ${(ref.seconds / cached).toFixed(2)}x; numpy angle ${ref.principalAngleMaxDeg.toFixed(3)} deg, NSS ${ref.nss.toExponential(3)}`;
    }
    const sub = r.spectral.subspace;
    say(
      `  ${shapeText}: cold ${cold.toFixed(2)} s, base cached ${cached.toFixed(2)} s (angle ${r.spectral.principalAngleMaxDeg.toFixed(3)} deg, NSS ${r.spectral.nss.toExponential(3)}${sub ? `, iterations ${sub.baseIterations} + ${sub.checkpointIterations}, basis ${sub.basisWidth}` : ''}); ${refText}`,
    );
    const fmt = (ph: Record<string, number>): string =>
      Object.entries(ph)
        .map(([k, v]) => `${k} ${(v / 1000).toFixed(2)} s`)
        .join(', ');
    say(`    phases cold: ${fmt(phases)}`);
    say(`    phases cached: ${fmt(cachedPhases)}`);
  }
  await b.close();
  await c.close();
  await backend.dispose();
}

/**
 * The model of the diff benchmark with LLM-like spectra in its 196 linear weights: each (base, checkpoint)
 * pair is a planted pair (power-law singular values, an RL-sized update of known geometry, stored in bf16),
 * the embedding, head and norms as in the diff benchmark. Gaussian weights would have a flat spectrum on
 * which no top-k subspace is defined, and every weight would run the subspace iteration to its cap.
 */
async function generateLlmLike(dir: string, shape: SyntheticShape, say: Say): Promise<Generated> {
  const root = path.join(dir, 'llm-model');
  const base = path.join(root, 'base');
  const ckpt = path.join(root, 'checkpoint-100');
  const done = path.join(ckpt, 'model.safetensors');
  const bytesOf = async (): Promise<number> => (await fsp.stat(path.join(base, 'model.safetensors'))).size + (await fsp.stat(done)).size;
  if (
    await fsp.stat(done).then(
      () => true,
      () => false,
    )
  )
    return { base, ckpt, bytes: await bytesOf() };
  const t0 = process.hrtime.bigint();
  const backend = await createBackend({ device: 'cpu' });
  const specs = qwenTensorSpecs(shape);
  const index = new Map(specs.map((sp, i) => [sp.name, i]));
  const linear = (sp: TensorSpec): boolean => sp.shape.length === 2 && sp.name.endsWith('_proj.weight');
  // Both files are written at once, tensor by tensor in the same order: each pair is planted once, its
  // base half written by one writer and its checkpoint half by the other, so about one pair is in memory.
  const pairs = new Map<string, Promise<[Uint8Array, Uint8Array]>>();
  const pairOf = (sp: TensorSpec): Promise<[Uint8Array, Uint8Array]> => {
    let p = pairs.get(sp.name);
    if (!p) {
      const [m, n] = sp.shape;
      p = plantedPair(backend, {
        m,
        n,
        decay: 0.5,
        k: DEFAULT_SETTINGS.k,
        kk: Math.min(DEFAULT_SETTINGS.kSpectrum, m, n),
        seed: 1000 + index.get(sp.name)!,
        ...RL_SIZED,
      }).then((pp) => [float32ToBf16Bytes(pp.W0.data), float32ToBf16Bytes(pp.W1.data)] as [Uint8Array, Uint8Array]);
      pairs.set(sp.name, p);
    }
    return p;
  };
  const source =
    (isCkpt: boolean) =>
    (sp: TensorSpec): Iterable<Uint8Array> | AsyncIterable<Uint8Array> => {
      if (!linear(sp)) return tensorBytes(sp, index.get(sp.name)!, isCkpt);
      return (async function* () {
        const pair = await pairOf(sp);
        yield pair[isCkpt ? 1 : 0];
        if (isCkpt) pairs.delete(sp.name);
      })();
    };
  for (const [folder, isCkpt] of [
    [base, false],
    [ckpt, true],
  ] as const) {
    await fsp.mkdir(folder, { recursive: true });
    await fsp.writeFile(path.join(folder, 'config.json'), JSON.stringify(qwenConfig(shape, isCkpt ? '../base' : undefined), null, 2));
  }
  await Promise.all(
    [base, ckpt].map((folder, i) => writeSafetensors(path.join(folder, 'model.safetensors'), specs, source(i === 1), { metadata: { format: 'pt' } })),
  );
  await backend.dispose();
  const bytes = await bytesOf();
  say(
    `generated the LLM-like model (${specs.filter(linear).length} planted linear pairs), ${(bytes / 1e9).toFixed(2)} GB in ${seconds(t0).toFixed(1)} s (${root})`,
  );
  return { base, ckpt, bytes };
}

async function benchReport(gen: Generated, layers: number, say: Say): Promise<void> {
  // The whole report through the CLI, as a user runs it, with peak RSS from /usr/bin/time: first with an
  // empty base cache (cold: every base subspace computed and stored), then again (every later checkpoint of
  // this base: the base subspaces come from the cache).
  say('');
  const cli = path.join(__dirname, '..', 'bin', 'gatescope.js');
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'gatescope-bench-report-'));
  const cacheDir = path.join(work, 'cache');
  const device = arg('--device') ?? 'auto';
  const extra = (arg('--analyze-args') ?? '').split(' ').filter(Boolean);
  try {
    for (const run of ['cold', 'base cached'] as const) {
      const out = path.join(work, `report-${run === 'cold' ? 'cold' : 'cached'}.json`);
      const t0 = process.hrtime.bigint();
      const timed = spawnSync(
        '/usr/bin/time',
        ['-f', '%M', process.execPath, cli, 'analyze', gen.base, gen.ckpt, '--quiet', '--device', device, '--cache-dir', cacheDir, ...extra, '--json', out],
        { encoding: 'utf8', maxBuffer: 1 << 26 },
      );
      const wall = seconds(t0);
      if (timed.status !== 0) {
        say(`whole report (${run}): failed (${timed.stderr.slice(-500)})`);
        return;
      }
      const rssKb = Number(timed.stderr.trim().split('\n').pop());
      const report = JSON.parse(await fsp.readFile(out, 'utf8')) as {
        verdict?: { label: string };
        baseBases?: { fromCache: number; computed: number };
        timings?: { diffMs: number; spectralMs: number };
      };
      const bb = report.baseBases ? `, base subspaces ${report.baseBases.fromCache} from the cache / ${report.baseBases.computed} computed` : '';
      const tm = report.timings ? `, diff ${(report.timings.diffMs / 1000).toFixed(1)} s + spectral ${(report.timings.spectralMs / 1000).toFixed(1)} s` : '';
      say(
        `whole Three-Gate report, ${run} (gatescope analyze --device ${device}${extra.length ? ` ${extra.join(' ')}` : ''}, ${layers} layers, LLM-like spectra): ${wall.toFixed(1)} s wall${tm}, peak RSS ${(rssKb / 1024).toFixed(0)} MB${bb}, verdict ${report.verdict?.label ?? '-'}`,
      );
    }
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

/** The report's numbers, without when and how long: what a merge must reproduce. */
function numbersOf(file: string): Promise<string> {
  return fsp.readFile(file, 'utf8').then((t) => {
    const r = JSON.parse(t) as Record<string, unknown>;
    for (const k of ['createdAt', 'durationMs', 'timings', 'shards', 'base', 'checkpoint']) delete r[k];
    return JSON.stringify(r);
  });
}

async function benchShards(gen: Generated, layers: number, say: Say): Promise<void> {
  say('');
  const cli = path.join(__dirname, '..', 'bin', 'gatescope.js');
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'gatescope-bench-shards-'));
  const common = ['--no-cache', '--quiet', '--device', arg('--device') ?? 'auto'];
  try {
    const local = path.join(work, 'local.json');
    let t0 = process.hrtime.bigint();
    const one = spawnSync(process.execPath, [cli, 'analyze', gen.base, gen.ckpt, ...common, '--json', local], { encoding: 'utf8' });
    if (one.status !== 0) throw new Error(`analyze failed: ${one.stderr.slice(-500)}`);
    const base = seconds(t0);
    say(`one checkpoint, ${layers} layers, LLM-like spectra, no cache: one process ${base.toFixed(1)} s`);
    if (spawnSync('sbatch', ['--version']).status !== 0) {
      say('slurm: no sbatch here (set SLURM_CONF, or start scripts/slurm-cluster.sh): skipped');
      return;
    }
    const want = await numbersOf(local);
    for (const tasks of [1, 2, 4]) {
      const out = path.join(work, `slurm-${tasks}`);
      t0 = process.hrtime.bigint();
      const r = spawnSync(
        process.execPath,
        [cli, 'slurm', 'analyze', gen.base, gen.ckpt, '--tasks', String(tasks), '--out', out, '--wait', '--poll', '0.5', ...common],
        { encoding: 'utf8' },
      );
      const wall = seconds(t0);
      if (r.status !== 0) throw new Error(`slurm analyze --tasks ${tasks} failed: ${r.stderr.slice(-500)}`);
      const merged = (await fsp.readdir(out)).find((f) => f.endsWith('.json') && f !== 'gatescope-slurm.json')!;
      const report = JSON.parse(await fsp.readFile(path.join(out, merged), 'utf8')) as { shards: { durationsMs: number[] } };
      const equal = (await numbersOf(path.join(out, merged))) === want;
      const parts = report.shards.durationsMs.map((ms) => (ms / 1000).toFixed(1)).join(' / ');
      say(
        `slurm, ${tasks} task${tasks > 1 ? 's' : ''} on ${os.cpus().length} cores: ${wall.toFixed(1)} s wall from submission to merged report (${(base / wall).toFixed(2)}x one process), shards ${parts} s, merged report ${equal ? 'equal to' : 'DIFFERENT from'} the one-process report`,
      );
    }
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(`bench: ${e.stack ?? e.message}`);
  process.exit(1);
});
