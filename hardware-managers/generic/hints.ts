/**
 * Root device hints: parsing and validation as Ironic/IPA do it, and the oslo
 * `specs_matcher` operator grammar. Pure functions, no I/O.
 */

export const HINT_TYPES = {
  size: 'int', model: 'str', wwn: 'str', serial: 'str', vendor: 'str', wwn_with_extension: 'str',
  wwn_vendor_extension: 'str', name: 'str', rotational: 'bool', hctl: 'str', by_path: 'str', tran: 'str',
} as const;
export type HintName = keyof typeof HINT_TYPES;
export type ParsedHints = Partial<Record<HintName, string | boolean>>;

/** The device facts hints are matched against (size in bytes; serial/wwn may list every known variant). */
export interface HintDevice {
  name: string;
  size: number;
  model?: string | null;
  vendor?: string | null;
  serial?: string | string[] | null;
  wwn?: string | string[] | null;
  wwn_with_extension?: string | null;
  wwn_vendor_extension?: string | null;
  rotational?: boolean | string | null;
  hctl?: string | null;
  by_path?: string | null;
  tran?: string | null;
}

export class HintError extends Error {}

// Longest first so that "s==" is not read as "s" and "<=" not as "<".
const UNARY_OPS = ['s==', 's!=', 's<=', 's>=', 's<', 's>', '==', '!=', '<=', '>=', '<in>', '=', '<', '>'];
const KEYWORDS = ['<or>', '<all-in>', '<range-in>', ...UNARY_OPS];

/** specs_matcher's grammar: returns [op, ...operands] or [atom] (or null when the text does not parse). */
export function parseSpec(spec: string): string[] | null {
  let rest = spec.replace(/^\s+/, '');
  const takeKeyword = (): string | null => {
    const k = KEYWORDS.find((w) => rest.startsWith(w));
    if (k) rest = rest.slice(k.length).replace(/^\s+/, '');
    return k ?? null;
  };
  const takeAtom = (): string | null => {
    if (rest === '' || KEYWORDS.some((w) => rest.startsWith(w))) return null;
    const m = /^\S+/.exec(rest);
    if (!m) return null;
    rest = rest.slice(m[0].length).replace(/^\s+/, '');
    return m[0];
  };
  const save = rest;
  const op = takeKeyword();
  if (op === null) {
    const a = takeAtom();
    return a === null ? null : [a];
  }
  if (op === '<or>') {
    const out = ['<or>'];
    let a = takeAtom();
    while (a !== null) {
      out.push(a);
      const before = rest;
      if (takeKeyword() !== '<or>') {
        rest = before;
        break;
      }
      a = takeAtom();
    }
    if (out.length === 1) return null;
    return out;
  }
  if (op === '<all-in>') {
    const out = ['<all-in>'];
    for (let a = takeAtom(); a !== null; a = takeAtom()) out.push(a);
    return out.length > 1 ? out : null;
  }
  if (op === '<range-in>') {
    const out = ['<range-in>'];
    for (let i = 0; i < 4; i++) {
      const a = takeAtom();
      if (a === null) return null;
      out.push(a);
    }
    return out;
  }
  const a = takeAtom();
  if (a === null) {
    rest = save;
    return null;
  }
  return [op, a];
}

function float(x: unknown): number {
  const n = typeof x === 'number' ? x : Number(String(x).trim());
  if (!Number.isFinite(n)) throw new HintError(`not a number: ${String(x)}`);
  return n;
}

/** oslo specs_matcher.match(value, spec). */
export function specMatch(value: unknown, spec: string): boolean {
  const tree = parseSpec(spec) ?? [spec];
  if (tree.length === 1) return tree[0] === value;
  const [op, ...args] = tree as [string, ...string[]];
  const a0 = args[0] ?? '';
  const s = String(value);
  switch (op) {
    case '=': return float(value) >= float(a0);
    case '==': return float(value) === float(a0);
    case '!=': return float(value) !== float(a0);
    case '<=': return float(value) <= float(a0);
    case '<': return float(value) < float(a0);
    case '>=': return float(value) >= float(a0);
    case '>': return float(value) > float(a0);
    case 's==': return s === a0;
    case 's!=': return s !== a0;
    case 's<': return s < a0;
    case 's<=': return s <= a0;
    case 's>': return s > a0;
    case 's>=': return s >= a0;
    case '<in>': return s.includes(a0);
    case '<or>': return args.some((x) => x === s);
    case '<all-in>': return args.every((x) => s.includes(x));
    case '<range-in>': {
      const [lo, a, b, hi] = args;
      const v = float(value);
      const low = lo === '[' ? v >= float(a) : lo === '(' ? v > float(a) : null;
      const high = hi === ']' ? v <= float(b) : hi === ')' ? v < float(b) : null;
      if (low === null || high === null) throw new HintError('<range-in> needs brackets: <range-in> [ 10 20 )');
      return low && high;
    }
    default: return false;
  }
}

