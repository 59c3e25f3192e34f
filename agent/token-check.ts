/**
 * Agent token comparison. Both sides are hashed first so timingSafeEqual always sees two equal-length digests:
 * neither the content nor the length of the held token leaks through response timing.
 */
import crypto from 'node:crypto';

const digest = (s: string): Buffer => crypto.createHash('sha256').update(s, 'utf8').digest();

export function tokensEqual(given: string, held: string): boolean {
  // Called through the module object (not a named import) so a test can observe that this path is taken.
  return crypto.timingSafeEqual(digest(given), digest(held));
}
