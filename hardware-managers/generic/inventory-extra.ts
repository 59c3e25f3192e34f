/**
 * Inventory pieces IPA has and our first inventory lacked (the BMC's IPv6 address is in bmc-lan.ts): USB
 * devices (`lshw -C usb` as IPA, else /sys/bus/usb), the BIOS-given NIC name (`biosdevname -i`), and LLDP.
 * LLDP: IPA listens on raw sockets, which Node cannot open. In the ramdisk, `lldp-listen` (a few KB of C built
 * with the ramdisk, ramdisk-build/lldp-listen.c) does the listening (one frame per NIC, every Ethernet NIC brought
 * up first, as IPA does, for ipa-lldp-timeout) and the frame's TLVs go out raw as IPA sends them; elsewhere (an
 * agent on a host) nothing is brought up: lldpd's neighbours (`lldpcli`) when it runs, no LLDP otherwise (as IPA
 * does when nothing is heard).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { have, run } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import { inRamdisk } from '../../common/ramdisk.js';
import { listDir, readSys } from '../../block/sysfs.js';

export interface UsbDevice {
  product: string | null;
  vendor: string | null;
  handle: string | null;
}

interface LshwNode { class?: string; product?: string; vendor?: string; handle?: string; children?: LshwNode[] }

/** lshw's JSON (a list, or one object in older versions) flattened to its usb nodes with a product. */
export function usbFromLshw(json: unknown): UsbDevice[] {
  const out: UsbDevice[] = [];
  const walk = (n: LshwNode): void => {
    if (n.product || n.vendor) out.push({ product: n.product ?? null, vendor: n.vendor ?? null, handle: n.handle ?? null });
    for (const c of n.children ?? []) walk(c);
  };
  for (const n of (Array.isArray(json) ? json : json ? [json] : []) as LshwNode[]) walk(n);
  return out;
}

export async function getUsbDevices(sysRoot = '/sys'): Promise<UsbDevice[]> {
  if (sysRoot === '/sys' && (await have('lshw'))) {
    try {
      const r = await run('lshw', ['-quiet', '-json', '-C', 'usb'], { quiet: true, timeoutMs: 60_000 });
      const list = usbFromLshw(JSON.parse(r.stdout || '[]'));
      if (list.length) return list;
    } catch {
      // fall back to sysfs
    }
  }
  const base = join(sysRoot, 'bus/usb/devices');
  return listDir(base).filter((d) => existsSync(join(base, d, 'idVendor'))).sort().map((d) => ({
    product: readSys(join(base, d, 'product')) ?? readSys(join(base, d, 'idProduct')),
    vendor: readSys(join(base, d, 'manufacturer')) ?? readSys(join(base, d, 'idVendor')),
    handle: `USB:${readSys(join(base, d, 'busnum')) ?? '?'}:${readSys(join(base, d, 'devnum')) ?? '?'}`,
  }));
}

/** `biosdevname -i IFACE` (null when the tool is absent or has no name, as IPA). */
export async function getBiosGivenNicName(iface: string): Promise<string | null> {
  if (!(await have('biosdevname'))) return null;
  try {
    const r = await run('biosdevname', ['-i', iface], { quiet: true, timeoutMs: 10_000, okCodes: [0, 2, 3, 4] });
    const name = r.stdout.trim();
    return r.exitCode === 0 && name ? name : null;
  } catch {
    return null;
  }
}

const tlv = (type: number, value: Buffer): [number, string] => [type, value.toString('hex')];
const macBytes = (mac: string): Buffer | null =>
  /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac) ? Buffer.from(mac.replace(/:/g, ''), 'hex') : null;

interface LldpcliIface {
  chassis?: Record<string, { id?: { type?: string; value?: string } }>;
  port?: { id?: { type?: string; value?: string } };
}

/** lldpcli's JSON neighbours → IPA's lldp_raw: {ifname: [[type, hex], ...]} (chassis id, port id, system name). */
export function lldpFromLldpcli(json: unknown): Record<string, [number, string][]> {
  const out: Record<string, [number, string][]> = {};
  const ifaces = (json as { lldp?: { interface?: unknown } } | undefined)?.lldp?.interface;
  const entries: [string, LldpcliIface][] = [];
  if (Array.isArray(ifaces)) {
    for (const o of ifaces) for (const [k, v] of Object.entries(o as Record<string, LldpcliIface>)) entries.push([k, v]);
  } else if (ifaces && typeof ifaces === 'object') {
    for (const [k, v] of Object.entries(ifaces as Record<string, LldpcliIface>)) entries.push([k, v]);
  }
  for (const [name, n] of entries) {
    const tlvs: [number, string][] = [];
    const [sysName, ch] = Object.entries(n.chassis ?? {})[0] ?? [];
    const cid = ch?.id;
    const cmac = cid?.type === 'mac' && cid.value ? macBytes(cid.value) : null;
    if (cmac) tlvs.push(tlv(1, Buffer.concat([Buffer.from([4]), cmac])));
    const pid = n.port?.id;
    if (pid?.value) {
      const pmac = pid.type === 'mac' ? macBytes(pid.value) : null;
      tlvs.push(tlv(2, pmac ? Buffer.concat([Buffer.from([3]), pmac])
        : Buffer.concat([Buffer.from([pid.type === 'ifname' ? 5 : 7]), Buffer.from(pid.value)])));
    }
    if (sysName) tlvs.push(tlv(5, Buffer.from(sysName)));
    if (tlvs.length) out[name] = tlvs;
  }
  return out;
}

