/**
 * The engine worker: a separate Node process (forked by the engine client) that runs analyses, so the
 * extension host never blocks. One job at a time; cancellation aborts at the next chunk or tensor.
 */
import type { ClientToWorker, JobResult, JobSpec, WorkerToClient } from './messages';
import type { CheckpointReport } from '../report/schema';
import { analyzePlan, type SpectralPass } from '../analysis/analyze';
import { AnalysisPlan } from '../analysis/plan';
import { CheckpointFormatError, describeSystemError } from '../formats/errors';
import { ResultCache, cacheKey } from './cache';
import { BasisCache } from './basis-cache';
import * as path from 'node:path';
import { MemoryBudgetError, assertFitsMemory } from './memory';
import type { ComputeBackend, DeviceSetting } from '../compute/backend';

process.env.ORT_DISABLE_TELEMETRY = '1';

function send(m: WorkerToClient): void {
  process.send?.(m);
}

let backend: { device: DeviceSetting; b: ComputeBackend } | undefined;
async function backendFor(device: DeviceSetting): Promise<ComputeBackend> {
  if (backend?.device === device) return backend.b;
  await backend?.b.dispose();
  const { createBackend } = await import('../compute/backend');
  const b = await createBackend({ device, log: (line) => send({ type: 'log', line }) });
  backend = { device, b };
  return b;
}

/** A result cache that cannot be written (disk full, its folder a file) costs the cache, never the finished result. */
async function storeQuietly(cache: ResultCache, key: string, result: JobResult): Promise<void> {
  try {
    await cache.put(key, result);
  } catch (e) {
    send({
      type: 'log',
      line: `warning: the result cache could not store this result (${(e as Error).message.split('\n')[0]}); the result is returned, uncached`,
    });
  }
}

/** Base subspaces live beside the results: computed once per base, reused by every checkpoint and run of it. */
function basesIn(cacheDir: string | null, maxBytes: number | undefined): BasisCache | undefined {
  return cacheDir ? new BasisCache(path.join(cacheDir, 'bases'), maxBytes, (line) => send({ type: 'log', line })) : undefined;
}

function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}

/** What an analysing job reads, opened once: one plan per checkpoint analysed, all over one opened base. */
interface OpenedInputs {
  plans: AnalysisPlan[];
  /** File identities, base first: the cache key. */
  identities: string[][];
  close(): Promise<void>;
}

/** Opens an analyse or compare job's checkpoints (undefined for the other jobs, which read or write otherwise). */
async function openInputs(spec: JobSpec): Promise<OpenedInputs | undefined> {
  if (spec.kind !== 'analyze' && spec.kind !== 'compare') return undefined;
  const passes = spec.kind === 'analyze' ? spec.passes : spec.settings ? 'full' : 'diff';
  const { base, plans, close } = await AnalysisPlan.openAll(spec.base, spec.kind === 'analyze' ? [spec.checkpoint] : spec.checkpoints, passes);
  return { plans, identities: [base.fileIdentities(), ...plans.map((p) => p.checkpoint.fileIdentities())], close };
}

const running = new Map<string, AbortController>();
/** Jobs cancelled while still queued behind another. */
const cancelledBeforeStart = new Set<string>();

