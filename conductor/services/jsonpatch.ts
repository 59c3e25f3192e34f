/**
 * RFC 6902 JSON patch, the subset Ironic accepts: add, replace, remove (plus test). Paths use RFC 6901
 * pointers (`~1` = `/`, `~0` = `~`). Works on a deep copy; errors are InvalidParameterValue (400).
 * A path token `__proto__`, `constructor` or `prototype` is refused (it would walk from the document into
 * Object.prototype), and the walk follows own properties and in-range array indexes only.
 */
import { isForbiddenKey } from '../../common/safe-json.js';
import { InvalidParameterValue } from '../errors.js';

export interface PatchOp {
  op: 'add' | 'replace' | 'remove' | 'test';
  path: string;
  value?: unknown;
}

/** Validates the shape of a patch document (a list of operations). */
export function parsePatch(body: unknown): PatchOp[] {
  if (!Array.isArray(body)) throw new InvalidParameterValue('Invalid patch: a JSON patch must be a list of operations.');
  return body.map((raw, i) => {
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
      throw new InvalidParameterValue(`Invalid patch: operation ${i} is not an object.`);
    }
    const op = raw as Record<string, unknown>;
    if (op.op !== 'add' && op.op !== 'replace' && op.op !== 'remove' && op.op !== 'test') {
      throw new InvalidParameterValue(`Invalid patch: operation ${i} has an unsupported "op" ${JSON.stringify(op.op)}; ` +
        `allowed are add, replace, remove.`);
    }
    if (typeof op.path !== 'string' || !/^\/[^/]/.test(op.path) || op.path.endsWith('/')) {
      throw new InvalidParameterValue(`Invalid patch: operation ${i} has an invalid path ${JSON.stringify(op.path)}.`);
    }
    const bad = pathTokens(op.path).find(isForbiddenKey);
    if (bad !== undefined) {
      throw new InvalidParameterValue(`Invalid patch path ${JSON.stringify(op.path)}: "${bad}" is not allowed in a path ` +
        `(operation ${i}).`);
    }
    if ((op.op === 'add' || op.op === 'replace' || op.op === 'test') && !('value' in op)) {
      throw new InvalidParameterValue(`Invalid patch: 'value' is required for "${op.op}" (operation ${i}).`);
    }
    const extra = Object.keys(op).filter((k) => !['op', 'path', 'value'].includes(k));
    if (extra.length) throw new InvalidParameterValue(`Invalid patch: unexpected keys ${extra.join(', ')} in operation ${i}.`);
    return { op: op.op, path: op.path, ...('value' in op ? { value: op.value } : {}) };
  });
}

function unescapeToken(token: string): string {
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}

function pathTokens(path: string): string[] {
  return path.slice(1).split('/').map(unescapeToken);
}

const INDEX_RE = /^(0|[1-9]\d*)$/;

type Container = Record<string, unknown> | unknown[];

function isContainer(v: unknown): v is Container {
  return typeof v === 'object' && v !== null;
}

export function applyJsonPatch<T extends Record<string, unknown>>(doc: T, ops: readonly PatchOp[]): T {
  const root = structuredClone(doc) as Record<string, unknown>;
  for (const op of ops) {
    const tokens = pathTokens(op.path);
    // parsePatch refuses these already; applyJsonPatch is exported, so it holds on its own too.
    if (tokens.some(isForbiddenKey)) throw new InvalidParameterValue(`Invalid patch path ${JSON.stringify(op.path)}.`);
    const last = tokens.pop() as string;
    let parent: unknown = root;
    for (const t of tokens) {
      const next: unknown = Array.isArray(parent) ? (INDEX_RE.test(t) ? parent[Number(t)] : undefined)
        : isContainer(parent) && Object.hasOwn(parent, t) ? (parent as Record<string, unknown>)[t] : undefined;
      if (next === undefined || next === null) {
        throw new InvalidParameterValue(`Invalid patch: path ${op.path} does not exist (missing "${t}").`);
      }
      parent = next;
    }
    if (!isContainer(parent)) throw new InvalidParameterValue(`Invalid patch: ${op.path} does not point into an object.`);
    if (Array.isArray(parent)) {
      const idx = last === '-' ? parent.length : INDEX_RE.test(last) ? Number(last) : NaN;
      if (!Number.isInteger(idx) || idx < 0 || idx > parent.length || (op.op !== 'add' && idx >= parent.length)) {
        throw new InvalidParameterValue(`Invalid patch: array index ${last} out of range in ${op.path}.`);
      }
      if (op.op === 'add') parent.splice(idx, 0, op.value);
      else if (op.op === 'replace') parent[idx] = op.value;
      else if (op.op === 'remove') parent.splice(idx, 1);
      else if (JSON.stringify(parent[idx]) !== JSON.stringify(op.value)) {
        throw new InvalidParameterValue(`Invalid patch: test failed for ${op.path}.`);
      }
      continue;
    }
    const exists = Object.hasOwn(parent, last) && parent[last] !== undefined;
    switch (op.op) {
      case 'add':
        Object.defineProperty(parent, last, { value: op.value, writable: true, enumerable: true, configurable: true });
        break;
      case 'replace':
        if (!exists) throw new InvalidParameterValue(`Invalid patch: can't replace a non-existent object '${last}'.`);
        parent[last] = op.value;
        break;
      case 'remove':
        if (!exists) {
          throw new InvalidParameterValue(`Invalid patch: can't remove a non-existent object '${last}'.`);
        }
        delete parent[last];
        break;
      case 'test':
        if (JSON.stringify(exists ? parent[last] : undefined) !== JSON.stringify(op.value)) {
          throw new InvalidParameterValue(`Invalid patch: test failed for ${op.path}.`);
        }
        break;
    }
  }
  return root as T;
}
