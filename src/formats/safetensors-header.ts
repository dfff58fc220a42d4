/**
 * The safetensors header parser: one linear pass over the JSON text that knows the header's schema,
 * then a pass of checks over compact records.
 *
 * Why not JSON.parse or the generic strict parser: a header may be up to 100 MB (a million tensor entries,
 * or a large `__metadata__`). Building a generic object per entry (dictionary-mode, null-prototype objects,
 * a regular expression per number, BigInt per dimension) cost 0.1-0.3 s per MB. Here each tensor entry
 * becomes one small fixed-shape record, integers are read digit by digit, and element counts use exact
 * float64 arithmetic with an overflow test. The grammar accepted, the duplicate-key refusal at any depth,
 * the depth limit and every error are those of `parseStrictJson` followed by the checks of the format:
 * `test/support/reference-header.ts` keeps that slow composition as the reference the tests compare with.
 */
import { CheckpointFormatError } from './errors';
import { DTYPES, type Dtype, isDtype } from './dtype';
import { JSON_NUMBER, LONE_SURROGATE, MAX_DEPTH, StrictJsonError, type JsonValue } from './strict-json';

export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  numel: number;
  /** Byte offsets relative to the start of the data section. */
  begin: number;
  end: number;
}

export interface ParsedHeader {
  tensors: TensorInfo[];
  metadata: Record<string, string>;
}

interface RawHeader {
  /** The entries that passed the format's checks, in the order written. */
  tensors: TensorInfo[];
  /** The `__metadata__` object's text, checked (a string map, no duplicate key), decoded only when asked for. */
  metadataText: string | undefined;
  /** The first entry (or `__metadata__`) that breaks a rule of the format; thrown once the JSON is known valid. */
  problem: CheckpointFormatError | undefined;
}

/** Parses and validates a header buffer. `file` only names errors. */
export function parseHeader(file: string, headerBytes: Uint8Array, dataBytes: number): ParsedHeader {
  let text: string;
  try {
    // ignoreBOM keeps a byte-order mark in the text, so it is refused below like the reference does.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    throw new CheckpointFormatError(file, 'header-utf8', 'the header is not valid UTF-8');
  }
  if (!text.startsWith('{')) {
    throw new CheckpointFormatError(file, 'header-not-object', 'the header does not start with "{"');
  }
  let raw: RawHeader;
  try {
    raw = scanHeader(file, text);
  } catch (e) {
    if (e instanceof StrictJsonError && e.duplicateKey !== undefined) {
      throw new CheckpointFormatError(file, 'duplicate-key', `the header names ${JSON.stringify(e.duplicateKey)} twice`);
    }
    throw new CheckpointFormatError(file, 'header-json', `the header is not valid JSON (${(e as Error).message})`);
  }
  return checkHeader(file, raw, dataBytes);
}

// ---------------------------------------------------------------------------------------------
// Pass 1: the JSON grammar (as strict as parseStrictJson), keeping only what the format needs.

