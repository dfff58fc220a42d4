import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/linalg/random';

test('fillGaussian gives the numbers nextGaussian gives, in order, with the spare carried across calls', () => {
  for (const [first, second] of [
    [7, 5],
    [1, 1],
    [0, 3],
    [100_001, 99],
  ]) {
    for (const Ctor of [Float32Array, Float64Array]) {
      const filled = new Rng(3);
      const stepped = new Rng(3);
      const a = new Ctor(first);
      const b = new Ctor(second);
      filled.fillGaussian(a);
      filled.fillGaussian(b);
      const c = new Ctor(first);
      const d = new Ctor(second);
      for (let i = 0; i < first; i++) c[i] = stepped.nextGaussian();
      for (let i = 0; i < second; i++) d[i] = stepped.nextGaussian();
      assert.deepEqual(a, c, `${Ctor.name} ${first}`);
      assert.deepEqual(b, d, `${Ctor.name} ${second} after ${first}`);
      assert.equal(filled.nextU32(), stepped.nextU32(), 'the generators end in the same state');
    }
  }
});
