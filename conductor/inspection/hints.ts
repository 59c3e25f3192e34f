/**
 * Root device hints against an inventory's disks, as Ironic's utils.match_root_device_hints: every hint must
 * match; `size` is in GiB and may carry an operator (">= 10", "<= 20", "== 8", "<in> 8 16"); strings compare
 * exactly, or with "s== x" / "<in> a b" / "<or> a <or> b". The first matching disk, in inventory order, wins.
 */

export interface InventoryDisk {
  name: string;
  size: number;
  [key: string]: unknown;
}

const GiB = 2 ** 30;
const STRING_HINTS = ['name', 'model', 'vendor', 'serial', 'wwn', 'wwn_with_extension', 'wwn_vendor_extension', 'hctl',
  'by_path'];

function matchNumber(want: unknown, have: number): boolean {
  if (typeof want === 'number') return have === want;
  if (typeof want !== 'string') return false;
  const s = want.trim();
  const m = /^(>=|<=|==|!=|>|<)\s*(\d+)$/.exec(s);
  if (m) {
    const n = Number(m[2]);
    switch (m[1]) {
      case '>=': return have >= n;
      case '<=': return have <= n;
      case '==': return have === n;
      case '!=': return have !== n;
      case '>': return have > n;
      default: return have < n;
    }
  }
  if (s.startsWith('<in>')) return s.slice(4).trim().split(/\s+/).map(Number).includes(have);
  return /^\d+$/.test(s) && Number(s) === have;
}

function matchString(want: unknown, have: unknown): boolean {
  if (typeof have !== 'string' || typeof want !== 'string') return false;
  const s = want.trim();
  if (s.startsWith('s== ')) return have === s.slice(4);
  if (s.startsWith('s!= ')) return have !== s.slice(4);
  if (s.startsWith('<in>')) return s.slice(4).trim().split(/\s+/).includes(have);
  if (s.includes('<or>')) return s.split('<or>').map((x) => x.trim()).filter(Boolean).includes(have);
  return have === s || (s.startsWith('/dev/') && have === s);
}

export function diskMatches(disk: InventoryDisk, hints: Record<string, unknown>): boolean {
  for (const [k, want] of Object.entries(hints)) {
    if (k === 'size') {
      if (!matchNumber(want, Math.floor(disk.size / GiB))) return false;
    } else if (k === 'rotational') {
      const w = typeof want === 'string' ? ['true', '1', 'yes', 'on'].includes(want.toLowerCase()) : Boolean(want);
      if (Boolean(disk.rotational) !== w) return false;
    } else if (STRING_HINTS.includes(k)) {
      const have = k === 'name' && typeof want === 'string' && !want.startsWith('/dev/') ? String(disk.name).replace(/^\/dev\//, '') : disk[k];
      if (!matchString(want, have)) return false;
    } else {
      throw new Error(`unsupported root device hint ${k}`);
    }
  }
  return true;
}

export function matchRootDevice(disks: readonly InventoryDisk[], hints: Record<string, unknown>): InventoryDisk | undefined {
  return disks.find((d) => diskMatches(d, hints));
}

/** IPA's guess_root_disk: the smallest disk of at least 4 GiB (the agent's default root device). */
export function guessRootDisk(disks: readonly InventoryDisk[], minBytes = 4 * GiB): InventoryDisk | undefined {
  return [...disks].filter((d) => typeof d.size === 'number' && d.size >= minBytes)
    .sort((a, b) => a.size - b.size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))[0];
}
