/**
 * The one-pass safetensors header parser against its reference (the generic strict JSON parser followed by
 * the format's checks, test/support/reference-header.ts): on valid headers, on thousands of seeded random
 * mutations of them, and on the cases the fast paths treat specially (metadata keys held as text ranges,
 * integers read digit by digit, element counts in float64).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseHeader } from '../../src/formats/safetensors-header';
import { CheckpointFormatError } from '../../src/formats/errors';
import { referenceParseHeader } from '../support/reference-header';
import { rng } from '../../src/examples/synthetic';

type Outcome = { ok: true; tensors: string; metadata: string } | { ok: false; problem: string; message: string };

function outcome(parse: typeof parseHeader, header: Uint8Array, dataBytes: number): Outcome {
  try {
    const r = parse('h.safetensors', header, dataBytes);
    // Entries are compared by name: the reference lists them in JavaScript key order, the parser as written.
    const tensors = JSON.stringify([...r.tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)));
    return { ok: true, tensors, metadata: JSON.stringify(Object.entries(r.metadata)) };
  } catch (e) {
    if (!(e instanceof CheckpointFormatError)) throw e;
    return { ok: false, problem: e.problem, message: e.message };
  }
}

function agree(text: string | Uint8Array, dataBytes: number, why: string): Outcome {
  const bytes = typeof text === 'string' ? Buffer.from(text) : text;
  const fast = outcome(parseHeader, bytes, dataBytes);
  const ref = outcome(referenceParseHeader, bytes, dataBytes);
  assert.deepEqual(fast, ref, `${why}: ${Buffer.from(bytes).toString('utf8').slice(0, 200)}`);
  return fast;
}

const VALID: { text: string; data: number }[] = [
  {
    text:
      '{"__metadata__":{"format":"pt","note":"caf\\u00e9 \\"q\\""},"model.embed.weight":{"dtype":"BF16","shape":[4,2],"data_offsets":[0,16]},' +
      '"model.layers.0.mlp.up_proj.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[16,40]},"lm_head.weight":{"dtype":"F16","shape":[],"data_offsets":[40,42]}}',
    data: 42,
  },
  {
    // Offsets out of order, an empty tensor, extra members, escapes and non-ASCII in names, padding.
    text:
      '{"b\\u00e9ta":{"shape":[3],"dtype":"U8","data_offsets":[8,11],"extra":{"x":[1,2,{"y":null}]}},"a/\\u03b1":{"data_offsets":[0,8],"dtype":"F64","shape":[1]},' +
      ' "empty" : { "dtype" : "I32" , "shape" : [0, 5] , "data_offsets" : [11, 11] } }   ',
    data: 11,
  },
  {
    text: '{"x":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]},"y":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[3,6]},"__metadata__":{}}',
    data: 6,
  },
];

const ALPHABET = [
  '{',
  '}',
  '[',
  ']',
  ',',
  ':',
  '"',
  '\\',
  ' ',
  '0',
  '1',
  '9',
  '-',
  '.',
  'e',
  'E',
  '+',
  'u',
  'n',
  't',
  'f',
  'a',
  '\u00e9',
  '\ud83d\ude00',
  '__metadata__',
  '"dtype"',
  '"shape"',
  '"data_offsets"',
  '1e400',
  '9007199254740993',
  '"F32"',
  '\n',
  '\u0001',
];

const VALUES = ['1', '-2', '[]', '{}', 'null', 'true', '"F32"', '"BF16"', '"x"', '[1,2]', '[0,4]', '{"a":"b"}', '"\\u0061"'];

function mutate(text: string, r: () => number): string {
  const edits = 1 + Math.floor(r() * 3);
  let s = text;
  for (let k = 0; k < edits; k++) {
    const at = Math.floor(r() * (s.length + 1));
    const kind = r();
    if (kind < 0.3) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(r() * 4));
    else if (kind < 0.6) s = s.slice(0, at) + ALPHABET[Math.floor(r() * ALPHABET.length)] + s.slice(at);
    else if (kind < 0.7) s = s.slice(0, at) + ALPHABET[Math.floor(r() * ALPHABET.length)] + s.slice(at + 1);
    else if (kind < 0.85) {
      // Replace one string token with another value: keeps the JSON valid and reaches the format's rules.
      const open = s.indexOf('"', at);
      const close = open < 0 ? -1 : s.indexOf('"', open + 1);
      if (close > 0) s = s.slice(0, open) + VALUES[Math.floor(r() * VALUES.length)] + s.slice(close + 1);
    } else {
      // Copy a slice elsewhere: makes duplicate members and repeated structure.
      const from = Math.floor(r() * s.length);
      const len = Math.floor(r() * 60);
      s = s.slice(0, at) + s.slice(from, from + len) + s.slice(at);
    }
  }
  return s;
}

test('valid headers parse exactly as the reference parses them', () => {
  for (const v of VALID) {
    const o = agree(v.text, v.data, 'valid');
    assert.equal(o.ok, true, JSON.stringify(o));
  }
});

test('6000 random mutations end in the same result or the same error as the reference', () => {
  const problems = new Map<string, number>();
  for (let seed = 1; seed <= 6000; seed++) {
    const r = rng(seed);
    const v = VALID[seed % VALID.length];
    const text = mutate(v.text, r);
    // Data lengths around the true one, so the length checks are reached both ways.
    const data = v.data + (r() < 0.8 ? 0 : Math.floor(r() * 5) - 2);
    const o = agree(text, Math.max(0, data), `seed ${seed}`);
    const key = o.ok ? 'ok' : o.problem;
    problems.set(key, (problems.get(key) ?? 0) + 1);
  }
  // The mutations must reach the parser's rules, not only its syntax errors.
  for (const p of ['ok', 'header-json', 'duplicate-key', 'tensor-entry', 'offsets', 'metadata']) {
    assert.ok((problems.get(p) ?? 0) > 0, `no mutation reached ${p}: ${JSON.stringify([...problems])}`);
  }
});

test('metadata keys: duplicates found through escapes and hash collisions, __proto__ kept as data', () => {
  const dup = agree('{"__metadata__":{"a":"1","\\u0061":"2"}}', 0, 'escaped duplicate');
  assert.equal(!dup.ok && dup.problem, 'duplicate-key');
  const dup2 = agree('{"__metadata__":{"\\u0062c":"1","bc":"2"}}', 0, 'escaped first');
  assert.equal(!dup2.ok && dup2.problem, 'duplicate-key');
  // Many keys: the range set grows and rehashes several times; one repeat at the end is still found.
  const members = Array.from({ length: 50_000 }, (_, k) => `"k${k}":"v${k}"`);
  const many = `{"__metadata__":{${members.join(',')}}}`;
  const r = parseHeader('h', Buffer.from(many), 0);
  assert.equal(Object.keys(r.metadata).length, 50_000);
  assert.equal(r.metadata.k49999, 'v49999');
  assert.throws(
    () => parseHeader('h', Buffer.from(`{"__metadata__":{${members.join(',')},"k123":"again"}}`), 0),
    (e: unknown) => e instanceof CheckpointFormatError && e.problem === 'duplicate-key' && /"k123"/.test(e.message),
  );
  const proto = parseHeader('h', Buffer.from('{"__metadata__":{"__proto__":"x","format":"pt"}}'), 0);
  assert.equal(Object.getPrototypeOf(proto.metadata), Object.prototype);
  assert.deepEqual(Object.entries(proto.metadata), [
    ['__proto__', 'x'],
    ['format', 'pt'],
  ]);
  const bad = agree('{"__metadata__":{"ok":"1","n\\u00e9":2}}', 0, 'non-string value named decoded');
  assert.equal(!bad.ok && bad.message.includes('__metadata__["né"] is not a string'), true, JSON.stringify(bad));
});

test('numbers: digit-by-digit integers agree with the grammar at every edge', () => {
  const entry = (shape: string, offsets = '[0,4]'): string => `{"a":{"dtype":"F32","shape":${shape},"data_offsets":${offsets}}}`;
  for (const shape of [
    '[1]',
    '[01]',
    '[-0]',
    '[1.0]',
    '[1e0]',
    '[1E+0]',
    '[-1]',
    '[999999999999999]',
    '[9007199254740991]',
    '[9007199254740993]',
    '[4294967296,4294967296]',
    '[94906267,94906267]',
    '[94906266,94906266]',
    '[1,]',
    '[1 2]',
    '[- 1]',
    '[+1]',
    '[1.]',
    '[.5]',
    '[1e]',
    '[0x1]',
    '[Infinity]',
    '[2,0,9007199254740991]',
  ]) {
    agree(entry(shape), 4, `shape ${shape}`);
  }
  for (const offsets of ['[0,4]', '[0,4.0]', '[4,0]', '[0]', '[0,4,8]', '[-0,4]', '[0,9007199254740992]', '["0",4]', '{"0":0}']) {
    agree(entry('[1]', offsets), 4, `offsets ${offsets}`);
  }
  // Element counts past 2^53 and byte counts past 2^53 are refused with exact figures in the message.
  const big = agree('{"a":{"dtype":"F64","shape":[1125899906842624,4],"data_offsets":[0,4]}}', 4, 'bytes past 2^53');
  assert.equal(!big.ok && big.problem, 'size-mismatch');
  assert.match(!big.ok ? big.message : '', /needs 36028797018963968/);
});

test('depth, controls, surrogates and trailing text are refused as the reference refuses them', () => {
  const deep = `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":${'['.repeat(70)}${']'.repeat(70)}}}`;
  assert.equal(agree(deep, 4, 'deep').ok, false);
  for (const text of [
    '{"a\u0001":1}',
    '{"\\ud800":1}',
    '{"__metadata__":{"\\udc00x":"1"}}',
    '{"__metadata__":{"a":"\\ud83d"}}',
    '{} x',
    '{}}',
    '{"a":tru}',
    '{"a":nul}',
    '{"__metadata__":[]}',
    '{"__metadata__":{"a":"1",}}',
    '\ufeff{}',
  ]) {
    agree(text, 0, 'refused');
  }
});
