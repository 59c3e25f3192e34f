/**
 * A consistent hash ring (the one Ironic's hash_ring.py builds with tooz): each host puts 2^exponent points on a
 * ring of MD5 values, the i-th point being the MD5 of the host name fed in i+1 times; a key (a node UUID) maps to
 * the host of the first point after the key's MD5, and replicas continue clockwise to distinct hosts. Adding or
 * removing a host moves only the keys whose first point changes, about 1/hosts of them.
 */
import { createHash } from 'node:crypto';

/** MD5 hex digests are fixed-width, so string order is numeric order. */
function md5Hex(data: string): string {
  return createHash('md5').update(data, 'utf8').digest('hex');
}

export class HashRing {
  /** Sorted point hashes and, at the same index, the host that owns each. */
  private readonly points: string[];
  private readonly owners: string[];
  readonly hosts: readonly string[];

  constructor(hosts: Iterable<string>, readonly partitionExponent = 8) {
    this.hosts = [...new Set(hosts)].sort();
    const all: [string, string][] = [];
    const per = 2 ** partitionExponent;
    for (const host of this.hosts) {
      const h = createHash('md5');
      for (let i = 0; i < per; i++) {
        h.update(host, 'utf8');
        all.push([h.copy().digest('hex'), host]);
      }
    }
    // Ties (astronomically unlikely) go to the host that sorts first, so every conductor builds the same ring.
    all.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    this.points = all.map((p) => p[0]);
    this.owners = all.map((p) => p[1]);
  }

  /** Index of the first point strictly after `hash` (wrapping to 0), as Python's bisect.bisect. */
  private partition(hash: string): number {
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.points[mid] as string) <= hash) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.points.length ? lo : 0;
  }

  /**
   * The hosts for `key`, primary first: `replicas` distinct hosts (fewer when the ring has fewer), skipping
   * `ignore`. Empty when no host is left.
   */
  getHosts(key: string, replicas = 1, ignore: readonly string[] = []): string[] {
    const skip = new Set(ignore);
    const want = Math.min(replicas, this.hosts.filter((h) => !skip.has(h)).length);
    const out: string[] = [];
    if (want <= 0) return out;
    let p = this.partition(md5Hex(key));
    while (out.length < want) {
      const host = this.owners[p] as string;
      if (!skip.has(host) && !out.includes(host)) out.push(host);
      p = p + 1 < this.points.length ? p + 1 : 0;
    }
    return out;
  }

  /** The primary host for `key`, or null on an empty ring. */
  primary(key: string): string | null {
    return this.getHosts(key)[0] ?? null;
  }
}
