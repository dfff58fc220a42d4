/**
 * A strict JSON parser for checkpoint headers. JSON.parse silently keeps the last of two equal keys;
 * a safetensors header with a duplicated tensor name is ambiguous, so we refuse it instead.
 * Returns plain objects (with a null prototype, so "__proto__" keys are data, not prototype changes).
 */

export class StrictJsonError extends Error {
  constructor(
    message: string,
    readonly position: number,
    readonly duplicateKey?: string,
  ) {
    super(`${message} at position ${position}`);
  }
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Deeper nesting is refused, never a stack overflow. Shared with the safetensors header parser. */
export const MAX_DEPTH = 64;
/** A \uD800-style escape without its pair: no character (serde_json refuses it too). */
export const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The JSON number grammar, anchored. */
export const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/;

export function parseStrictJson(text: string): JsonValue {
  let i = 0;
  const n = text.length;

  const ws = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };

  const fail = (msg: string): never => {
    throw new StrictJsonError(msg, i);
  };

  const parseString = (): string => {
    // Find the closing quote, then let JSON.parse decode escapes of this one token (fast and exact).
    const start = i;
    i++;
    let hasEscape = false;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c === 0x5c) {
        hasEscape = true;
        i += 2;
        continue;
      }
      if (c < 0x20) fail('control character in string');
      i++;
    }
    if (i >= n) fail('unterminated string');
    i++;
    const raw = text.slice(start, i);
    if (!hasEscape) return raw.slice(1, -1);
    let value: string;
    try {
      value = JSON.parse(raw) as string;
    } catch {
      return fail('invalid escape in string');
    }
    // A \uD800-style escape without its pair is no character: the reference (serde_json) refuses it too.
    if (LONE_SURROGATE.test(value)) {
      i = start;
      return fail('unpaired surrogate escape in string');
    }
    return value;
  };

  const parseNumber = (): number => {
    const m = JSON_NUMBER.exec(text.slice(i, i + 64));
    if (!m) return fail('invalid number');
    i += m[0].length;
    return Number(m[0]);
  };

  const parseValue = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail('nesting too deep');
    ws();
    if (i >= n) fail('unexpected end of input');
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: { [key: string]: JsonValue } = Object.create(null);
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a string key');
        const keyPos = i;
        const key = parseString();
        if (Object.prototype.hasOwnProperty.call(obj, key)) {
          throw new StrictJsonError(`duplicate key ${JSON.stringify(key)}`, keyPos, key);
        }
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        obj[key] = parseValue(depth + 1);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return parseString();
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

  const value = parseValue(0);
  ws();
  if (i !== n) fail('trailing characters after JSON value');
  return value;
}

export function isJsonObject(v: JsonValue | undefined): v is { [key: string]: JsonValue } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
