/**
 * Node traits (API 1.37): set, add, remove under the node lock, validated as Ironic 21.4 does — a standard trait
 * from os-traits (the list Debian's python3-os-traits 2.9 ships, carried in conductor/services/os-traits.ts) or
 * CUSTOM_[A-Z0-9_]+, at most 255 characters, at most 50 per node. Traits are what Nova's placement matches
 * flavors against and what deploy templates key on, so a typo must be refused, not stored.
 */
import type { ConductorContext } from '../context.js';
import { InvalidParameterValue, NotFound } from '../errors.js';
import { STANDARD_TRAITS } from './os-traits.js';

const STANDARD = new Set(STANDARD_TRAITS);
const CUSTOM = /^CUSTOM_[A-Z0-9_]+$/;
export const MAX_TRAITS_PER_NODE = 50;

export function isValidTrait(t: unknown): t is string {
  return typeof t === 'string' && t.length >= 1 && t.length <= 255 && (CUSTOM.test(t) || STANDARD.has(t));
}

export function validateTraits(traits: unknown[]): void {
  for (const t of traits) {
    if (!isValidTrait(t)) {
      throw new InvalidParameterValue(`Invalid trait ${JSON.stringify(t)}. A valid trait must be no longer than 255 characters. ` +
        'Standard traits are defined in the os_traits library. A custom trait must start with the prefix CUSTOM_ and use the ' +
        'following characters: A-Z, 0-9 and _');
    }
  }
}

async function write(c: ConductorContext, ident: string, next: (current: string[], uuid: string) => string[]): Promise<void> {
  const found = await c.tasks.findNode(ident);
  await c.tasks.withNodeTask(found, { exclusive: true, purpose: 'update traits' }, async (task) => {
    const traits = [...new Set(next(task.node.traits, task.node.uuid))].sort();
    if (traits.length > MAX_TRAITS_PER_NODE) {
      throw new InvalidParameterValue(`Could not modify traits for node ${task.node.uuid} as it would exceed the maximum number ` +
        `of traits per node (${traits.length} vs. ${MAX_TRAITS_PER_NODE})`);
    }
    await task.save({ traits });
  });
}

export function setTraits(c: ConductorContext, ident: string, traits: string[]): Promise<void> {
  return write(c, ident, () => traits);
}

export function addTraits(c: ConductorContext, ident: string, traits: string[]): Promise<void> {
  return write(c, ident, (cur) => [...cur, ...traits]);
}

/** Removes one trait (404 when the node lacks it, as Ironic) or, with null, all of them. */
export function removeTraits(c: ConductorContext, ident: string, trait: string | null): Promise<void> {
  return write(c, ident, (cur, uuid) => {
    if (trait === null) return [];
    if (!cur.includes(trait)) throw new NotFound(`Node ${uuid} doesn't have a trait '${trait}'`);
    return cur.filter((t) => t !== trait);
  });
}
