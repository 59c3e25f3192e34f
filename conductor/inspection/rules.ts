/**
 * Built-in inspection rules, as Ironic's common/inspection_rules (phase `main`): a rule's conditions are all
 * checked against the inventory/plugin data/node; if they hold its actions run, higher priority first.
 * Argument strings are formatted like Python's str.format on `{inventory[cpu][count]}`, `{plugin_data[x]}`,
 * `{node.name}`; a string that is exactly one placeholder keeps the value's type.
 */
import type { InspectionRule } from './config.js';
import { InspectionDataError, updateCapabilities } from './hooks.js';

type Obj = Record<string, unknown>;

export interface RuleTarget {
  /** Node fields the actions may change: driver, driver_info, properties, extra, traits ... */
  node: Obj;
  inventory: Obj;
  pluginData: Obj;
  log: (msg: string) => void;
}

const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype']);

function resolveExpr(expr: string, t: RuleTarget): unknown {
  // inventory[cpu][count] | node.driver_info[ipmi_address] | plugin_data[x]
  const m = /^(inventory|plugin_data|node)((?:\.[A-Za-z0-9_]+|\[[^\]]*\])*)$/.exec(expr.trim());
  if (!m) throw new InspectionDataError(`cannot format {${expr}}`);
  let cur: unknown = m[1] === 'inventory' ? t.inventory : m[1] === 'plugin_data' ? t.pluginData : t.node;
  for (const p of [...(m[2] ?? '').matchAll(/\.([A-Za-z0-9_]+)|\[([^\]]*)\]/g)].map((x) => x[1] ?? x[2] ?? '')) {
    if (FORBIDDEN.has(p)) throw new InspectionDataError(`cannot format {${expr}}`);
    if (Array.isArray(cur) && /^\d+$/.test(p)) cur = cur[Number(p)];
    else if (cur && typeof cur === 'object' && Object.hasOwn(cur, p)) cur = (cur as Obj)[p];
    else throw new InspectionDataError(`{${expr}}: no such field ${p}`);
  }
  return cur;
}

function format(value: unknown, t: RuleTarget): unknown {
  if (Array.isArray(value)) return value.map((v) => format(v, t));
  if (typeof value !== 'string') return value;
  const whole = /^\{([^{}]+)\}$/.exec(value);
  if (whole) return resolveExpr(whole[1] ?? '', t);
  return value.replace(/\{([^{}]+)\}/g, (_, e: string) => String(resolveExpr(e, t)));
}

const num = (v: unknown): number => {
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isFinite(n)) throw new InspectionDataError(`not a number: ${JSON.stringify(v)}`);
  return n;
};
const truthy = (v: unknown): boolean => typeof v === 'string' ? ['true', 'yes', '1', 'on', 't', 'y'].includes(v.toLowerCase()) : v === true || (typeof v === 'number' && v !== 0);
const falsy = (v: unknown): boolean => typeof v === 'string' ? ['false', 'no', '0', 'off', 'f', 'n'].includes(v.toLowerCase()) : v === false || v === 0;

/** Python `re` patterns as rules carry them: a leading (?i)/(?s)/(?m) becomes a JS flag. */
function pyRegex(pattern: string, whole: boolean): RegExp {
  const m = /^\(\?([ims]+)\)/.exec(pattern);
  const body = m ? pattern.slice(m[0].length) : pattern;
  try {
    return new RegExp(whole ? `^(?:${body})$` : body, m?.[1] ?? '');
  } catch (e) {
    throw new InspectionDataError(`invalid regular expression ${JSON.stringify(pattern)}: ${(e as Error).message}`);
  }
}

function pairwise(values: unknown, cmp: (a: unknown, b: unknown) => boolean): boolean {
  if (!Array.isArray(values) || values.length < 2) throw new InspectionDataError('"values" must be a list of at least 2 items');
  for (let i = 1; i < values.length; i++) if (!cmp(values[i - 1], values[i])) return false;
  return true;
}

const OPERATORS: Record<string, (a: Obj) => boolean> = {
  eq: (a) => pairwise(a.values, (x, y) => (a.force_strings ? String(x) === String(y) : JSON.stringify(x) === JSON.stringify(y))),
  ne: (a) => pairwise(a.values, (x, y) => JSON.stringify(x) !== JSON.stringify(y)),
  lt: (a) => pairwise(a.values, (x, y) => num(x) < num(y)),
  gt: (a) => pairwise(a.values, (x, y) => num(x) > num(y)),
  le: (a) => pairwise(a.values, (x, y) => num(x) <= num(y)),
  ge: (a) => pairwise(a.values, (x, y) => num(x) >= num(y)),
  'is-true': (a) => truthy(a.value),
  'is-false': (a) => falsy(a.value),
  'is-none': (a) => a.value === null || a.value === undefined,
  'is-empty': (a) => a.value === null || a.value === undefined || a.value === '' ||
    (Array.isArray(a.value) && a.value.length === 0) || (typeof a.value === 'object' && Object.keys(a.value as Obj).length === 0),
  'one-of': (a) => Array.isArray(a.values) && a.values.some((v) => JSON.stringify(v) === JSON.stringify(a.value)),
  matches: (a) => pyRegex(String(a.regex), true).test(String(a.value)),
  contains: (a) => pyRegex(String(a.regex), false).test(String(a.value)),
};

