import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { SafetensorsFile, parseHeader } from '../../src/formats/safetensors';
import { CheckpointFormatError, type FormatProblem } from '../../src/formats/errors';
import { decodeToFloat32 } from '../../src/formats/dtype';
import { rawFile, validFile, bf16Bytes, f32Bytes, tempDir, writeFile } from '../support/st';

async function openBytes(bytes: Uint8Array, name = 'x.safetensors'): Promise<SafetensorsFile> {
  const dir = await tempDir();
  return SafetensorsFile.open(await writeFile(path.join(dir, name), bytes));
}

async function expectProblem(bytes: Uint8Array, problem: FormatProblem, tensor?: string): Promise<CheckpointFormatError> {
  try {
    const f = await openBytes(bytes);
    await f.close();
  } catch (e) {
    assert.ok(e instanceof CheckpointFormatError, `expected CheckpointFormatError, got ${String(e)}`);
    assert.equal(e.problem, problem, e.message);
    assert.match(e.message, /x\.safetensors/, 'the error names the file');
    if (tensor !== undefined) assert.equal(e.tensor, tensor);
    return e;
  }
  assert.fail(`expected ${problem}`);
}

const one = { a: { dtype: 'F32', shape: [2], data: f32Bytes([1, 2]) } };

test('reads a valid file: tensors, metadata, values by offset', async () => {
  const f = await openBytes(validFile({ ...one, b: { dtype: 'BF16', shape: [1, 3], data: bf16Bytes([0x3f80, 0xc000, 0x0000]) } }, { format: 'pt' }));
  assert.deepEqual(f.metadata, { format: 'pt' });
  assert.deepEqual([...f.tensors.keys()], ['a', 'b']);
  const b = f.tensor('b');
  assert.deepEqual(b.shape, [1, 3]);
  const bytes = await f.readElements(b, 1, 2);
  const out = new Float32Array(2);
  decodeToFloat32('BF16', bytes, 2, out);
  assert.deepEqual([...out], [-2, 0]);
  await f.close();
});

test('every validation rule has its own typed error', async () => {
  await expectProblem(Buffer.from([1, 2, 3]), 'header-too-small');
  await expectProblem(rawFile('{}', undefined, 200_000_000n), 'header-too-large');
  await expectProblem(rawFile('{}', undefined, 50n), 'header-length');
  await expectProblem(rawFile(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), 'header-utf8');
  await expectProblem(rawFile('{"a": '), 'header-json');
  await expectProblem(rawFile('[1, 2]'), 'header-not-object');
  await expectProblem(rawFile('{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'), 'duplicate-key');
  await expectProblem(rawFile('{"__metadata__":{"x":1}}'), 'metadata');
  await expectProblem(rawFile('{"a":{"shape":[1],"data_offsets":[0,4]}}', f32Bytes([1])), 'tensor-entry', 'a');
  await expectProblem(rawFile('{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}', f32Bytes([1])), 'unknown-dtype', 'a');
  await expectProblem(rawFile('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', f32Bytes([1])), 'shape', 'a');
  await expectProblem(rawFile('{"a":{"dtype":"F32","shape":[4294967296, 4294967296],"data_offsets":[0,4]}}', f32Bytes([1])), 'shape', 'a');
  await expectProblem(rawFile('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}', f32Bytes([1])), 'shape', 'a');
  await expectProblem(rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', f32Bytes([1])), 'size-mismatch', 'a');
  await expectProblem(rawFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32Bytes([1, 2])), 'offsets', 'a');
  await expectProblem(
    rawFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', f32Bytes([1, 2, 3])),
    'offsets',
    'b',
  );
  await expectProblem(
    rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32Bytes([1, 2])),
    'offsets',
  );
  await expectProblem(rawFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', f32Bytes([1, 2])), 'file-length');
  await expectProblem(rawFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', f32Bytes([1])), 'offsets', 'a');
});

test('a file shorter than its header promises looks incomplete (still being written)', async () => {
  const full = validFile(one);
  const e = await expectProblem(full.subarray(0, full.length - 3), 'file-length');
  assert.ok(e.looksIncomplete);
  assert.match(e.message, /shorter/);
  const e2 = await expectProblem(full.subarray(0, 12), 'header-length');
  assert.ok(e2.looksIncomplete);
});

test('sub-byte dtypes are recognised; a file of them opens but is not decoded', () => {
  const r = parseHeader('f', Buffer.from('{"a":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}'), 2);
  assert.equal(r.tensors[0].dtype, 'F4');
  assert.throws(() => parseHeader('f', Buffer.from('{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}'), 2), /whole bytes/);
});

test('header with trailing space padding (as the reference writer pads) is valid', () => {
  const r = parseHeader('f', Buffer.from('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}     '), 4);
  assert.equal(r.tensors.length, 1);
});

test('decodes F16, F8 and F64 exactly', () => {
  const out = new Float32Array(4);
  decodeToFloat32('F16', new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7c00]).buffer), 4, out);
  assert.deepEqual([...out], [1, -2, 2 ** -24, Infinity]);
  decodeToFloat32('F8_E4M3', new Uint8Array([0x38, 0xb8, 0x7e, 0x01]), 4, out);
  assert.deepEqual([...out], [1, -1, 448, 2 ** -9]);
  decodeToFloat32('F8_E5M2', new Uint8Array([0x3c, 0x7c, 0x01, 0x40]), 4, out);
  assert.deepEqual([...out], [1, Infinity, 2 ** -16, 2]);
  decodeToFloat32('F64', new Uint8Array(new Float64Array([0.5, -3, 1e10, 0]).buffer), 4, out);
  assert.deepEqual([...out], [0.5, -3, 1e10, 0]);
});

test('detects a file rewritten while it is read', async () => {
  const dir = await tempDir();
  const p = await writeFile(path.join(dir, 'x.safetensors'), validFile(one));
  const f = await SafetensorsFile.open(p);
  await f.assertUnchanged();
  await writeFile(p, validFile({ a: { dtype: 'F32', shape: [3], data: f32Bytes([1, 2, 3]) } }));
  await assert.rejects(f.assertUnchanged(), (e: unknown) => e instanceof CheckpointFormatError && e.problem === 'changed-while-reading' && e.looksIncomplete);
  await f.close();
});
