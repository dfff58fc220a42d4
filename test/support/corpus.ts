/**
 * A malformed-checkpoint corpus derived from real valid files: the synthetic run's base (a folder), its
 * sharded checkpoint (index + two shards) and a small file of every readable dtype (a single file), each
 * broken in one way per case. Deterministic: the only randomness is a seeded generator.
 *
 * Every case names what a correct reader must do with it: succeed ('ok'), fail with one of the listed
 * `CheckpointFormatError` problems, fail with any of them ('error'), or either ('either', e.g. a bit flip
 * that happens to leave a valid file).
 */
import { promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { writeSyntheticRun, rng, type SyntheticShape } from '../../src/examples/synthetic';
import type { FormatProblem } from '../../src/formats/errors';
import type { DiffResult } from '../../src/analysis/diff';
import { rawFile, validFile, bf16Bytes, f32Bytes, bf16 } from './st';

export type Expect = 'ok' | 'either' | 'error' | FormatProblem[];

export interface CorpusCase {
  id: string;
  /** The mutation class (one row of the summary table). */
  cls: string;
  /** What was done, for failure messages. */
  what: string;
  /** A valid checkpoint to diff the case against. */
  base: string;
  /** The broken checkpoint: a folder or a .safetensors file. */
  target: string;
  /** The case's own folder: an error must name a file in it (never the base). */
  root: string;
  expect: Expect;
  /** Extra checks of a successful diff; returns what is wrong, if anything. */
  verify?: (r: DiffResult) => string | undefined;
}

export interface Corpus {
  dir: string;
  cases: CorpusCase[];
  base: string;
}

/** Small enough that 800 cases write and read in a few seconds, with the real tensor layout of a Qwen model. */
export const CORPUS_SHAPE: SyntheticShape = { hidden: 16, intermediate: 40, layers: 2, heads: 2, kvHeads: 1, vocab: 32 };

interface Parsed {
  bytes: Buffer;
  hlen: number;
  headerText: string;
  header: Record<string, unknown>;
  dataStart: number;
  data: Buffer;
  /** Tensors in data order. */
  tensors: { name: string; begin: number; end: number }[];
}

function parse(bytes: Buffer): Parsed {
  const hlen = Number(bytes.readBigUInt64LE(0));
  const headerText = bytes.subarray(8, 8 + hlen).toString('utf8');
  const header = JSON.parse(headerText) as Record<string, unknown>;
  const tensors = Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .map(([name, v]) => {
      const [begin, end] = (v as { data_offsets: [number, number] }).data_offsets;
      return { name, begin, end };
    })
    .sort((a, b) => a.begin - b.begin || a.end - b.end);
  return { bytes, hlen, headerText, header, dataStart: 8 + hlen, data: bytes.subarray(8 + hlen), tensors };
}

type Entry = { dtype: unknown; shape: unknown; data_offsets: unknown; [k: string]: unknown };
type Header = Record<string, unknown>;

function cloneHeader(p: Parsed): Header {
  return JSON.parse(p.headerText) as Header;
}

function withHeader(p: Parsed, mutate: (h: Header) => void, data: Uint8Array = p.data): Buffer {
  const h = cloneHeader(p);
  mutate(h);
  return rawFile(JSON.stringify(h), data);
}

function withText(p: Parsed, f: (t: string) => string, data: Uint8Array = p.data): Buffer {
  return rawFile(f(p.headerText), data);
}

function withLength(p: Parsed, len: bigint): Buffer {
  const out = Buffer.from(p.bytes);
  out.writeBigUInt64LE(len, 0);
  return out;
}

function replaceOnce(t: string, from: string, to: string): string {
  const i = t.indexOf(from);
  if (i < 0) throw new Error(`corpus: ${JSON.stringify(from)} not in header`);
  return t.slice(0, i) + to + t.slice(i + from.length);
}

/** The header text with the closing brace removed (trailing padding too), to append members before it. */
function openEnd(t: string): string {
  const s = t.trimEnd();
  return s.slice(0, -1);
}

function entryJson(p: Parsed, name: string): string {
  return JSON.stringify((p.header as Record<string, Entry>)[name]);
}

/** Inserts raw bytes right after the opening quote of `name` in the header bytes. */
function injectIntoName(p: Parsed, name: string, bytes: number[]): Buffer {
  const h = Buffer.from(p.headerText, 'utf8');
  const at = h.indexOf(Buffer.from(`"${name}"`)) + 1;
  return rawFile(Buffer.concat([h.subarray(0, at), Buffer.from(bytes), h.subarray(at)]), p.data);
}

function shiftFrom(h: Header, p: Parsed, fromIndex: number, delta: number): void {
  for (let i = fromIndex; i < p.tensors.length; i++) {
    const e = h[p.tensors[i].name] as Entry;
    const [b, en] = e.data_offsets as [number, number];
    e.data_offsets = [b + delta, en + delta];
  }
}

/** A valid file of every readable dtype, scalars and empty tensors, with metadata. */
export function mixedDtypeFile(seed: number): Buffer {
  const r = rng(seed);
  const bytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
  const vals = (n: number): number[] => Array.from({ length: n }, () => r() * 2 - 1);
  return validFile(
    {
      'w.f32': { dtype: 'F32', shape: [4, 6], data: f32Bytes(vals(24)) },
      'model.layers.0.self_attn.q_proj.weight': { dtype: 'BF16', shape: [8, 8], data: bf16Bytes(vals(64).map(bf16)) },
      'w.f16': { dtype: 'F16', shape: [10], data: new Uint8Array(new Uint16Array(vals(10).map((x) => 0x3c00 + Math.floor((x + 1) * 100))).buffer) },
      'w.f64': { dtype: 'F64', shape: [3, 2], data: new Uint8Array(new Float64Array(vals(6)).buffer) },
      'w.f8': { dtype: 'F8_E4M3', shape: [16], data: bytes(16).map((b) => b & 0x7e) },
      'w.f8e5': { dtype: 'F8_E5M2', shape: [2, 4], data: bytes(8).map((b) => b & 0x7b) },
      'w.i64': { dtype: 'I64', shape: [3], data: bytes(24) },
      'w.u8': { dtype: 'U8', shape: [5], data: bytes(5) },
      'w.bool': { dtype: 'BOOL', shape: [4], data: Uint8Array.from([0, 1, 1, 0]) },
      'w.scalar': { dtype: 'F32', shape: [], data: f32Bytes([0.5]) },
      'w.empty': { dtype: 'BF16', shape: [0], data: new Uint8Array(0) },
    },
    { format: 'pt', note: 'every readable dtype' },
  );
}

export interface BuildOptions {
  seed?: number;
  /** Seeded single-bit flips in the header (length field included) of the base file. */
  headerFlips?: number;
  /** The same on the mixed-dtype file. */
  mixedHeaderFlips?: number;
}

const POSIX = process.platform !== 'win32';

export async function buildCorpus(dir: string, opts: BuildOptions = {}): Promise<Corpus> {
  const seed = opts.seed ?? 20250101;
  const rand = rng(seed);
  const run = await writeSyntheticRun(path.join(dir, 'src', 'run'), { shape: CORPUS_SHAPE, steps: [100, 300], seed: 11 });
  const base = run.base;
  const baseFile = path.join(base, 'model.safetensors');
  const shardedDir = run.checkpoints[1];
  const shardNames = (await fsp.readdir(shardedDir)).filter((f) => f.endsWith('.safetensors')).sort();
  const mixedDir = path.join(dir, 'src', 'mixed');
  await fsp.mkdir(mixedDir, { recursive: true });
  const mixedFile = path.join(mixedDir, 'mixed.safetensors');
  await fsp.writeFile(mixedFile, mixedDtypeFile(seed));
  const outside = path.join(dir, 'src', 'outside.safetensors');
  await fsp.copyFile(path.join(shardedDir, shardNames[0]), outside);

  const B = parse(await fsp.readFile(baseFile));
  const M = parse(await fsp.readFile(mixedFile));
  const S = parse(await fsp.readFile(path.join(shardedDir, shardNames[0])));
  const indexText = await fsp.readFile(path.join(shardedDir, 'model.safetensors.index.json'), 'utf8');
  const index = JSON.parse(indexText) as { metadata: unknown; weight_map: Record<string, string> };

  const cases: CorpusCase[] = [];
  let n = 0;
  const caseDir = async (): Promise<string> => {
    const d = path.join(dir, 'cases', String(n++).padStart(4, '0'));
    await fsp.mkdir(d, { recursive: true });
    return d;
  };
  const push = (c: Omit<CorpusCase, 'id'>): void => {
    cases.push({ ...c, id: `${c.cls}#${cases.filter((x) => x.cls === c.cls).length}` });
  };

  /** A broken copy of the base model: a folder with model.safetensors (and its config.json). */
  const baseCase = async (cls: string, what: string, bytes: Uint8Array, expect: Expect, verify?: CorpusCase['verify']): Promise<void> => {
    const d = await caseDir();
    await fsp.writeFile(path.join(d, 'model.safetensors'), bytes);
    push({ cls, what, base, target: d, root: d, expect, verify });
  };
  /** A broken copy of the mixed-dtype file, opened as a single file. */
  const mixedCase = async (cls: string, what: string, bytes: Uint8Array, expect: Expect): Promise<void> => {
    const d = await caseDir();
    const f = path.join(d, 'mixed.safetensors');
    await fsp.writeFile(f, bytes);
    push({ cls, what, base: mixedFile, target: f, root: d, expect });
  };
  /** A copy of the sharded checkpoint; `edit` breaks it in place. */
  const shardedCase = async (cls: string, what: string, edit: (d: string) => Promise<void>, expect: Expect): Promise<void> => {
    const d = await caseDir();
    for (const f of await fsp.readdir(shardedDir)) await fsp.copyFile(path.join(shardedDir, f), path.join(d, f));
    await edit(d);
    push({ cls, what, base, target: d, root: d, expect });
  };
  const writeIndex = (d: string, weightMap: unknown, extra: Record<string, unknown> = {}): Promise<void> =>
    fsp.writeFile(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: index.metadata, weight_map: weightMap, ...extra }));
  const shard0 = shardNames[0];
  const shardCase = (cls: string, what: string, bytes: Uint8Array, expect: Expect): Promise<void> =>
    shardedCase(cls, what, (d) => fsp.writeFile(path.join(d, shard0), bytes), expect);

  // The originals: the harness must pass them.
  push({ cls: 'valid-original', what: 'base folder', base, target: base, root: base, expect: 'ok' });
  push({ cls: 'valid-original', what: 'sharded folder', base, target: shardedDir, root: shardedDir, expect: 'ok' });
  push({ cls: 'valid-original', what: 'mixed-dtype file', base: mixedFile, target: mixedFile, root: mixedDir, expect: 'ok' });

  // --- Truncation at every region --------------------------------------------------------------
  type Sink = (cls: string, what: string, bytes: Uint8Array, expect: Expect) => Promise<void>;
  const truncations = async (p: Parsed, label: string, sink: Sink): Promise<void> => {
    const size = p.bytes.length;
    for (let k = 0; k < 8; k++) await sink('truncate-length-field', `${label}: cut to ${k} bytes`, p.bytes.subarray(0, k), ['header-too-small']);
    const inHeader = new Set<number>();
    for (let i = 0; i < 16; i++) inHeader.add(8 + Math.floor((p.hlen * i) / 16));
    inHeader.add(8 + p.hlen - 1);
    for (const at of [...inHeader].sort((a, b) => a - b))
      await sink('truncate-header', `${label}: cut at ${at} (header ends at ${p.dataStart})`, p.bytes.subarray(0, at), ['header-length']);
    const boundaries = new Set(p.tensors.map((t) => p.dataStart + t.begin).filter((at) => at < size));
    for (const at of [...boundaries].sort((a, b) => a - b))
      await sink('truncate-tensor-boundary', `${label}: cut at tensor boundary ${at}`, p.bytes.subarray(0, at), ['file-length']);
    for (const t of p.tensors) {
      if (t.end - t.begin < 2) continue;
      const at = p.dataStart + Math.floor((t.begin + t.end) / 2);
      await sink('truncate-mid-tensor', `${label}: cut inside ${t.name} at ${at}`, p.bytes.subarray(0, at), ['file-length']);
    }
  };
  await truncations(B, 'base', (c, w, b, e) => baseCase(c, w, b, e));
  await truncations(M, 'mixed', mixedCase);
  await truncations(S, `shard ${shard0}`, shardCase);

  // --- The length field -------------------------------------------------------------------------
  const lengthCases = async (p: Parsed, label: string, sink: Sink): Promise<void> => {
    const size = BigInt(p.bytes.length);
    const H = BigInt(p.hlen);
    for (const [v, what] of [
      [size - 7n, 'one byte past the end'],
      [size, 'the whole file'],
      [size + 1000n, 'far past the end'],
      [100_000_000n, 'exactly the 100 MB limit'],
    ] as const) {
      await sink('length-past-end', `${label}: header length ${v} (${what})`, withLength(p, v), ['header-length']);
    }
    for (const v of [100_000_001n, 2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n]) {
      await sink('length-over-100MB', `${label}: header length ${v}`, withLength(p, v), ['header-too-large']);
    }
    await sink('length-wrong', `${label}: header length 0`, withLength(p, 0n), ['header-not-object']);
    await sink('length-wrong', `${label}: header length 1`, withLength(p, 1n), ['header-json']);
    await sink('length-wrong', `${label}: header length H/2`, withLength(p, H / 2n), ['header-json']);
    await sink('length-wrong', `${label}: header length H-1`, withLength(p, H - 1n), 'error');
    await sink('length-wrong', `${label}: header length H+1`, withLength(p, H + 1n), 'error');
    await sink('length-wrong', `${label}: header length H+8`, withLength(p, H + 8n), 'error');
  };
  await lengthCases(B, 'base', (c, w, b, e) => baseCase(c, w, b, e));
  await lengthCases(M, 'mixed', mixedCase);

  // --- Invalid UTF-8 ----------------------------------------------------------------------------
  const badUtf8: [string, number[]][] = [
    ['0xff', [0xff]],
    ['0xfe', [0xfe]],
    ['lone continuation', [0x80]],
    ['overlong "/"', [0xc0, 0xaf]],
    ['overlong 3-byte', [0xe0, 0x80, 0xaf]],
    ['surrogate D800', [0xed, 0xa0, 0x80]],
    ['above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ['truncated 2-byte', [0xc3]],
    ['truncated 3-byte', [0xe2, 0x82]],
    ['5-byte form', [0xf8, 0x88, 0x80, 0x80, 0x80]],
  ];
  const firstB = B.tensors[0].name;
  const firstM = M.tensors[0].name;
  for (const [what, bytes] of badUtf8) {
    await baseCase('invalid-utf8', `base: ${what} in a tensor name`, injectIntoName(B, firstB, bytes), ['header-utf8']);
    await mixedCase('invalid-utf8', `mixed: ${what} in a tensor name`, injectIntoName(M, firstM, bytes), ['header-utf8']);
  }
  await baseCase('invalid-utf8', 'base: 0xff in the metadata', injectIntoName(B, 'format', [0xff]), ['header-utf8']);

  // --- Invalid JSON -----------------------------------------------------------------------------
  const nameB = JSON.stringify(firstB);
  const nest = (d: number): string => '['.repeat(d) + ']'.repeat(d);
  const jsonCases: [string, (t: string) => string, Expect][] = [
    ['missing closing brace', (t) => openEnd(t), ['header-json']],
    ['trailing garbage', (t) => t.trimEnd() + 'x', ['header-json']],
    ['second object', (t) => t.trimEnd() + '{}', ['header-json']],
    ['trailing comma', (t) => openEnd(t) + ',}', ['header-json']],
    ['single-quoted key', (t) => replaceOnce(t, '"dtype"', "'dtype'"), ['header-json']],
    ['unquoted key', (t) => replaceOnce(t, '"dtype"', 'dtype'), ['header-json']],
    ['NaN', (t) => replaceOnce(t, '"shape":[', '"shape":[NaN,'), ['header-json']],
    ['Infinity', (t) => replaceOnce(t, '"shape":[', '"shape":[Infinity,'), ['header-json']],
    ['comment', (t) => replaceOnce(t, '{', '{/* c */'), ['header-json']],
    ['leading zero', (t) => replaceOnce(t, '"shape":[', '"shape":[0'), ['header-json']],
    ['number "0."', (t) => replaceOnce(t, '"data_offsets":[0,', '"data_offsets":[0.,'), ['header-json']],
    ['number ".0"', (t) => replaceOnce(t, '"data_offsets":[0,', '"data_offsets":[.0,'), ['header-json']],
    ['number "+0"', (t) => replaceOnce(t, '"data_offsets":[0,', '"data_offsets":[+0,'), ['header-json']],
    ['number "0e"', (t) => replaceOnce(t, '"data_offsets":[0,', '"data_offsets":[0e,'), ['header-json']],
    ['escape \\x41', (t) => replaceOnce(t, nameB, `"\\x41${firstB}"`), ['header-json']],
    ['short \\u escape', (t) => replaceOnce(t, nameB, `"\\u12${firstB}"`), ['header-json']],
    ['backslash before the closing quote', (t) => replaceOnce(t, nameB, `"${firstB}\\"`), ['header-json']],
    ['raw control character', (t) => replaceOnce(t, nameB, `"\u0001${firstB}"`), ['header-json']],
    ['raw newline in a string', (t) => replaceOnce(t, nameB, `"\n${firstB}"`), ['header-json']],
    ['unterminated string', (t) => t.slice(0, t.indexOf(nameB) + 5), ['header-json']],
    ['unpaired surrogate escape', (t) => replaceOnce(t, nameB, `"${firstB}\\ud800"`), ['header-json']],
    ['nesting 100 deep', (t) => replaceOnce(t, '"dtype"', `"x":${nest(100)},"dtype"`), ['header-json']],
    ['literal typo "tru"', (t) => replaceOnce(t, '"BF16"', 'tru'), ['header-json']],
    ['literal "truex"', (t) => replaceOnce(t, '"BF16"', 'truex'), ['header-json']],
    ['empty header text', () => '', ['header-not-object']],
    // Valid JSON that a strict reader must still accept.
    ['nesting 60 deep in an unknown field', (t) => replaceOnce(t, '"dtype"', `"x":${nest(60)},"dtype"`), 'ok'],
    ['escaped characters in a name', (t) => replaceOnce(t, nameB, `"\\u0041\\n\\t\\"${firstB}"`), 'ok'],
    ['surrogate pair escape in a name', (t) => replaceOnce(t, nameB, `"\\ud83d\\ude00${firstB}"`), 'ok'],
    ['NUL escape in a name', (t) => replaceOnce(t, nameB, `"\\u0000${firstB}"`), 'ok'],
    ['empty tensor name', (t) => replaceOnce(t, nameB, '""'), 'ok'],
    ['non-ASCII name', (t) => replaceOnce(t, nameB, '"модель.😀.weight"'), 'ok'],
    ['tensor named __proto__', (t) => replaceOnce(t, nameB, '"__proto__"'), 'ok'],
    ['tensor named constructor', (t) => replaceOnce(t, nameB, '"constructor"'), 'ok'],
    [
      'whitespace everywhere',
      (t) =>
        t
          .trimEnd()
          .replace(/([{}[\],:])/g, ' \n\t$1\r\n ')
          .trimStart(),
      'ok',
    ],
  ];
  for (const [what, f, expect] of jsonCases) await baseCase('invalid-json', `base: ${what}`, withText(B, f), expect);
  for (const [what, f, expect] of jsonCases.slice(0, 6)) {
    await mixedCase('invalid-json', `mixed: ${what}`, withText(M, f), expect);
  }

  // --- Not an object ----------------------------------------------------------------------------
  for (const text of ['[]', '[{"a":1}]', '"header"', '42', 'null', 'true', ' {}', '\n{}']) {
    await baseCase('non-object-json', `base: header ${JSON.stringify(text)}`, rawFile(text, B.data), ['header-not-object']);
  }
  await baseCase(
    'non-object-json',
    'base: UTF-8 byte-order mark before "{"',
    rawFile(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(B.headerText)]), B.data),
    ['header-not-object'],
  );
  await baseCase('non-object-json', 'base: header "{}" with the data left', rawFile('{}', B.data), ['file-length']);

  // --- Duplicate keys ---------------------------------------------------------------------------
  const escapedFirst = `"\\u${firstB.charCodeAt(0).toString(16).padStart(4, '0')}${firstB.slice(1)}"`;
  const dupCases: [string, (t: string) => string][] = [
    ['a tensor twice', (t) => `${openEnd(t)},${nameB}:${entryJson(B, firstB)}}`],
    ['a tensor twice, once escaped', (t) => `${openEnd(t)},${escapedFirst}:${entryJson(B, firstB)}}`],
    ['"dtype" twice in an entry', (t) => replaceOnce(t, '"dtype":"BF16"', '"dtype":"BF16","dtype":"BF16"')],
    ['"shape" twice in an entry', (t) => replaceOnce(t, '"shape":', '"shape":[1],"shape":')],
    ['__metadata__ twice', (t) => replaceOnce(t, '{', '{"__metadata__":{},')],
    ['a metadata key twice', (t) => replaceOnce(t, '{"format":"pt"}', '{"format":"pt","format":"pt"}')],
    ['__proto__ twice', (t) => `${openEnd(t)},"__proto__":{},"__proto__":{}}`],
  ];
  for (const [what, f] of dupCases) await baseCase('duplicate-key', `base: ${what}`, withText(B, f), ['duplicate-key']);
  const mNameJson = JSON.stringify(firstM);
  await mixedCase(
    'duplicate-key',
    'mixed: a tensor twice',
    withText(M, (t) => `${openEnd(t)},${mNameJson}:${entryJson(M, firstM)}}`),
    ['duplicate-key'],
  );

  // --- Metadata ---------------------------------------------------------------------------------
  for (const v of ['[]', '"pt"', '{"format":1}', '{"format":null}', '{"format":{"a":"b"}}', 'null', '{"format":["pt"]}']) {
    await baseCase(
      'bad-metadata',
      `base: __metadata__ ${v}`,
      withText(B, (t) => replaceOnce(t, '{"format":"pt"}', v)),
      ['metadata'],
    );
  }

  // --- Tensor entries ---------------------------------------------------------------------------
  const entryCases: [string, (e: Entry, h: Header) => void, Expect][] = [
    ['entry is an array', (_e, h) => void (h[firstB] = []), ['tensor-entry']],
    ['entry is a string', (_e, h) => void (h[firstB] = 'x'), ['tensor-entry']],
    ['entry is null', (_e, h) => void (h[firstB] = null), ['tensor-entry']],
    ['no dtype', (e) => void delete e.dtype, ['tensor-entry']],
    ['no shape', (e) => void delete e.shape, ['tensor-entry']],
    ['no data_offsets', (e) => void delete e.data_offsets, ['tensor-entry']],
    ['dtype is a number', (e) => void (e.dtype = 16), ['tensor-entry']],
    ['shape is a string', (e) => void (e.shape = '32,16'), ['tensor-entry']],
    ['shape is an object', (e) => void (e.shape = {}), ['tensor-entry']],
    ['data_offsets of one number', (e) => void (e.data_offsets = [0]), ['tensor-entry']],
    ['data_offsets of three numbers', (e) => void (e.data_offsets = [0, 1, 2]), ['tensor-entry']],
    ['data_offsets is a string', (e) => void (e.data_offsets = '0,1024'), ['tensor-entry']],
  ];
  const mutateFirst = (p: Parsed, name: string, f: (e: Entry, h: Header) => void, data?: Uint8Array): Buffer =>
    withHeader(p, (h) => f(h[name] as Entry, h), data);
  for (const [what, f, expect] of entryCases) await baseCase('bad-tensor-entry', `base: ${what}`, mutateFirst(B, firstB, f), expect);

  // --- Dtypes -----------------------------------------------------------------------------------
  for (const d of ['F33', 'bf16', '', 'BF16 ', 'FP32', 'F8_E4M3FNUZ', 'I128', 'Q4_0', '__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
    await baseCase(
      'unknown-dtype',
      `base: dtype ${JSON.stringify(d)}`,
      mutateFirst(B, firstB, (e) => void (e.dtype = d)),
      ['unknown-dtype'],
    );
  }
  await mixedCase(
    'unknown-dtype',
    'mixed: dtype "F24"',
    mutateFirst(M, firstM, (e) => void (e.dtype = 'F24')),
    ['unknown-dtype'],
  );
  const firstEntry = B.header[firstB] as { shape: number[] };
  const firstBytes = B.tensors[0].end - B.tensors[0].begin;
  const dtypeSwaps: [string, string, number[], Expect][] = [
    ['BF16 read as F16 (same size)', 'F16', firstEntry.shape, 'ok'],
    ['BF16 read as I16 (same size, not float)', 'I16', firstEntry.shape, 'ok'],
    ['BF16 read as C64 (recognised, not readable)', 'C64', [firstBytes / 8], 'ok'],
    ['BF16 read as F4 (sub-byte, not readable)', 'F4', [firstBytes * 2], 'ok'],
    ['BF16 read as F32, shape kept', 'F32', firstEntry.shape, ['size-mismatch']],
    ['BF16 read as U8, shape kept', 'U8', firstEntry.shape, ['size-mismatch']],
    ['F6_E3M2 of a count that fills no whole bytes', 'F6_E3M2', [3], ['size-mismatch']],
  ];
  for (const [what, d, shape, expect] of dtypeSwaps) {
    await baseCase(
      'dtype-swap',
      `base: ${what}`,
      mutateFirst(B, firstB, (e) => Object.assign(e, { dtype: d, shape })),
      expect,
    );
  }

  // --- Shapes -----------------------------------------------------------------------------------
  const shapeCases: [string, unknown, Expect][] = [
    ['[-1]', [-1], ['shape']],
    ['negative first dimension', [-firstEntry.shape[0], firstEntry.shape[1]], ['shape']],
    ['fractional', [1.5], ['shape']],
    ['string dimension', ['32', 16], ['shape']],
    ['null dimension', [null, 16], ['shape']],
    ['boolean dimension', [true], ['shape']],
    ['nested array', [[32], 16], ['shape']],
    ['2^53', [2 ** 53], ['shape']],
    ['overflowing product', [2 ** 31, 2 ** 31, 2 ** 31], ['shape']],
    ['2^32 x 2^32', [2 ** 32, 2 ** 32], ['shape']],
    ['zero dimension with data', [0, 16], ['size-mismatch']],
    ['one row too many', [firstEntry.shape[0] + 1, firstEntry.shape[1]], ['size-mismatch']],
    ['transposed (valid, differs from the base)', [firstEntry.shape[1], firstEntry.shape[0]], 'ok'],
    ['flattened (valid)', [firstEntry.shape[0] * firstEntry.shape[1]], 'ok'],
    ['100 trailing unit dimensions (valid)', [...firstEntry.shape, ...Array(100).fill(1)], 'ok'],
  ];
  for (const [what, shape, expect] of shapeCases)
    await baseCase(
      'bad-shape',
      `base: shape ${what}`,
      mutateFirst(B, firstB, (e) => void (e.shape = shape)),
      expect,
    );
  await baseCase(
    'bad-shape',
    'base: dimension 1e400',
    withText(B, (t) => replaceOnce(t, '"shape":[', '"shape":[1e400,')),
    ['shape'],
  );
  await baseCase(
    'bad-shape',
    'base: dimension -0',
    withText(B, (t) => replaceOnce(t, '"shape":[', '"shape":[-0,')),
    ['size-mismatch'],
  );
  // Zero-element tensors with absurd dimensions are valid (the reference accepts them): they must not allocate per row.
  const D = B.data.length;
  for (const shape of [
    [2 ** 40, 0],
    [0, 2 ** 40],
    [2 ** 52, 0, 2 ** 52],
  ]) {
    await baseCase(
      'degenerate-shape',
      `base: extra tensor of shape [${shape.join(', ')}]`,
      withHeader(B, (h) => void (h['zz.degenerate'] = { dtype: 'BF16', shape, data_offsets: [D, D] })),
      'ok',
    );
  }

  // --- Offsets: holes, overlaps, wrong values ---------------------------------------------------
  const k = 5;
  const at = B.tensors[k].begin;
  const sameSize = B.tensors.findIndex((t, i) => i > 0 && t.end - t.begin === B.tensors[0].end - B.tensors[0].begin);
  const offsetCases: [string, Buffer, Expect][] = [
    ['hole at the start', withHeader(B, (h) => shiftFrom(h, B, 0, 2), Buffer.concat([Buffer.alloc(2), B.data])), ['offsets']],
    [
      'hole between tensors',
      withHeader(B, (h) => shiftFrom(h, B, k, 2), Buffer.concat([B.data.subarray(0, at), Buffer.alloc(2), B.data.subarray(at)])),
      ['offsets'],
    ],
    ['overlapping tensors', withHeader(B, (h) => shiftFrom(h, B, k, -2), Buffer.concat([B.data.subarray(0, at - 2), B.data.subarray(at)])), ['offsets']],
    ['begin after end', mutateFirst(B, B.tensors[0].name, (e) => void (e.data_offsets = [B.tensors[0].end, B.tensors[0].begin])), ['offsets']],
    ['negative begin', mutateFirst(B, B.tensors[0].name, (e) => void (e.data_offsets = [-2, B.tensors[0].end - 2])), ['offsets']],
    ['fractional offsets', mutateFirst(B, B.tensors[0].name, (e) => void (e.data_offsets = [0.5, B.tensors[0].end + 0.5])), ['offsets']],
    ['string offsets', mutateFirst(B, B.tensors[0].name, (e) => void (e.data_offsets = ['0', String(B.tensors[0].end)])), ['offsets']],
    ['offsets beyond 2^53', mutateFirst(B, B.tensors[0].name, (e) => void (e.data_offsets = [2 ** 53, 2 ** 53 + B.tensors[0].end])), ['offsets']],
    [
      'last tensor past the end',
      mutateFirst(B, B.tensors[B.tensors.length - 1].name, (e) => {
        const t = B.tensors[B.tensors.length - 1];
        e.data_offsets = [t.begin + 64, t.end + 64];
      }),
      ['offsets'],
    ],
    [
      'two tensors on the same bytes',
      mutateFirst(B, B.tensors[sameSize].name, (e) => void (e.data_offsets = [B.tensors[0].begin, B.tensors[0].end])),
      ['offsets'],
    ],
    [
      'every tensor at [0, 0]',
      withHeader(B, (h) => {
        for (const t of B.tensors) (h[t.name] as Entry).data_offsets = [0, 0];
      }),
      ['size-mismatch'],
    ],
  ];
  for (const [what, bytes, expect] of offsetCases) await baseCase('bad-offsets', `base: ${what}`, bytes, expect);
  // The data laid out in reverse order, offsets to match: valid, and equal to the base value for value.
  {
    const rev = [...B.tensors].reverse();
    const chunks: Buffer[] = [];
    let off = 0;
    const h = cloneHeader(B);
    for (const t of rev) {
      chunks.push(B.data.subarray(t.begin, t.end));
      (h[t.name] as Entry).data_offsets = [off, off + t.end - t.begin];
      off += t.end - t.begin;
    }
    await baseCase('bad-offsets', 'base: data in reverse order (valid)', rawFile(JSON.stringify(h), Buffer.concat(chunks)), 'ok', (r) =>
      r.tensors.some((t) => t.changed !== 0) ? 'a re-laid-out copy of the base must equal the base' : undefined,
    );
  }
  await mixedCase(
    'bad-offsets',
    'mixed: hole at the start',
    withHeader(M, (h) => shiftFrom(h, M, 0, 4), Buffer.concat([Buffer.alloc(4), M.data])),
    ['offsets'],
  );

  // --- Data length not matching the header ------------------------------------------------------
  for (const extra of [1, 7, 4096]) {
    await baseCase('trailing-bytes', `base: ${extra} bytes after the data`, Buffer.concat([B.bytes, Buffer.alloc(extra, 0x55)]), ['file-length']);
    await mixedCase('trailing-bytes', `mixed: ${extra} bytes after the data`, Buffer.concat([M.bytes, Buffer.alloc(extra, 0x55)]), ['file-length']);
  }
  await baseCase(
    'size-mismatch',
    'base: a tensor 2 bytes shorter than numel x size',
    withHeader(
      B,
      (h) => {
        const e = h[B.tensors[k].name] as Entry;
        const [b, en] = e.data_offsets as [number, number];
        e.data_offsets = [b, en - 2];
        shiftFrom(h, B, k + 1, -2);
      },
      B.data.subarray(0, B.data.length - 2),
    ),
    ['size-mismatch'],
  );
  await mixedCase(
    'size-mismatch',
    'mixed: an F64 tensor given the byte span of F32',
    withHeader(
      M,
      (h) => {
        const t = M.tensors.find((x) => x.name === 'w.f64')!;
        const half = (t.end - t.begin) / 2;
        (h[t.name] as Entry).data_offsets = [t.begin, t.begin + half];
        shiftFrom(h, M, M.tensors.indexOf(t) + 1, -half);
      },
      Buffer.concat([
        M.data.subarray(0, M.tensors.find((x) => x.name === 'w.f64')!.begin + 24),
        M.data.subarray(M.tensors.find((x) => x.name === 'w.f64')!.end),
      ]),
    ),
    ['size-mismatch'],
  );
  await baseCase(
    'size-mismatch',
    'base: a tensor 2 bytes longer than numel x size',
    withHeader(
      B,
      (h) => {
        const e = h[B.tensors[k].name] as Entry;
        const [b, en] = e.data_offsets as [number, number];
        e.data_offsets = [b, en + 2];
        shiftFrom(h, B, k + 1, 2);
      },
      Buffer.concat([B.data, Buffer.alloc(2)]),
    ),
    ['size-mismatch'],
  );

  // --- Seeded bit flips in the header -----------------------------------------------------------
  const flips = async (p: Parsed, count: number, label: string, sink: Sink): Promise<void> => {
    const seen = new Set<string>();
    while (seen.size < count) {
      const pos = Math.floor(rand() * p.dataStart);
      const bit = Math.floor(rand() * 8);
      const key = `${pos}:${bit}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const out = Buffer.from(p.bytes);
      out[pos] ^= 1 << bit;
      await sink(
        'bit-flip-header',
        `${label}: byte ${pos} bit ${bit} (${JSON.stringify(String.fromCharCode(p.bytes[pos]))} -> ${JSON.stringify(String.fromCharCode(out[pos]))})`,
        out,
        'either',
      );
    }
  };
  await flips(B, opts.headerFlips ?? 300, 'base', (c, w, b, e) => baseCase(c, w, b, e));
  await flips(M, opts.mixedHeaderFlips ?? 60, 'mixed', mixedCase);

  // --- Data damage: still a valid file, numbers must stay finite ---------------------------------
  for (let i = 0; i < 10; i++) {
    const out = Buffer.from(B.bytes);
    const pos = B.dataStart + Math.floor(rand() * B.data.length);
    out[pos] ^= 1 << Math.floor(rand() * 8);
    await baseCase('bit-flip-data', `base: data byte ${pos}`, out, 'ok');
  }
  for (let i = 0; i < 20; i++) {
    const out = Buffer.from(M.bytes);
    const pos = M.dataStart + Math.floor(rand() * M.data.length);
    out[pos] ^= 1 << Math.floor(rand() * 8);
    await mixedCase('bit-flip-data', `mixed: data byte ${pos}`, out, 'ok');
  }
  {
    // The exponent bits of F64 and F32 values: huge but finite numbers.
    const out = Buffer.from(M.bytes);
    const f64 = M.tensors.find((t) => t.name === 'w.f64')!;
    const f32 = M.tensors.find((t) => t.name === 'w.f32')!;
    out.writeDoubleLE(1e300, M.dataStart + f64.begin);
    out.writeDoubleLE(-1e300, M.dataStart + f64.begin + 8);
    out.writeFloatLE(3e38, M.dataStart + f32.begin);
    await mixedCase('huge-finite-data', 'mixed: F64 values of 1e300 and an F32 value of 3e38', out, 'ok');
  }
  {
    const t = B.tensors.find((x) => x.name.endsWith('q_proj.weight'))!;
    const out = Buffer.from(B.bytes);
    [0x7fc0, 0x7f80, 0xff80, 0xffff].forEach((bits, i) => out.writeUInt16LE(bits, B.dataStart + t.begin + 2 * i));
    await baseCase('non-finite-data', `base: NaN, +Inf, -Inf and a negative NaN in ${t.name}`, out, 'ok', (r) => {
      const d = r.tensors.find((x) => x.name === t.name);
      return d && d.nonFinite === 4 ? undefined : `expected 4 non-finite entries in ${t.name}, got ${d?.nonFinite}`;
    });
  }

  // --- Sharded checkpoints: the index ----------------------------------------------------------
  const wm = index.weight_map;
  const names = Object.keys(wm);
  const remap = (f: (m: Record<string, unknown>) => void): Record<string, unknown> => {
    const m: Record<string, unknown> = { ...wm };
    f(m);
    return m;
  };
  const indexCases: [string, (d: string) => Promise<void>, Expect][] = [
    [
      'the index names a shard that is not there',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = 'model-00003-of-00003.safetensors')),
        ),
      ['missing-shard'],
    ],
    ['a shard file is missing', (d) => fsp.rm(path.join(d, shard0)), ['missing-shard']],
    [
      'shard "../x.safetensors"',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = '../x.safetensors')),
        ),
      ['shard-path'],
    ],
    [
      'shard "../../../../etc/passwd"',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = '../../../../etc/passwd')),
        ),
      ['shard-path'],
    ],
    [
      'shard "sub/../../x"',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = 'sub/../../x.safetensors')),
        ),
      ['shard-path'],
    ],
    [
      'shard ".."',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = '..')),
        ),
      ['shard-path'],
    ],
    [
      'shard as an absolute path to a real shard',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = path.resolve(d, shard0))),
        ),
      ['shard-path'],
    ],
    [
      'shard as an absolute path outside',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = path.resolve(outside))),
        ),
      ['shard-path'],
    ],
    [
      'shard "."',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = '.')),
        ),
      ['io'],
    ],
    [
      'shard named "" ',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = '')),
        ),
      ['index'],
    ],
    [
      'shard named by a number',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = 7)),
        ),
      ['index'],
    ],
    ['weight_map missing', (d) => fsp.writeFile(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: {} })), ['index']],
    ['weight_map is an array', (d) => writeIndex(d, []), ['index']],
    ['weight_map is empty', (d) => writeIndex(d, {}), ['index']],
    ['index is not JSON', (d) => fsp.writeFile(path.join(d, 'model.safetensors.index.json'), indexText.slice(0, 100)), ['index']],
    ['index is a JSON array', (d) => fsp.writeFile(path.join(d, 'model.safetensors.index.json'), '[]'), ['index']],
    ['index is empty', (d) => fsp.writeFile(path.join(d, 'model.safetensors.index.json'), ''), ['index']],
    [
      'index with a duplicate key',
      (d) =>
        fsp.writeFile(path.join(d, 'model.safetensors.index.json'), indexText.replace('"weight_map": {', `"weight_map": {"${names[0]}": "${wm[names[0]]}",`)),
      ['index'],
    ],
    [
      'index is a folder',
      async (d) => {
        await fsp.rm(path.join(d, 'model.safetensors.index.json'));
        await fsp.mkdir(path.join(d, 'model.safetensors.index.json'));
      },
      ['index'],
    ],
    [
      'a tensor mapped to the wrong shard',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = shardNames.find((s) => s !== wm[names[0]]))),
        ),
      ['index-mismatch'],
    ],
    [
      'a tensor in the index that no shard holds',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m['model.extra.weight'] = shard0)),
        ),
      ['index-mismatch'],
    ],
    [
      'the index names itself as a shard',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = 'model.safetensors.index.json')),
        ),
      'error',
    ],
    [
      'a shard name with a NUL byte',
      (d) =>
        writeIndex(
          d,
          remap((m) => void (m[names[0]] = 'model\u0000.safetensors')),
        ),
      'error',
    ],
    [
      'the same shard named two ways',
      (d) =>
        writeIndex(
          d,
          remap((m) => {
            for (const nm of names) if (m[nm] === shard0) m[nm] = `./${shard0}`;
            m[names.find((nm) => wm[nm] === shard0)!] = shard0;
          }),
        ),
      ['index-mismatch'],
    ],
    // Valid layouts a strict reader must not refuse.
    [
      'a shard named "..model.safetensors" (inside the folder)',
      async (d) => {
        await fsp.rename(path.join(d, shard0), path.join(d, `..${shard0}`));
        await writeIndex(
          d,
          remap((m) => {
            for (const nm of names) if (m[nm] === shard0) m[nm] = `..${shard0}`;
          }),
        );
      },
      'ok',
    ],
    [
      'a shard in a subfolder',
      async (d) => {
        await fsp.mkdir(path.join(d, 'sub'));
        await fsp.rename(path.join(d, shard0), path.join(d, 'sub', shard0));
        await writeIndex(
          d,
          remap((m) => {
            for (const nm of names) if (m[nm] === shard0) m[nm] = `sub/${shard0}`;
          }),
        );
      },
      'ok',
    ],
  ];
  for (const [what, edit, expect] of indexCases) await shardedCase('bad-index', what, edit, expect);

  // --- Links and special files (POSIX) ---------------------------------------------------------
  if (POSIX) {
    const linkCases: [string, (d: string) => Promise<void>, Expect][] = [
      [
        'a shard linked to a file outside (absolute link)',
        async (d) => {
          await fsp.rm(path.join(d, shard0));
          await fsp.symlink(path.resolve(outside), path.join(d, shard0));
        },
        ['shard-path'],
      ],
      [
        'a shard linked to a file outside (relative link)',
        async (d) => {
          await fsp.rm(path.join(d, shard0));
          await fsp.symlink(path.relative(d, outside), path.join(d, shard0));
        },
        ['shard-path'],
      ],
      [
        'a shard linked to /dev/zero',
        async (d) => {
          await fsp.rm(path.join(d, shard0));
          await fsp.symlink('/dev/zero', path.join(d, shard0));
        },
        ['shard-path'],
      ],
      [
        'a dangling shard link',
        async (d) => {
          await fsp.rm(path.join(d, shard0));
          await fsp.symlink('nowhere.safetensors', path.join(d, shard0));
        },
        ['missing-shard'],
      ],
      [
        'a shard link loop',
        async (d) => {
          await fsp.rm(path.join(d, shard0));
          await fsp.symlink('loop-b', path.join(d, shard0));
          await fsp.symlink(shard0, path.join(d, 'loop-b'));
        },
        ['io'],
      ],
      [
        'a shard that is a FIFO',
        async (d) => {
          await fsp.rm(path.join(d, shard0));
          execFileSync('mkfifo', [path.join(d, shard0)]);
        },
        ['io'],
      ],
      [
        'the index is a FIFO',
        async (d) => {
          await fsp.rm(path.join(d, 'model.safetensors.index.json'));
          execFileSync('mkfifo', [path.join(d, 'model.safetensors.index.json')]);
        },
        ['index'],
      ],
      [
        'config.json is a FIFO (ignored)',
        async (d) => {
          await fsp.rm(path.join(d, 'config.json'));
          execFileSync('mkfifo', [path.join(d, 'config.json')]);
        },
        'ok',
      ],
      [
        'a shard linked inside the folder (valid)',
        async (d) => {
          await fsp.mkdir(path.join(d, 'real'));
          await fsp.rename(path.join(d, shard0), path.join(d, 'real', shard0));
          await fsp.symlink(path.join('real', shard0), path.join(d, shard0));
        },
        'ok',
      ],
    ];
    for (const [what, edit, expect] of linkCases) await shardedCase('links-and-special-files', what, edit, expect);
    // Hugging Face hub cache: snapshot files are links into the repository's blobs/ (valid).
    {
      const d = await caseDir();
      const snap = path.join(d, 'models--org--tiny', 'snapshots', 'abc123');
      await fsp.mkdir(snap, { recursive: true });
      await fsp.mkdir(path.join(d, 'models--org--tiny', 'blobs'));
      let i = 0;
      for (const f of await fsp.readdir(shardedDir)) {
        const blob = path.join(d, 'models--org--tiny', 'blobs', `blob${i++}`);
        await fsp.copyFile(path.join(shardedDir, f), blob);
        await fsp.symlink(path.relative(snap, blob), path.join(snap, f));
      }
      push({ cls: 'links-and-special-files', what: 'Hugging Face hub cache snapshot (shards link into blobs/)', base, target: snap, root: d, expect: 'ok' });
    }
    const single: [string, (d: string) => Promise<string>, Expect][] = [
      [
        'model.safetensors linked to a file outside (single-file folder)',
        async (d) => {
          await fsp.symlink(path.resolve(baseFile), path.join(d, 'model.safetensors'));
          return d;
        },
        'either',
      ],
      [
        'model.safetensors linked to /dev/zero',
        async (d) => {
          await fsp.symlink('/dev/zero', path.join(d, 'model.safetensors'));
          return d;
        },
        ['io'],
      ],
      [
        'model.safetensors is a FIFO',
        async (d) => {
          execFileSync('mkfifo', [path.join(d, 'model.safetensors')]);
          return d;
        },
        ['io'],
      ],
      [
        'model.safetensors is a folder',
        async (d) => {
          await fsp.mkdir(path.join(d, 'model.safetensors'));
          return d;
        },
        ['io'],
      ],
      [
        'the checkpoint path itself is a FIFO',
        async (d) => {
          execFileSync('mkfifo', [path.join(d, 'x.safetensors')]);
          return path.join(d, 'x.safetensors');
        },
        ['io'],
      ],
      [
        'a loose *.safetensors that is a FIFO',
        async (d) => {
          execFileSync('mkfifo', [path.join(d, 'a.safetensors')]);
          return d;
        },
        ['io'],
      ],
    ];
    for (const [what, make, expect] of single) {
      const d = await caseDir();
      push({ cls: 'links-and-special-files', what, base, target: await make(d), root: d, expect });
    }
  }

  return { dir, cases, base };
}

/** Every number in a result is finite (null is allowed: "not defined", e.g. a zero base norm). */
export function nonFiniteNumbers(v: unknown, at = '$', out: string[] = []): string[] {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) out.push(`${at} = ${v}`);
  } else if (Array.isArray(v)) {
    v.forEach((x, i) => nonFiniteNumbers(x, `${at}[${i}]`, out));
  } else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) nonFiniteNumbers(x, `${at}.${k}`, out);
  }
  return out;
}