function scanHeader(file: string, text: string): RawHeader {
  const n = text.length;
  let i = 0;

  const fail = (msg: string): never => {
    throw new StrictJsonError(msg, i);
  };

  // Hot loops run on a local index (a register) and store the shared one once.
  const ws = (): void => {
    let j = i;
    while (j < n) {
      const c = text.charCodeAt(j);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) j++;
      else break;
    }
    i = j;
  };

  const parseString = (): string => {
    const start = i;
    let j = i + 1;
    let hasEscape = false;
    while (j < n) {
      const c = text.charCodeAt(j);
      if (c === 0x22) break;
      if (c === 0x5c) {
        hasEscape = true;
        j += 2;
        continue;
      }
      if (c < 0x20) {
        i = j;
        fail('control character in string');
      }
      j++;
    }
    i = j;
    if (i >= n) fail('unterminated string');
    i++;
    if (!hasEscape) return text.slice(start + 1, i - 1);
    let value: string;
    try {
      // JSON.parse of this one token decodes the escapes exactly.
      value = JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail('invalid escape in string');
    }
    if (LONE_SURROGATE.test(value)) {
      i = start;
      return fail('unpaired surrogate escape in string');
    }
    return value;
  };

  /** A string token checked like parseString; returns its decoded value only when it has escapes. */
  const scanString = (): string | undefined => {
    const start = i;
    let j = i + 1;
    while (j < n) {
      const c = text.charCodeAt(j);
      if (c === 0x22) {
        i = j + 1;
        return undefined;
      }
      if (c === 0x5c) break;
      if (c < 0x20) {
        i = j;
        fail('control character in string');
      }
      j++;
    }
    i = start;
    return parseString();
  };

  const parseNumber = (): number => {
    // Integers (every shape and offset) digit by digit; anything else by the grammar's regular expression.
    const start = i;
    let j = i;
    if (text.charCodeAt(j) === 0x2d) j++;
    const first = text.charCodeAt(j);
    if (first === 0x30) j++;
    else if (first >= 0x31 && first <= 0x39) {
      j++;
      while (j < n) {
        const c = text.charCodeAt(j);
        if (c < 0x30 || c > 0x39) break;
        j++;
      }
    } else return fail('invalid number');
    const next = j < n ? text.charCodeAt(j) : 0;
    if (next !== 0x2e && next !== 0x65 && next !== 0x45) {
      i = j;
      const digits = j - start;
      if (digits <= 15) {
        let v = 0;
        let k = start;
        const negative = text.charCodeAt(k) === 0x2d;
        if (negative) k++;
        for (; k < j; k++) v = v * 10 + (text.charCodeAt(k) - 0x30);
        return negative ? -v : v;
      }
      return Number(text.slice(start, j));
    }
    const m = JSON_NUMBER.exec(text.slice(start, start + 64));
    if (!m) return fail('invalid number');
    i = start + m[0].length;
    return Number(m[0]);
  };

  /** A whole value as JSON (used for the small members of an entry and for anything unexpected). */
  const parseValue = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail('nesting too deep');
    ws();
    if (i >= n) fail('unexpected end of input');
    const c = text.charCodeAt(i);
    if (c === 0x7b) {
      i++;
      const obj: { [key: string]: JsonValue } = Object.create(null);
      ws();
      if (text.charCodeAt(i) === 0x7d) {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        const keyPos = i;
        const key = parseKey();
        if (Object.prototype.hasOwnProperty.call(obj, key)) throw new StrictJsonError(`duplicate key ${JSON.stringify(key)}`, keyPos, key);
        colon();
        obj[key] = parseValue(depth + 1);
        if (endOfMember('}')) return obj;
      }
    }
    if (c === 0x5b) {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text.charCodeAt(i) === 0x5d) {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(depth + 1));
        if (endOfMember(']')) return arr;
      }
    }
    if (c === 0x22) return parseString();
    if (text.startsWith('true', i)) {
      i += 4;
      return true;
    }
    if (text.startsWith('false', i)) {
      i += 5;
      return false;
    }
    if (text.startsWith('null', i)) {
      i += 4;
      return null;
    }
    return parseNumber();
  };

  /** A member's key (whitespace before it already skipped). The caller checks it is new, then calls colon(). */
  const parseKey = (): string => {
    if (text.charCodeAt(i) !== 0x22) fail('expected a string key');
    return parseString();
  };

  const colon = (): void => {
    ws();
    if (text.charCodeAt(i) !== 0x3a) fail("expected ':'");
    i++;
  };

  /** After a member: true at the closing bracket (consumed), false at a comma (consumed). */
  const endOfMember = (close: '}' | ']'): boolean => {
    ws();
    const c = text[i];
    if (c === ',') {
      i++;
      return false;
    }
    if (c === close) {
      i++;
      return true;
    }
    return fail(close === '}' ? "expected ',' or '}'" : "expected ',' or ']'");
  };

  /** Opens an object: true when it is empty (and consumed). */
  const openObject = (): boolean => {
    i++;
    ws();
    if (text.charCodeAt(i) === 0x7d) {
      i++;
      return true;
    }
    return false;
  };

  const header: RawHeader = { tensors: [], metadataText: undefined, problem: undefined };
  const note = (result: TensorInfo | CheckpointFormatError): void => {
    if (result instanceof CheckpointFormatError) header.problem ??= result;
    else header.tensors.push(result);
  };

  const parseEntry = (name: string): void => {
    ws();
    if (i >= n) fail('unexpected end of input');
    if (text.charCodeAt(i) !== 0x7b) {
      parseValue(1);
      note(checkEntry(file, name, false, undefined, undefined, undefined));
      return;
    }
    let dtype: JsonValue | undefined;
    let shape: JsonValue | undefined;
    let offsets: JsonValue | undefined;
    if (!openObject()) {
      // The three members of the format by flag; any other member by a set made only when one appears.
      let seen = 0;
      let others: Set<string> | undefined;
      for (;;) {
        ws();
        const keyPos = i;
        const key = parseKey();
        const bit = key === 'dtype' ? 1 : key === 'shape' ? 2 : key === 'data_offsets' ? 4 : 0;
        if (bit !== 0) {
          if (seen & bit) throw new StrictJsonError(`duplicate key ${JSON.stringify(key)}`, keyPos, key);
          seen |= bit;
          colon();
          const value = parseValue(2);
          if (bit === 1) dtype = value;
          else if (bit === 2) shape = value;
          else offsets = value;
        } else {
          others ??= new Set();
          if (others.has(key)) throw new StrictJsonError(`duplicate key ${JSON.stringify(key)}`, keyPos, key);
          others.add(key);
          colon();
          parseValue(2);
        }
        if (endOfMember('}')) break;
      }
    }
    note(checkEntry(file, name, true, dtype, shape, offsets));
  };

  /**
   * `__metadata__` is checked without building it: a header may hold millions of metadata members, and
   * Gatescope reads them only when it copies a file. Keys go into a hash set of text ranges (no string per
   * key unless it has escapes); values are scanned as strings. The object's text is kept for a later JSON.parse,
   * which is then exact: the grammar is checked and no key repeats.
   */
  const parseMetadata = (): void => {
    ws();
    if (i >= n) fail('unexpected end of input');
    if (text.charCodeAt(i) !== 0x7b) {
      parseValue(1);
      header.problem ??= new CheckpointFormatError(file, 'metadata', '__metadata__ is not an object');
      return;
    }
    const start = i;
    if (openObject()) {
      header.metadataText = text.slice(start, i);
      return;
    }
    const keys = new KeyRangeSet(text);
    for (;;) {
      ws();
      const keyPos = i;
      if (text.charCodeAt(i) !== 0x22) fail('expected a string key');
      const decoded = scanString();
      const keyEnd = i - 1;
      const keyName = (): string => decoded ?? text.slice(keyPos + 1, keyEnd);
      if (!keys.add(keyPos + 1, keyEnd, decoded)) throw new StrictJsonError(`duplicate key ${JSON.stringify(keyName())}`, keyPos, keyName());
      colon();
      ws();
      if (i < n && text.charCodeAt(i) === 0x22) scanString();
      else {
        parseValue(2);
        header.problem ??= new CheckpointFormatError(file, 'metadata', `__metadata__[${JSON.stringify(keyName())}] is not a string`);
      }
      if (endOfMember('}')) break;
    }
    header.metadataText = text.slice(start, i);
  };

  // The caller has checked the text starts with '{'.
  if (!openObject()) {
    const names = new Set<string>();
    for (;;) {
      ws();
      const keyPos = i;
      const key = parseKey();
      if (names.has(key)) throw new StrictJsonError(`duplicate key ${JSON.stringify(key)}`, keyPos, key);
      names.add(key);
      colon();
      if (key === '__metadata__') parseMetadata();
      else parseEntry(key);
      if (endOfMember('}')) break;
    }
  }
  ws();
  if (i !== n) fail('trailing characters after JSON value');
  return header;
}