/** Python's urllib.parse.quote (safe "/"), which Ironic applies to hint and device values alike. */
export function pyQuote(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_.\-~/]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function extract(expression: unknown, name: string): { op: string; values: string[] } {
  const expr = String(expression).trim().toLowerCase();
  if (!expr) throw new HintError(`Root device hint ${name} expression is empty`);
  const ast = parseSpec(expr);
  if (!ast || ast.length <= 1) return { op: '', values: [expr] };
  const op = ast[0] as string;
  const values = expr.split(op).filter((v) => v !== '').map((v) => v.trim());
  return { op, values };
}

function normalize(expression: unknown, name: string): string {
  const { op, values } = extract(expression, name);
  return (op + values.map((v) => ` ${pyQuote(v)} `).join(op)).trim();
}

const TRUE = new Set(['1', 't', 'true', 'on', 'y', 'yes']);
const FALSE = new Set(['0', 'f', 'false', 'off', 'n', 'no']);
export function strictBool(v: unknown): boolean {
  if (typeof v === 'boolean') return v;
  const s = String(v).trim().toLowerCase();
  if (TRUE.has(s)) return true;
  if (FALSE.has(s)) return false;
  throw new HintError(`not a boolean: ${String(v)}`);
}

/** Validates and normalises a root_device dict; unknown keys or bad values throw HintError. Null when empty. */
export function parseRootDeviceHints(hints: Record<string, unknown> | null | undefined): ParsedHints | null {
  if (!hints || Object.keys(hints).length === 0) return null;
  const invalid = Object.keys(hints).filter((k) => !Object.hasOwn(HINT_TYPES, k));
  if (invalid.length > 0) {
    throw new HintError(`The hints "${invalid.join(', ')}" are invalid. Valid hints are: "${Object.keys(HINT_TYPES).join(', ')}"`);
  }
  const out: ParsedHints = {};
  for (const [k, expr] of Object.entries(hints)) {
    const name = k as HintName;
    const type = HINT_TYPES[name];
    if (type === 'str') {
      if (typeof expr !== 'string') throw new HintError(`Root device hint "${name}" is not a string value. Hint expression: ${String(expr)}`);
      out[name] = normalize(expr, name);
    } else if (type === 'int') {
      for (const v of extract(expr, name).values) {
        if (!/^[+-]?\d+$/.test(v)) throw new HintError(`Root device hint "${name}" is not an integer value. Current value: ${String(expr)}`);
        if (Number(v) <= 0) throw new HintError(`Root device hint "${name}" should be a positive integer. Current value: ${String(expr)}`);
      }
      out[name] = String(expr).trim();
    } else {
      try {
        out[name] = strictBool(expr);
      } catch {
        throw new HintError(`Root device hint "${name}" is not a Boolean value. Current value: ${String(expr)}`);
      }
    }
  }
  // Without an operator a hint means equality: s== for strings, == for size.
  for (const [k, v] of Object.entries(out)) {
    if (typeof v === 'boolean') continue;
    const ast = parseSpec(v);
    if (ast && ast.length > 1) continue;
    out[k as HintName] = HINT_TYPES[k as HintName] === 'str' ? `s== ${v}` : `== ${v}`;
  }
  return out;
}

function matchOne(dev: HintDevice, name: HintName, hint: string | boolean): boolean {
  const raw = dev[name];
  if (typeof hint === 'boolean') {
    if (raw === null || raw === undefined) return false;
    try {
      return strictBool(raw) === hint;
    } catch {
      return false;
    }
  }
  if (name === 'size') {
    try {
      return specMatch(Number(raw) / 1024 ** 3, hint);
    } catch {
      return false;
    }
  }
  const values = (Array.isArray(raw) ? raw : [raw]).filter((x) => x !== null && x !== undefined && String(x).trim() !== '');
  // An empty device attribute never matches (IPA skips such devices).
  return values.some((v) => {
    try {
      return specMatch(normalize(v, name), hint);
    } catch {
      return false;
    }
  });
}

/** Every device matching all hints, in the given order. */
export function findDevicesByHints<D extends HintDevice>(devices: readonly D[], hints: Record<string, unknown>): D[] {
  const parsed = parseRootDeviceHints(hints);
  if (!parsed) return [...devices];
  return devices.filter((d) => Object.entries(parsed).every(([k, h]) => matchOne(d, k as HintName, h as string | boolean)));
}

/** The first device matching all hints, or null. */
export function matchRootDeviceHints<D extends HintDevice>(devices: readonly D[], hints: Record<string, unknown>): D | null {
  return findDevicesByHints(devices, hints)[0] ?? null;
}
