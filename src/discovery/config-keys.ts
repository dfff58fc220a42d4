/**
 * Reads key paths and their values, with line numbers, out of training configs without executing them:
 * nested YAML (by indentation), JSON, Python keyword arguments (`GRPOConfig(learning_rate=1e-6, ...)`)
 * and Hydra overrides in shell scripts (`actor_rollout_ref.model.path=...`).
 * Discovery uses it to find a run's base model; the CodeLens provider uses it to place lenses.
 */

export interface ConfigKey {
  /** Dotted path, e.g. `actor_rollout_ref.actor.optim.lr`; a Python keyword is its bare name. */
  path: string;
  /** Last segment of the path. */
  key: string;
  /** The raw value text with quotes removed; '' for a mapping. */
  value: string;
  /** 0-based line and the column where the key starts. */
  line: number;
  column: number;
}

export type ConfigSyntax = 'yaml' | 'json' | 'python' | 'shell';

export function syntaxOf(fileName: string): ConfigSyntax | undefined {
  const lower = fileName.toLowerCase();
  if (lower.endsWith('.yaml') || lower.endsWith('.yml')) return 'yaml';
  if (lower.endsWith('.json')) return 'json';
  if (lower.endsWith('.py')) return 'python';
  if (lower.endsWith('.sh')) return 'shell';
  return undefined;
}

export function readConfigKeys(text: string, syntax: ConfigSyntax): ConfigKey[] {
  switch (syntax) {
    case 'yaml':
      return readYaml(text);
    case 'json':
      return readJson(text);
    case 'python':
      return readPython(text);
    case 'shell':
      return readShell(text);
  }
}

function unquote(v: string): string {
  const t = v.trim();
  if (t.length >= 2 && ((t[0] === '"' && t.endsWith('"')) || (t[0] === "'" && t.endsWith("'")))) return t.slice(1, -1);
  return t;
}

function stripYamlComment(v: string): string {
  // A '#' starts a comment when it is preceded by whitespace and not inside quotes.
  let q: string | null = null;
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (q) {
      if (c === q) q = null;
    } else if (c === '"' || c === "'") q = c;
    else if (c === '#' && (i === 0 || /\s/.test(v[i - 1]))) return v.slice(0, i);
  }
  return v;
}

function readYaml(text: string): ConfigKey[] {
  const out: ConfigKey[] = [];
  const stack: { indent: number; key: string }[] = [];
  const lines = text.split(/\r?\n/);
  for (let ln = 0; ln < lines.length; ln++) {
    const line = lines[ln];
    const m = /^(\s*)(?:-\s+)?([A-Za-z_][\w.-]*)\s*:(?:\s+(.*))?$/.exec(line);
    if (!m || line.trimStart().startsWith('#')) continue;
    const indent = m[1].length;
    while (stack.length && stack[stack.length - 1].indent >= indent) stack.pop();
    const key = m[2];
    const value = unquote(stripYamlComment(m[3] ?? ''));
    const p = [...stack.map((s) => s.key), key].join('.');
    out.push({ path: p, key, value, line: ln, column: indent });
    if (value === '' || value === '|' || value === '>') stack.push({ indent, key });
  }
  return out;
}

function readJson(text: string): ConfigKey[] {
  // Line-oriented reading keeps positions; nesting is tracked by braces outside strings.
  const out: ConfigKey[] = [];
  const stack: string[] = [];
  let pendingKey: string | null = null;
  const lines = text.split(/\r?\n/);
  for (let ln = 0; ln < lines.length; ln++) {
    const line = lines[ln];
    const re = /"((?:[^"\\]|\\.)*)"\s*:\s*("(?:[^"\\]|\\.)*"|[-\w.+]+|\{|\[)?|([{}[\]])/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(line))) {
      if (m[1] !== undefined) {
        const key = m[1];
        const raw = m[2];
        const p = [...stack, key].join('.');
        if (raw === '{') {
          out.push({ path: p, key, value: '', line: ln, column: m.index + 1 });
          stack.push(key);
        } else if (raw === '[') {
          out.push({ path: p, key, value: '', line: ln, column: m.index + 1 });
          stack.push(key);
        } else if (raw !== undefined) {
          out.push({ path: p, key, value: unquote(raw), line: ln, column: m.index + 1 });
        } else {
          out.push({ path: p, key, value: '', line: ln, column: m.index + 1 });
          pendingKey = key;
        }
      } else if (m[3] === '{' || m[3] === '[') {
        if (pendingKey !== null) {
          stack.push(pendingKey);
          pendingKey = null;
        } else if (stack.length || ln > 0 || m.index > 0) {
          stack.push('');
        }
      } else if (m[3] === '}' || m[3] === ']') {
        stack.pop();
      }
    }
  }
  return out.map((k) => ({ ...k, path: k.path.replace(/^\.+/, '').replace(/\.{2,}/g, '.') }));
}

function readPython(text: string): ConfigKey[] {
  const out: ConfigKey[] = [];
  const lines = text.split(/\r?\n/);
  for (let ln = 0; ln < lines.length; ln++) {
    const line = lines[ln];
    if (line.trimStart().startsWith('#')) continue;
    const re = /(?:^|[(,\s])([A-Za-z_]\w*)\s*=(?!=)\s*("[^"]*"|'[^']*'|[^,()#\n]+)/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(line))) {
      const key = m[1];
      const column = m.index + m[0].indexOf(key);
      out.push({ path: key, key, value: unquote(m[2]), line: ln, column });
    }
  }
  return out;
}

function readShell(text: string): ConfigKey[] {
  const out: ConfigKey[] = [];
  const lines = text.split(/\r?\n/);
  for (let ln = 0; ln < lines.length; ln++) {
    const re = /(?:^|\s)\+?\+?([A-Za-z_][\w.]*)=("[^"]*"|'[^']*'|\S+)/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(lines[ln]))) {
      const p = m[1];
      out.push({ path: p, key: p.split('.').pop()!, value: unquote(m[2]).replace(/\\$/, ''), line: ln, column: m.index + m[0].indexOf(p) });
    }
  }
  return out;
}