// Pass 2: the format's rules, in the order of the entries.

function checkHeader(file: string, raw: RawHeader, dataBytes: number): ParsedHeader {
  if (raw.problem) throw raw.problem;
  const { metadataText } = raw;
  let metadata: Record<string, string> | undefined;
  const lazyMetadata = (): Record<string, string> => {
    // JSON.parse makes a "__proto__" key an own data property, not a prototype change.
    metadata ??= metadataText === undefined ? {} : (JSON.parse(metadataText) as Record<string, string>);
    return metadata;
  };
  const { tensors } = raw;
  let sorted = true;
  for (let t = 1; t < tensors.length; t++) {
    const prev = tensors[t - 1];
    const cur = tensors[t];
    if (cur.begin < prev.begin || (cur.begin === prev.begin && cur.end < prev.end)) {
      sorted = false;
      break;
    }
  }
  // Offsets must tile the data section from 0 with no hole and no overlap. Writers store them in order,
  // so the sort is needed only when they are not.
  const byOffset = sorted ? tensors : [...tensors].sort((x, y) => x.begin - y.begin || x.end - y.end);
  let cursor = 0;
  for (const t of byOffset) {
    if (t.begin !== cursor) {
      const what = t.begin > cursor ? `a hole of ${t.begin - cursor} bytes before it` : `it overlaps the previous tensor by ${cursor - t.begin} bytes`;
      throw new CheckpointFormatError(file, 'offsets', `data starts at ${t.begin}, expected ${cursor}: ${what}`, t.name);
    }
    cursor = t.end;
  }
  if (cursor !== dataBytes) {
    const detail =
      cursor > dataBytes
        ? `shorter than the header says: data section is ${dataBytes} bytes, tensors need ${cursor} (still being written?)`
        : `longer than the header says: data section is ${dataBytes} bytes, tensors end at ${cursor}`;
    throw new CheckpointFormatError(file, 'file-length', detail);
  }
  return {
    tensors,
    get metadata() {
      return lazyMetadata();
    },
  };
}

