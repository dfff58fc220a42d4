/**
 * A small seeded PRNG (xoshiro128**, seeded through splitmix32) and Gaussian fills.
 *
 * Why our own: Math.random cannot be seeded, and the randomized SVD must be reproducible: the same
 * seed on the same matrix gives the same numbers, on every run and machine (integer arithmetic only in
 * the generator; the Gaussian transform uses Math.log/sqrt, which are deterministic within one
 * Node version). Comparing two checkpoints with the same seed also makes the randomized errors of the
 * two factorizations correlate instead of adding up.
 */

/** splitmix32 step, used to expand one 32-bit seed into the 128-bit xoshiro state. */
function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  /** Spare second output of the last Box-Muller pair. */
  private spare = 0;
  private hasSpare = false;

  constructor(seed: number) {
    const st = { s: (Math.floor(seed) ^ 0x5bd1e995) | 0 };
    this.a = splitmix32(st) | 0;
    this.b = splitmix32(st) | 0;
    this.c = splitmix32(st) | 0;
    this.d = splitmix32(st) | 0;
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** Next unsigned 32-bit integer (xoshiro128**). */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** Uniform in the open interval (0, 1), 32 bits of resolution (never exactly 0: log-safe). */
  nextUniform(): number {
    return (this.nextU32() + 0.5) * 2.3283064365386963e-10;
  }

  /**
   * Standard normal (Marsaglia's polar method: one log and one sqrt per pair, no trigonometry; both
   * outputs of a pair are used).
   */
  nextGaussian(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    for (;;) {
      const u = this.nextU32() * 4.656612873077393e-10 - 1; // [-1, 1)
      const v = this.nextU32() * 4.656612873077393e-10 - 1;
      const s = u * u + v * v;
      if (s >= 1 || s === 0) continue;
      const f = Math.sqrt((-2 * Math.log(s)) / s);
      this.spare = v * f;
      this.hasSpare = true;
      return u * f;
    }
  }

  /** Fills `out` with independent standard normals, in place. */
  fillGaussian(out: Float32Array | Float64Array): void {
    // nextGaussian with the generator's state in locals: the same numbers in the same order, about 2x faster.
    const n = out.length;
    let i = 0;
    if (this.hasSpare && n > 0) {
      out[i++] = this.spare;
      this.hasSpare = false;
    }
    let a = this.a;
    let b = this.b;
    let c = this.c;
    let d = this.d;
    while (i < n) {
      const r1 = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
      let t = b << 9;
      c ^= a;
      d ^= b;
      b ^= c;
      a ^= d;
      c ^= t;
      d = rotl(d, 11);
      const r2 = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
      t = b << 9;
      c ^= a;
      d ^= b;
      b ^= c;
      a ^= d;
      c ^= t;
      d = rotl(d, 11);
      const u = r1 * 4.656612873077393e-10 - 1;
      const v = r2 * 4.656612873077393e-10 - 1;
      const q = u * u + v * v;
      if (q >= 1 || q === 0) continue;
      const f = Math.sqrt((-2 * Math.log(q)) / q);
      out[i++] = u * f;
      if (i < n) out[i++] = v * f;
      else {
        this.spare = v * f;
        this.hasSpare = true;
      }
    }
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = d;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
