/**
 * JSON from the network as plain data: no `__proto__` / `constructor` / `prototype` keys (a later merge or
 * path walk could otherwise reach Object.prototype through them), nesting and string sizes bounded (a deep
 * document overflows the stack of whatever walks it recursively later: structuredClone, JSON.stringify, zod).
 * Both APIs parse request bodies only through here.
 */

/** Keys that lead from plain data to shared prototypes when used as a property name or path token. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

export function isForbiddenKey(k: string): boolean {
  return FORBIDDEN_KEYS.has(k);
}

export interface JsonLimits {
  /** Deepest nesting of arrays/objects allowed (the top-level value is depth 1). */
  maxDepth: number;
  /** Longest string (value or key) allowed, in UTF-16 units of its JSON text. */
  maxStringLength: number;
}

/**
 * Answers from peers (an agent, a BMC, the conductor): they are not trusted either, but their size is capped
 * where they are read, so only the nesting is bounded here.
 */
export const PEER_JSON_LIMITS: JsonLimits = { maxDepth: 64, maxStringLength: Number.MAX_SAFE_INTEGER };

/** A body over the limits, or malformed: the message says which (for a 400). */
export class JsonInputError extends Error {}

/**
 * Nesting depth and longest string, in one linear pass over the text (no recursion, so any depth is fine).
 * String lengths count the escaped text, an upper bound of the decoded length.
 */
function scan(text: string, limits: JsonLimits): { risky: boolean } {
  let depth = 0;
  let inString = false;
  let start = 0;
  let risky = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 92 /* \ */) {
        if (text.charCodeAt(i + 1) === 117 /* u */) risky = true;
        i++;
      } else if (ch === 34 /* " */) {
        inString = false;
        if (i - start > limits.maxStringLength) {
          throw new JsonInputError(`a string is longer than ${limits.maxStringLength} characters`);
        }
      }
      continue;
    }
    if (ch === 34) {
      inString = true;
      start = i + 1;
    } else if (ch === 123 /* { */ || ch === 91 /* [ */) {
      if (++depth > limits.maxDepth) throw new JsonInputError(`nested deeper than ${limits.maxDepth} levels`);
    } else if (ch === 125 /* } */ || ch === 93 /* ] */) {
      depth--;
    }
  }
  return { risky };
}

function dropForbidden(this: unknown, key: string, value: unknown): unknown {
  return FORBIDDEN_KEYS.has(key) && !Array.isArray(this) ? undefined : value;
}

/**
 * Parses `text` as JSON within `limits`; `__proto__`, `constructor` and `prototype` keys are dropped wherever
 * they appear. Throws JsonInputError (limits) or SyntaxError (malformed).
 */
export function parseJsonSafe(text: string, limits: JsonLimits): unknown {
  const { risky } = scan(text, limits);
  // The reviver costs ~2x the parse; only texts that can spell a forbidden key (directly or by \u escapes) pay.
  if (risky || text.includes('__proto__') || text.includes('constructor') || text.includes('prototype')) {
    return JSON.parse(text, dropForbidden);
  }
  return JSON.parse(text);
}

/** Depth of a value built in JS (not parsed here), without recursion; stops counting past `max`. */
export function depthExceeds(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length) {
    const [v, d] = stack.pop() as [unknown, number];
    if (typeof v !== 'object' || v === null) continue;
    if (d > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, d + 1]);
  }
  return false;
}