/** The dtype names as module constants, so an entry keeps no copy of its dtype string. */
const DTYPE_NAMES: ReadonlyMap<string, Dtype> = new Map((Object.keys(DTYPES) as Dtype[]).map((d) => [d, d]));

/** One entry's checks; returns the error rather than throwing it, since a JSON error later in the text comes first. */
function checkEntry(
  file: string,
  key: string,
  isObject: boolean,
  dtypeValue: JsonValue | undefined,
  shape: JsonValue | undefined,
  offsets: JsonValue | undefined,
): TensorInfo | CheckpointFormatError {
  if (!isObject) return new CheckpointFormatError(file, 'tensor-entry', 'entry is not an object', key);
  if (typeof dtypeValue !== 'string') return new CheckpointFormatError(file, 'tensor-entry', 'dtype missing or not a string', key);
  const dtype = DTYPE_NAMES.get(dtypeValue);
  if (dtype === undefined || !isDtype(dtype)) return new CheckpointFormatError(file, 'unknown-dtype', `unknown dtype ${JSON.stringify(dtypeValue)}`, key);
  if (!Array.isArray(shape)) return new CheckpointFormatError(file, 'tensor-entry', 'shape missing or not an array', key);
  if (!Array.isArray(offsets) || offsets.length !== 2)
    return new CheckpointFormatError(file, 'tensor-entry', 'data_offsets missing or not a [begin, end] pair', key);
  // Exact in float64: a product of safe integers is exact up to 2^53, and any true product past
  // MAX_SAFE_INTEGER rounds to at least 2^53, so the test below never misses an overflow.
  let numel = 1;
  for (let k = 0; k < shape.length; k++) {
    const d = shape[k];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      return new CheckpointFormatError(file, 'shape', `dimension ${JSON.stringify(d)} is not a non-negative integer`, key);
    }
    numel *= d;
    if (numel > Number.MAX_SAFE_INTEGER)
      return new CheckpointFormatError(file, 'shape', `element count of shape [${shape.map((x) => JSON.stringify(x)).join(', ')}] overflows`, key);
  }
  const b = offsets[0];
  const e = offsets[1];
  if (typeof b !== 'number' || typeof e !== 'number' || !Number.isSafeInteger(b) || !Number.isSafeInteger(e) || b < 0 || e < b) {
    return new CheckpointFormatError(file, 'offsets', `data_offsets ${JSON.stringify(offsets)} are not an ordered pair of non-negative integers`, key);
  }
  const bits = DTYPES[dtype].bits;
  if (bits % 8 === 0) {
    // numel x bytes may pass 2^53 only when it cannot equal e - b (a safe integer); exact figures for the message.
    if (numel * (bits / 8) !== e - b) {
      return new CheckpointFormatError(
        file,
        'size-mismatch',
        `data_offsets span ${e - b} bytes but ${numel} x ${dtype} needs ${BigInt(numel) * BigInt(bits / 8)}`,
        key,
      );
    }
  } else {
    const nbits = BigInt(numel) * BigInt(bits);
    if (nbits % 8n !== 0n) return new CheckpointFormatError(file, 'size-mismatch', `${numel} elements of ${dtype} do not fill whole bytes`, key);
    if (BigInt(e - b) !== nbits / 8n) {
      return new CheckpointFormatError(file, 'size-mismatch', `data_offsets span ${e - b} bytes but ${numel} x ${dtype} needs ${nbits / 8n}`, key);
    }
  }
  // The shape array was made by the parser for this entry alone and holds only numbers now.
  return { name: key, dtype, shape: shape as number[], numel, begin: b, end: e };
}