async function runJob(jobId: string, spec: JobSpec, cacheDir: string | null, baseCacheBytes?: number, resultCacheBytes?: number): Promise<void> {
  const ac = new AbortController();
  if (cancelledBeforeStart.delete(jobId)) {
    send({ type: 'cancelled', jobId });
    return;
  }
  running.set(jobId, ac);
  // The job's analysis plans open each checkpoint once; the cache key, the memory guard and the passes all use them.
  let opened: OpenedInputs | undefined;
  try {
    opened = await openInputs(spec);
    // Writing jobs make new files: never cached, never answered from a cache.
    const cache = cacheDir && opened ? new ResultCache(cacheDir, resultCacheBytes) : undefined;
    const key = cache ? cacheKey(spec, opened!.identities) : '';
    const hit = cache ? await cache.get(key) : undefined;
    if (hit) {
      send({ type: 'done', jobId, result: hit, fromCache: true });
      return;
    }
    // Refuse, before allocating, a tensor that does not fit the memory cap (the heap cap does not cover buffers).
    if (opened) assertFitsMemory(opened.plans);
    let result: JobResult;
    if (spec.kind === 'analyze') {
      const spectral =
        spec.passes === 'full'
          ? (await import('../analysis/spectral')).createSpectralPass(await backendFor(spec.device), { bases: basesIn(cacheDir, baseCacheBytes) })
          : undefined;
      result = await analyzePlan(opened!.plans[0], {
        settings: spec.settings,
        passes: spec.passes,
        spectral,
        signal: ac.signal,
        onProgress: (p) => send({ type: 'progress', jobId, ...p }),
        onTensor: (t) => send({ type: 'partial', jobId, tensor: t }),
      });
    } else if (spec.kind === 'scramble') {
      const { scrambleCheckpoint } = await import('../transform/scramble');
      result = await scrambleCheckpoint(spec.base, {
        layers: spec.layers,
        rotate: spec.rotate,
        permute: spec.permute,
        rotation: spec.rotation,
        seed: spec.seed,
        out: spec.out,
        signal: ac.signal,
        onProgress: (p) => send({ type: 'progress', jobId, phase: 'scramble', tensor: p.tensor, index: p.index, total: p.total, fraction: p.index / p.total }),
      });
    } else if (spec.kind === 'steps') {
      // Not cached: the walk reads the run's configs and trainer_state.json as well as its weights, and a
      // run still training gains checkpoints; each checkpoint is read once, so a walk costs what the files do.
      const { stepsOfRun } = await import('../analysis/steps');
      result = await stepsOfRun(spec.root, {
        base: spec.base,
        learningRate: spec.learningRate,
        learningRateSource: spec.learningRateSource,
        eta: spec.eta,
        signal: ac.signal,
        onProgress: (p) => send({ type: 'progress', jobId, ...p }),
      });
    } else if (spec.kind === 'mask') {
      const { exportMasks } = await import('../transform/mask');
      result = await exportMasks(spec.base, {
        kind: spec.maskKind,
        alpha: spec.alpha,
        k: spec.k,
        allModules: spec.allModules,
        out: spec.out,
        backend: await backendFor(spec.device),
        signal: ac.signal,
        onProgress: (p) => send({ type: 'progress', jobId, phase: 'mask', tensor: p.tensor, index: p.index, total: p.total, fraction: p.index / p.total }),
        log: (line) => send({ type: 'log', line }),
      });
    } else {
      const { compareRunPlans } = await import('../analysis/consistency');
      const settings = spec.settings;
      const plans = opened!.plans;
      // With the regime verdict, the masks take the first fifth and each run's analysis an equal share.
      const maskShare = settings ? 0.2 : 1;
      const report = await compareRunPlans(plans, {
        eta: spec.eta,
        labels: spec.labels,
        signal: ac.signal,
        onProgress: (p) =>
          send({ type: 'progress', jobId, phase: 'compare', tensor: p.tensor, index: p.index, total: p.total, fraction: maskShare * (p.index / p.total) }),
      });
      if (settings) {
        const { compareRegimes } = await import('../analysis/regime-compare');
        const reports: CheckpointReport[] = [];
        const device = spec.device ?? 'auto';
        let spectral: SpectralPass | undefined;
        for (const [i, checkpoint] of spec.checkpoints.entries()) {
          const one: JobSpec = { kind: 'analyze', base: spec.base, checkpoint, passes: 'full', settings, device };
          // Each run's analysis is the same as the dashboard's: answered from, and kept in, the cache.
          const oneKey = cache ? cacheKey(one, plans[i].fileIdentities()) : '';
          const cached = cache ? ((await cache.get(oneKey)) as CheckpointReport | undefined) : undefined;
          if (cached) {
            reports.push(cached);
            continue;
          }
          spectral ??= (await import('../analysis/spectral')).createSpectralPass(await backendFor(device), { bases: basesIn(cacheDir, baseCacheBytes) });
          const r = await analyzePlan(plans[i], {
            settings,
            passes: 'full',
            signal: ac.signal,
            spectral,
            onProgress: (p) =>
              send({
                type: 'progress',
                jobId,
                phase: `${spec.labels[i]}: ${p.phase}`,
                tensor: p.tensor,
                index: p.index,
                total: p.total,
                fraction: maskShare + (1 - maskShare) * ((i + p.fraction) / spec.checkpoints.length),
              }),
          });
          ac.signal.throwIfAborted();
          if (cache) await storeQuietly(cache, oneKey, r);
          reports.push(r);
        }
        report.regime = compareRegimes(spec.labels, reports, settings.seed);
      }
      result = report;
    }
    ac.signal.throwIfAborted();
    // Only finished, unchanged results are cached: a cancelled or failed job leaves no entry.
    if (cache) await storeQuietly(cache, key, result);
    send({ type: 'done', jobId, result, fromCache: false });
  } catch (e) {
    // The user sees one line naming the file and the problem; a stack goes to the log only, for a bug report.
    if (ac.signal.aborted) send({ type: 'cancelled', jobId });
    else if (e instanceof CheckpointFormatError)
      send({ type: 'error', jobId, message: oneLine(e.message), problem: e.problem, file: e.file, incomplete: e.looksIncomplete });
    else if (e instanceof MemoryBudgetError) send({ type: 'error', jobId, message: oneLine(e.message), problem: 'memory-limit', incomplete: false });
    else {
      const err = e instanceof Error ? e : new Error(String(e));
      if (err.stack) send({ type: 'log', line: `engine: ${spec.kind} job failed: ${err.stack}` });
      send({ type: 'error', jobId, message: describeSystemError(err) ?? oneLine(err.message || String(e)), incomplete: false });
    }
  } finally {
    running.delete(jobId);
    await opened?.close();
  }
}

let queue: Promise<void> = Promise.resolve();

process.on('message', (m: ClientToWorker) => {
  if (!m || typeof m !== 'object') return;
  if (m.type === 'start') {
    queue = queue.then(() => runJob(m.jobId, m.spec, m.cacheDir, m.baseCacheBytes, m.resultCacheBytes));
  } else if (m.type === 'cancel') {
    const ac = running.get(m.jobId);
    if (ac) ac.abort();
    else cancelledBeforeStart.add(m.jobId);
  } else if (m.type === 'shutdown') {
    for (const ac of running.values()) ac.abort();
    void backend?.b.dispose().finally(() => process.exit(0));
    if (!backend) process.exit(0);
  }
});

process.on('disconnect', () => process.exit(0));
send({ type: 'ready', pid: process.pid });