const log = getLogger('lldp');
const LLDP_ETHERTYPE = 0x88cc;
const VLAN_ETHERTYPE = 0x8100;

/** An LLDP frame's TLVs as IPA's lldp_raw has them: [type, value as hex], up to End of LLDPDU; null: not LLDP. */
export function lldpTlvsFromFrame(frame: Buffer): [number, string][] | null {
  let off = 12;
  if (frame.length < off + 2) return null;
  let ethertype = frame.readUInt16BE(off);
  if (ethertype === VLAN_ETHERTYPE && frame.length >= off + 6) {
    off += 4;
    ethertype = frame.readUInt16BE(off);
  }
  if (ethertype !== LLDP_ETHERTYPE) return null;
  off += 2;
  const tlvs: [number, string][] = [];
  while (off + 2 <= frame.length) {
    const header = frame.readUInt16BE(off);
    const type = header >> 9;
    const len = header & 0x1ff;
    off += 2;
    if (type === 0 || off + len > frame.length) break;
    tlvs.push([type, frame.subarray(off, off + len).toString('hex')]);
    off += len;
  }
  return tlvs;
}

/** The program that hears one LLDP frame on a NIC and prints it as one hex line (ramdisk-build/lldp-listen.c). */
export const LLDP_LISTENER = 'lldp-listen';
/** lldp-listen's exit status when nothing came within its timeout. */
const LISTEN_NOTHING_HEARD = 3;

/** lldp-listen's output (the whole frame, Ethernet header included, as one hex line) as bytes; null: no frame. */
export function frameFromListenerHex(out: string): Buffer | null {
  const line = out.trim().split('\n')[0]?.trim() ?? '';
  return /^(?:[0-9a-f]{2})+$/i.test(line) && line.length >= 28 ? Buffer.from(line, 'hex') : null;
}

/** Ethernet NICs with a device behind them (what IPA listens on). */
function physicalNics(): string[] {
  return listDir('/sys/class/net').filter((n) => n !== 'lo' && existsSync(join('/sys/class/net', n, 'device')) &&
    readFileSync(join('/sys/class/net', n, 'type'), 'utf8').trim() === '1').sort();
}

/** Listens on every NIC at once for one LLDP frame each, for at most timeoutS (ramdisk only: it brings NICs up). */
async function captureLldp(timeoutS: number): Promise<Record<string, [number, string][]>> {
  const out: Record<string, [number, string][]> = {};
  await Promise.all(physicalNics().map(async (nic) => {
    await run('ip', ['link', 'set', nic, 'up'], { quiet: true }).catch(() => undefined);
    try {
      // The listener keeps its own time; the wrapper's timeout only backs it up should it hang.
      const r = await run(LLDP_LISTENER, [nic, String(timeoutS)],
        { quiet: true, timeoutMs: timeoutS * 1000 + 10_000, okCodes: [0, LISTEN_NOTHING_HEARD] });
      const frame = r.exitCode === 0 ? frameFromListenerHex(r.stdout) : null;
      const tlvs = frame ? lldpTlvsFromFrame(frame) : null;
      if (tlvs?.length) out[nic] = tlvs;
      else log.info({ nic, timeoutS }, r.exitCode === 0 ? 'LLDP: the frame heard was not LLDP' : 'LLDP: nothing heard');
    } catch (e) {
      // The listener could not listen on this NIC: skipped, as IPA skips a NIC whose socket fails; said in the log.
      log.warn({ nic, err: e instanceof Error ? e.message : String(e) }, 'LLDP: cannot listen');
    }
  }));
  return out;
}

export async function collectLldpData(opts: { timeoutS?: number } = {}): Promise<Record<string, [number, string][]>> {
  if (inRamdisk() && (await have(LLDP_LISTENER))) return captureLldp(opts.timeoutS ?? 30);
  if (!(await have('lldpcli'))) return {};
  try {
    const r = await run('lldpcli', ['-f', 'json', 'show', 'neighbors'], { quiet: true, timeoutMs: 30_000 });
    return lldpFromLldpcli(JSON.parse(r.stdout || '{}'));
  } catch {
    return {};
  }
}