function setPath(target: Obj, path: string, value: unknown): void {
  const parts = path.replace(/^\//, '').split('/').filter(Boolean);
  if (parts.length === 0 || parts.some((p) => FORBIDDEN.has(p))) throw new InspectionDataError(`invalid path ${path}`);
  let cur = target;
  for (const p of parts.slice(0, -1)) {
    const next = cur[p];
    if (!next || typeof next !== 'object' || Array.isArray(next)) cur[p] = {};
    cur = cur[p] as Obj;
  }
  cur[parts[parts.length - 1] as string] = value;
}

/** Node paths actions may write (Ironic forbids identity and state fields). */
const WRITABLE_ROOTS = new Set(['driver', 'driver_info', 'properties', 'extra', 'instance_info', 'resource_class',
  'description', 'name', 'owner', 'lessee', 'conductor_group', 'boot_interface', 'deploy_interface',
  'inspect_interface', 'management_interface', 'power_interface', 'raid_interface', 'rescue_interface']);

const ACTIONS: Record<string, (a: Obj, t: RuleTarget) => void> = {
  'set-attribute': (a, t) => {
    const path = String(a.path ?? '');
    const root = path.replace(/^\//, '').split('/')[0] ?? '';
    if (!WRITABLE_ROOTS.has(root)) throw new InspectionDataError(`set-attribute: path ${path} cannot be set`);
    const copy = structuredClone(t.node[root]);
    const holder: Obj = { [root]: copy };
    setPath(holder, path, a.value);
    t.node[root] = holder[root];
  },
  'add-trait': (a, t) => {
    const traits = Array.isArray(t.node.traits) ? [...(t.node.traits as string[])] : [];
    const name = String(a.name);
    if (!/^(CUSTOM_[A-Z0-9_]+|[A-Z][A-Z0-9_]*)$/.test(name) || name.length > 255) {
      throw new InspectionDataError(`add-trait: invalid trait ${name}`);
    }
    if (!traits.includes(name)) traits.push(name);
    t.node.traits = traits;
  },
  'remove-trait': (a, t) => {
    t.node.traits = (Array.isArray(t.node.traits) ? t.node.traits as string[] : []).filter((x) => x !== String(a.name));
  },
  'set-capability': (a, t) => {
    const props = { ...(t.node.properties as Obj) };
    props.capabilities = updateCapabilities(props.capabilities, { [String(a.name)]: String(a.value) });
    t.node.properties = props;
  },
  'unset-capability': (a, t) => {
    const props = { ...(t.node.properties as Obj) };
    const caps = updateCapabilities(props.capabilities, {}).split(',').filter((c) => c && !c.startsWith(`${String(a.name)}:`));
    props.capabilities = caps.join(',');
    t.node.properties = props;
  },
  'set-plugin-data': (a, t) => setPath(t.pluginData, String(a.path ?? ''), a.value),
  log: (a, t) => t.log(String(a.msg)),
  fail: (a) => {
    throw new InspectionDataError(String(a.msg ?? 'inspection rule failed'));
  },
};

export const RULE_OPERATORS = Object.keys(OPERATORS);
export const RULE_ACTIONS = Object.keys(ACTIONS);

/** Rejects rules naming unknown operators or actions (at start-up, not at the first inspection). */
export function validateRules(rules: readonly InspectionRule[]): void {
  for (const r of rules) {
    for (const c of r.conditions) {
      if (!OPERATORS[c.op.replace(/^!/, '')]) throw new Error(`inspection rule: unsupported operator '${c.op}'`);
    }
    for (const a of r.actions) if (!ACTIONS[a.op]) throw new Error(`inspection rule: unsupported action '${a.op}'`);
  }
}

function formatArgs(args: Obj, t: RuleTarget): Obj {
  return Object.fromEntries(Object.entries(args).map(([k, v]) => [k, format(v, t)]));
}

/** Applies the rules to `t` (its node/pluginData are modified in place); returns the rules that matched. */
export function applyRules(rules: readonly InspectionRule[], t: RuleTarget): number {
  let matched = 0;
  const sorted = [...rules].sort((a, b) => b.priority - a.priority);
  for (const rule of sorted) {
    const ok = rule.conditions.every((c) => {
      const inverted = c.op.startsWith('!');
      const op = OPERATORS[c.op.replace(/^!/, '')];
      if (!op) throw new InspectionDataError(`Unsupported operator: '${c.op}'`);
      let args: Obj;
      try {
        args = formatArgs(c.args, t);
      } catch {
        // A field the data lacks makes the condition false, not the inspection.
        return inverted;
      }
      return op(args) !== inverted;
    });
    if (!ok) continue;
    matched++;
    for (const a of rule.actions) {
      const act = ACTIONS[a.op];
      if (!act) throw new InspectionDataError(`Unsupported action: '${a.op}'`);
      act(formatArgs(a.args, t), t);
    }
  }
  return matched;
}
