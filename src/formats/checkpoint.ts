/**
 * A checkpoint: one `.safetensors` file, a model folder with `model.safetensors`, or a sharded folder
 * with `model.safetensors.index.json`. Opened read-only; a shard path that leaves the folder is refused.
 */
import { promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { CheckpointFormatError, systemReason } from './errors';
import { SafetensorsFile, READ_ONLY_FLAGS, type FileIdentity, type SharedFile, type TensorInfo } from './safetensors';
import type { ReportAdapter } from '../report/schema';
import { parseStrictJson, isJsonObject, type JsonValue } from './strict-json';

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';

/**
 * Where a tensor's bytes come from: a safetensors file, or a view computed from files (an adapter merged
 * into its base). `identity` and `headerHash` are those of the file that defines the tensor.
 */
export interface TensorSource {
  readonly path: string;
  readonly identity: FileIdentity;
  readonly headerHash: string;
  readElements(t: TensorInfo, start: number, count: number, into?: Uint8Array): Promise<Uint8Array>;
}

export interface TensorRef {
  file: TensorSource;
  info: TensorInfo;
}

/**
 * What a checkpoint that is a LoRA adapter merged into its base says about the adapter (see
 * analysis/adapter.ts): the report's part, and a digest of the config's bytes, which keys the cache.
 */
export interface AdapterOrigin extends ReportAdapter {
  configDigest: string;
}

/** The checkpoint path's stat, or the one-line error every reader of a checkpoint path reports. */
export async function statCheckpoint(p: string): Promise<Stats> {
  try {
    return await fsp.stat(p);
  } catch (e) {
    throw new CheckpointFormatError(p, 'io', `cannot open checkpoint: ${systemReason(e)}`);
  }
}

/** An open checkpoint as another thread of this process borrows it (see {@link SharedFile}). */
export interface SharedCheckpoint {
  path: string;
  dir: string;
  files: SharedFile[];
  config: Record<string, unknown> | undefined;
  notes: readonly string[];
}

export class Checkpoint {
  private constructor(
    /** The path the user gave: a folder or a file. */
    readonly path: string,
    /** The folder holding the weights (the file's folder for a single file). */
    readonly dir: string,
    readonly files: SafetensorsFile[],
    readonly tensors: ReadonlyMap<string, TensorRef>,
    /** config.json of the folder, when there is one. */
    readonly config: Record<string, unknown> | undefined,
    /** What a reader should know about how the files were chosen (e.g. an index beside a model.safetensors). */
    readonly notes: readonly string[] = [],
    /** Set when this checkpoint is a LoRA adapter seen merged into its base. */
    readonly adapter?: AdapterOrigin,
  ) {}

  /**
   * A checkpoint made of tensors from several places (an adapter merged into its base). `files` are the
   * files it owns (closed with it, checked for changes, keyed in the cache); the tensors may read others.
   */
  static compose(init: {
    path: string;
    dir: string;
    files: SafetensorsFile[];
    tensors: ReadonlyMap<string, TensorRef>;
    config: Record<string, unknown> | undefined;
    notes: readonly string[];
    adapter: AdapterOrigin;
  }): Checkpoint {
    return new Checkpoint(init.path, init.dir, init.files, init.tensors, init.config, init.notes, init.adapter);
  }

  /** Total bytes of tensor data. */
  get dataBytes(): number {
    let s = 0;
    for (const f of this.files) s += f.identity.size - f.dataStart;
    return s;
  }

  tensorNames(): string[] {
    return [...this.tensors.keys()];
  }

  /**
   * The identity of every file as it was when opened: path, size, mtime and header digest. The result
   * cache keys on it, so a key always names the files the analysis read.
   */
  fileIdentities(): string[] {
    const ids = this.files.map((f) => `${path.resolve(f.path)}|${f.identity.size}|${f.identity.mtimeMs}|${f.headerHash}`);
    // An adapter's merge depends on its config (rank, alpha, patterns) as much as on its weights.
    if (this.adapter) ids.push(`${path.resolve(this.adapter.config)}|${this.adapter.configDigest}`);
    return ids;
  }

  /** What a worker thread needs to read these files through the same descriptors; this checkpoint stays open meanwhile. */
  share(): SharedCheckpoint {
    if (this.adapter) throw new Error(`${this.path}: an adapter view is computed in the thread that opened it`);
    return { path: this.path, dir: this.dir, files: this.files.map((f) => f.share()), config: this.config, notes: this.notes };
  }

  /** A thread's view of a checkpoint another thread opened: neither the files nor config.json are opened again. */
  static borrow(s: SharedCheckpoint): Checkpoint {
    const files = s.files.map((f) => SafetensorsFile.borrow(f));
    return new Checkpoint(s.path, s.dir, files, tensorMap(files), s.config, s.notes);
  }

  async assertUnchanged(): Promise<void> {
    for (const f of this.files) await f.assertUnchanged();
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }

  static async open(p: string): Promise<Checkpoint> {
    const st = await statCheckpoint(p);
    if (st.isFile()) {
      const f = await SafetensorsFile.open(p);
      const dir = path.dirname(p);
      return new Checkpoint(p, dir, [f], tensorMap([f]), await readConfig(dir));
    }
    if (!st.isDirectory()) throw new CheckpointFormatError(p, 'io', 'not a file or folder');
    const files = await listShardFiles(p);
    const opened: SafetensorsFile[] = [];
    try {
      for (const f of files.paths) opened.push(await SafetensorsFile.open(f));
      const map = tensorMap(opened);
      if (files.weightMap) {
        for (const [name, shard] of files.weightMap) {
          const ref = map.get(name);
          if (!ref) throw new CheckpointFormatError(path.join(p, INDEX_FILE), 'index-mismatch', `the index maps it to ${shard}, which does not hold it`, name);
          if (path.resolve(ref.file.path) !== path.resolve(p, shard)) {
            throw new CheckpointFormatError(
              path.join(p, INDEX_FILE),
              'index-mismatch',
              `the index maps it to ${shard} but it is in ${path.basename(ref.file.path)}`,
              name,
            );
          }
        }
      }
      return new Checkpoint(p, p, opened, map, await readConfig(p), files.ambiguity ? [files.ambiguity] : []);
    } catch (e) {
      await Promise.all(opened.map((f) => f.close()));
      throw e;
    }
  }
}

function tensorMap(files: SafetensorsFile[]): Map<string, TensorRef> {
  const map = new Map<string, TensorRef>();
  for (const file of files) {
    for (const info of file.tensors.values()) {
      const prev = map.get(info.name);
      if (prev) throw new CheckpointFormatError(file.path, 'index-mismatch', `tensor also stored in ${prev.file.path}`, info.name);
      map.set(info.name, { file, info });
    }
  }
  return map;
}

export interface ShardListing {
  paths: string[];
  /** tensor name -> shard file name, when the folder is sharded through an index. */
  weightMap?: Map<string, string>;
  /** A layout that could be read two ways, and which way was taken. */
  ambiguity?: string;
}

/**
 * Which safetensors files make up the checkpoint in `dir`: the index's shards, or `model.safetensors`,
 * or every `*.safetensors` in the folder (loose files, e.g. `adapter_model.safetensors` excluded where a model file exists).
 */
export async function listShardFiles(dir: string): Promise<ShardListing> {
  const indexPath = path.join(dir, INDEX_FILE);
  const entries = await fsp.readdir(dir).catch((e: Error) => {
    throw new CheckpointFormatError(dir, 'io', e.message);
  });
  if (entries.includes(INDEX_FILE)) {
    const weightMap = await readIndex(indexPath);
    const shards = [...new Set(weightMap.values())].sort();
    const realDir = await fsp.realpath(dir);
    // The Hugging Face hub cache stores a snapshot's files as links into the repository's blobs/ folder
    // (models--org--name/snapshots/<rev>/x -> ../../blobs/<sha>): links there stay inside the repository.
    const hubBlobs = path.basename(path.dirname(realDir)) === 'snapshots' ? path.join(path.dirname(path.dirname(realDir)), 'blobs') : undefined;
    const paths: string[] = [];
    for (const shard of shards) {
      const full = path.resolve(dir, shard);
      if (path.isAbsolute(shard) || !isInside(path.resolve(dir), full)) {
        throw new CheckpointFormatError(indexPath, 'shard-path', `shard ${JSON.stringify(shard)} leaves the checkpoint folder`);
      }
      let real: string;
      try {
        real = await fsp.realpath(full);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') {
          // A link loop or a permission problem is not a checkpoint still being written.
          throw new CheckpointFormatError(indexPath, 'io', `shard ${JSON.stringify(shard)} cannot be resolved (${(e as Error).message})`);
        }
        throw new CheckpointFormatError(indexPath, 'missing-shard', `shard ${JSON.stringify(shard)} does not exist (still being written?)`);
      }
      if (!isInside(realDir, real) && !(hubBlobs !== undefined && isInside(hubBlobs, real))) {
        throw new CheckpointFormatError(indexPath, 'shard-path', `shard ${JSON.stringify(shard)} is a link that leaves the checkpoint folder`);
      }
      paths.push(full);
    }
    const ambiguity =
      entries.includes(SINGLE_FILE) && !shards.includes(SINGLE_FILE)
        ? `${dir} holds both ${INDEX_FILE} and ${SINGLE_FILE}: the index's ${shards.length} shard(s) are read and ${SINGLE_FILE} is ignored (remove the one that is stale)`
        : undefined;
    return { paths, weightMap, ...(ambiguity ? { ambiguity } : {}) };
  }
  if (entries.includes(SINGLE_FILE)) return { paths: [path.join(dir, SINGLE_FILE)] };
  const loose = entries.filter((e) => e.endsWith('.safetensors')).sort();
  if (loose.length === 0) throw new CheckpointFormatError(dir, 'io', 'no .safetensors file and no model.safetensors.index.json in this folder');
  return { paths: loose.map((e) => path.join(dir, e)) };
}

