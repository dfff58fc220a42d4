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

  /**
   * Fills `out` with independent standard normals by the ziggurat method: one generator step, one compare
   * and one multiply for ~99% of the values (no log or sqrt), about four times the speed of
   * {@link fillGaussian}, for the matrix-sized draws of the verdict's nulls. A different sequence from
   * fillGaussian's (same distribution); deterministic from the seed.
   */
  fillGaussianZiggurat(out: Float32Array): void {
    const n = out.length;
    for (let i = 0; i < n; i++) {
      const r = this.nextU32();
      // Independent bits for the layer (7), the sign (1) and the magnitude (24): an index taken from the
      // value's own low bits would tie the layer to the value.
      const iz = r & 127;
      const j = r >>> 8;
      // The sign from a table of signed widths: a branch on a random bit would mispredict half the time.
      out[i] = j < ZIG_K[iz] ? j * ZIG_WS[r & 255] : this.zigguratEdge(j, iz, (r & 128) !== 0);
    }
  }

  /** The ziggurat's rare cases (Marsaglia and Tsang's nfix): the base strip's tail, and the wedges between layers. */
  private zigguratEdge(j: number, iz: number, negative: boolean): number {
    for (;;) {
      let x: number;
      if (iz === 0) {
        // The tail beyond R, by Marsaglia's exponential rejection.
        let y: number;
        do {
          x = -Math.log(this.nextUniform()) / ZIG_R;
          y = -Math.log(this.nextUniform());
        } while (y + y < x * x);
        x += ZIG_R;
        return negative ? -x : x;
      }
      x = j * ZIG_W[iz];
      if (ZIG_F[iz] + this.nextUniform() * (ZIG_F[iz - 1] - ZIG_F[iz]) < Math.exp(-0.5 * x * x)) return negative ? -x : x;
      const r = this.nextU32();
      iz = r & 127;
      j = r >>> 8;
      negative = (r & 128) !== 0;
      if (j < ZIG_K[iz]) {
        x = j * ZIG_W[iz];
        return negative ? -x : x;
      }
    }
  }
}

/**
 * Tables of the 128-layer ziggurat for the standard normal (Marsaglia and Tsang, "The Ziggurat Method for
 * Generating Random Variables", J. Stat. Softw. 5(8), 2000): layer i covers |x| < ZIG_W[i] * 2^24 with
 * area ZIG_V each; ZIG_K[i] is the integer below which a draw in layer i lies inside the next layer's
 * rectangle (accepted at once, ~99% of draws); ZIG_F[i] = exp(-x_i^2 / 2) at the layer's edge.
 */
const ZIG_R = 3.442619855899;
const ZIG_V = 9.91256303526217e-3;
const ZIG_K = new Uint32Array(128);
const ZIG_W = new Float64Array(128);
const ZIG_F = new Float64Array(128);
/** ZIG_W with the sign of bit 7: entry r & 255 is +-ZIG_W[r & 127]. */
const ZIG_WS = new Float64Array(256);
{
  const m1 = 16777216; // 2^24: the magnitude's bits
  let dn = ZIG_R;
  let tn = dn;
  const q = ZIG_V / Math.exp(-0.5 * dn * dn);
  ZIG_K[0] = Math.floor((dn / q) * m1);
  ZIG_K[1] = 0;
  ZIG_W[0] = q / m1;
  ZIG_W[127] = dn / m1;
  ZIG_F[0] = 1;
  ZIG_F[127] = Math.exp(-0.5 * dn * dn);
  for (let i = 126; i >= 1; i--) {
    dn = Math.sqrt(-2 * Math.log(ZIG_V / dn + Math.exp(-0.5 * dn * dn)));
    ZIG_K[i + 1] = Math.floor((dn / tn) * m1);
    tn = dn;
    ZIG_F[i] = Math.exp(-0.5 * dn * dn);
    ZIG_W[i] = dn / m1;
  }
  for (let i = 0; i < 128; i++) {
    ZIG_WS[i] = ZIG_W[i];
    ZIG_WS[i + 128] = -ZIG_W[i];
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
