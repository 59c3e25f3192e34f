/**
 * The one rule for following HTTP redirects in agent downloads (images, checksum files, firmware): http(s)
 * only, never from https down to http, at most `max` hops, and credentials (Authorization and the like) only
 * while the redirect stays on the origin they were given for.
 */

/** A redirect that is not followed; the URL counts as failed (like a 4xx), it is not retried. */
export class RedirectRefused extends Error {}

export interface RedirectHop {
  url: URL;
  /** False once the chain left the first origin: credential headers must be dropped. */
  sameOrigin: boolean;
}

/** `hop` counts the redirects already followed before this one. */
export function nextRedirect(from: URL, location: string, hop: number, max: number): RedirectHop {
  if (hop >= max) throw new RedirectRefused(`too many redirects (more than ${max}) at ${from.href}`);
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new RedirectRefused(`invalid redirect Location from ${from.href}`);
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new RedirectRefused(`redirect from ${from.href} to unsupported scheme ${next.protocol}`);
  }
  if (from.protocol === 'https:' && next.protocol === 'http:') {
    throw new RedirectRefused(`redirect from ${from.href} to plain http refused (https downgrade)`);
  }
  return { url: next, sameOrigin: next.origin === from.origin };
}