/** `child` is `parent` or below it (a name like "..x" inside is fine; "../x" and other drives are not). */
function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!path.isAbsolute(rel) && rel !== '..' && !rel.startsWith(`..${path.sep}`));
}

/**
 * Reads a small regular file: refuses FIFOs, devices and folders (without blocking on them) and files over
 * `maxBytes`. Throws a plain Error saying why; callers turn it into their own message.
 */
export async function readSmallRegularFile(p: string, maxBytes: number): Promise<Buffer> {
  const fh = await fsp.open(p, READ_ONLY_FLAGS);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > maxBytes) throw new Error(`${st.size} bytes, over the ${maxBytes}-byte limit`);
    const buf = Buffer.alloc(st.size);
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await fh.read(buf, done, buf.length - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buf.subarray(0, done);
  } finally {
    await fh.close();
  }
}

export async function readIndex(indexPath: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = (await readSmallRegularFile(indexPath, 100_000_000)).toString('utf8');
  } catch (e) {
    throw new CheckpointFormatError(indexPath, 'index', `cannot read the index: ${(e as Error).message}`);
  }
  let json: JsonValue;
  try {
    json = parseStrictJson(text);
  } catch (e) {
    throw new CheckpointFormatError(indexPath, 'index', `not valid JSON (${(e as Error).message})`);
  }
  if (!isJsonObject(json)) throw new CheckpointFormatError(indexPath, 'index', 'the index is not a JSON object');
  const wm = json.weight_map;
  if (!isJsonObject(wm)) throw new CheckpointFormatError(indexPath, 'index', 'weight_map is missing or not an object');
  const map = new Map<string, string>();
  for (const name of Object.keys(wm)) {
    const v = wm[name];
    if (typeof v !== 'string' || v.length === 0) throw new CheckpointFormatError(indexPath, 'index', `weight_map[${JSON.stringify(name)}] is not a file name`);
    map.set(name, v);
  }
  if (map.size === 0) throw new CheckpointFormatError(indexPath, 'index', 'weight_map is empty');
  return map;
}

async function readConfig(dir: string): Promise<Record<string, unknown> | undefined> {
  try {
    const v = JSON.parse((await readSmallRegularFile(path.join(dir, 'config.json'), 10_000_000)).toString('utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