/**
 * A set of JSON object keys held as ranges of the header text (or as decoded strings when they had escapes),
 * open addressing over typed arrays: millions of keys cost no JavaScript object each.
 */
class KeyRangeSet {
  private starts: Int32Array<ArrayBuffer> = new Int32Array(1024);
  private ends: Int32Array<ArrayBuffer> = new Int32Array(1024);
  private hashes: Int32Array<ArrayBuffer> = new Int32Array(1024);
  private decoded: Map<number, string> | undefined;
  private count = 0;
  /** Slot -> key index + 1 (0: empty). */
  private slots = new Int32Array(2048);

  constructor(private readonly text: string) {}

  /** Adds the key at text[start, end) (decoded: its value when it had escapes); false when it is already there. */
  add(start: number, end: number, decoded: string | undefined): boolean {
    const h = decoded === undefined ? this.hashRange(start, end) : KeyRangeSet.hashString(decoded);
    const mask = this.slots.length - 1;
    for (let slot = h & mask; ; slot = (slot + 1) & mask) {
      const at = this.slots[slot];
      if (at === 0) break;
      const k = at - 1;
      if (this.hashes[k] === h && this.equals(k, start, end, decoded)) return false;
    }
    const k = this.count++;
    if (k === this.starts.length) this.growKeys();
    this.starts[k] = start;
    this.ends[k] = end;
    this.hashes[k] = h;
    if (decoded !== undefined) (this.decoded ??= new Map()).set(k, decoded);
    if (this.count * 2 > this.slots.length) this.rehash();
    else this.place(k, h);
    return true;
  }

  private place(k: number, h: number): void {
    const mask = this.slots.length - 1;
    let slot = h & mask;
    while (this.slots[slot] !== 0) slot = (slot + 1) & mask;
    this.slots[slot] = k + 1;
  }

  private rehash(): void {
    this.slots = new Int32Array(this.slots.length * 2);
    for (let k = 0; k < this.count; k++) this.place(k, this.hashes[k]);
  }

  private growKeys(): void {
    const grow = (a: Int32Array): Int32Array<ArrayBuffer> => {
      const b = new Int32Array(a.length * 2);
      b.set(a);
      return b;
    };
    this.starts = grow(this.starts);
    this.ends = grow(this.ends);
    this.hashes = grow(this.hashes);
  }

  private equals(k: number, start: number, end: number, decoded: string | undefined): boolean {
    const mine = this.decoded?.get(k);
    const a = mine ?? this.text;
    const aStart = mine === undefined ? this.starts[k] : 0;
    const aLen = mine === undefined ? this.ends[k] - this.starts[k] : mine.length;
    const b = decoded ?? this.text;
    const bStart = decoded === undefined ? start : 0;
    const bLen = decoded === undefined ? end - start : decoded.length;
    if (aLen !== bLen) return false;
    for (let t = 0; t < aLen; t++) if (a.charCodeAt(aStart + t) !== b.charCodeAt(bStart + t)) return false;
    return true;
  }

  /** FNV-1a over UTF-16 code units. */
  private hashRange(start: number, end: number): number {
    let h = 0x811c9dc5;
    for (let t = start; t < end; t++) h = Math.imul(h ^ this.text.charCodeAt(t), 0x01000193);
    return h;
  }

  private static hashString(s: string): number {
    let h = 0x811c9dc5;
    for (let t = 0; t < s.length; t++) h = Math.imul(h ^ s.charCodeAt(t), 0x01000193);
    return h;
  }
}
