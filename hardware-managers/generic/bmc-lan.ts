/**
 * The BMC's LAN addresses, read in-band through the local IPMI device as IPA does (`ipmitool lan print` and
 * `lan6 print` over channels 1-11): Get LAN Configuration Parameters, asked with the ramdisk's `ipmi-lan-param`
 * (ramdisk-build/ipmi-lan-param.c, a few KB where ipmitool + libfreeipmi were 1.3 MB compressed) or, where only
 * ipmitool is installed (an agent in another ramdisk), `ipmitool raw` with the same request. Parameter numbers and
 * layouts are the IPMI 2.0 LAN configuration table's (IPv6 ones from its IPv6 addendum).
 */
import { have, run } from '../../common/exec.js';

const PARAM_IP = 3;
const PARAM_MAC = 5;
/** IPv6 status: how many static and dynamic address slots there are. */
const PARAM_IP6_STATUS = 55;
const PARAM_IP6_STATIC = 56;
const PARAM_IP6_DYNAMIC = 59;

export interface BmcLan {
  /** The first LAN channel's IPv4 address other than 0.0.0.0; '0.0.0.0' when none has one (as IPA). */
  address: string;
  mac?: string;
  /** The first global IPv6 address of any LAN channel; '::/0' when none (as IPA). */
  v6address: string;
}

/** One parameter's data (revision byte excluded), or undefined when the BMC has no such channel or parameter. */
export type LanParamReader = (channel: number, param: number, set?: number) => Promise<Buffer | undefined>;

/** Hex bytes as both tools print them (`ipmitool raw` folds lines and leads with a space); `skip` leading bytes. */
export function bytesFromHex(out: string, skip = 0): Buffer | undefined {
  const hex = out.trim().split(/\s+/).filter(Boolean);
  if (!hex.length || hex.some((h) => !/^[0-9a-f]{2}$/i.test(h))) return undefined;
  return Buffer.from(hex.slice(skip).join(''), 'hex');
}

/**
 * The reader over whichever tool is installed: ipmi-lan-param prints the parameter's data; `ipmitool raw` prints
 * the response after its completion code, so the parameter revision comes first and is skipped.
 */
async function lanParamReader(): Promise<LanParamReader | undefined> {
  const tool = (await have('ipmi-lan-param'))
    ? { file: 'ipmi-lan-param', request: [] as string[], tail: [] as string[], skip: 0 }
    : (await have('ipmitool')) ? { file: 'ipmitool', request: ['raw', '0x0c', '0x02'], tail: ['0'], skip: 1 } : undefined;
  if (!tool) return undefined;
  return async (ch, param, set = 0) => {
    const args = [...tool.request, String(ch), String(param), String(set), ...tool.tail];
    const r = await run(tool.file, args, { quiet: true, timeoutMs: 10_000 }).catch(() => undefined);
    return r ? bytesFromHex(r.stdout, tool.skip) : undefined;
  };
}

/** An IPv6 address slot (set selector, source/type, 16 address bytes, prefix length, status): the address, if global. */
export function globalV6(slot: Buffer | undefined): string | undefined {
  if (!slot || slot.length < 18) return undefined;
  const groups = Array.from({ length: 8 }, (_, i) => slot.readUInt16BE(2 + i * 2).toString(16));
  // The WHATWG URL host serializer writes IPv6 in its canonical compressed form (RFC 5952), as inet_ntop does.
  const addr = new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1);
  return addr === '::' || addr.startsWith('fe80:') ? undefined : addr;
}

async function firstV6(read: LanParamReader, ch: number): Promise<string | undefined> {
  const status = await read(ch, PARAM_IP6_STATUS);
  if (!status || status.length < 2) return undefined;
  const [staticSlots = 0, dynamicSlots = 0] = status;
  for (const [param, slots] of [[PARAM_IP6_STATIC, staticSlots], [PARAM_IP6_DYNAMIC, dynamicSlots]] as const) {
    for (let set = 0; set < slots; set++) {
      const a = globalV6(await read(ch, param, set));
      if (a) return a;
    }
  }
  return undefined;
}

/** Channels 1-11 in order, as IPA: the first with an IPv4 address gives address and MAC. */
export async function readBmcLan(read?: LanParamReader): Promise<BmcLan> {
  const reader = read ?? (await lanParamReader());
  if (!reader) return { address: '0.0.0.0', v6address: '::/0' };
  let v4: { address: string; mac?: string } | undefined;
  let v6: string | undefined;
  for (let ch = 1; ch <= 11 && !(v4 && v6); ch++) {
    const ip = await reader(ch, PARAM_IP);
    if (!ip) continue; // not a LAN channel
    if (!v4 && ip.length >= 4 && ip.readUInt32BE(0) !== 0) {
      const mac = await reader(ch, PARAM_MAC);
      v4 = { address: [...ip.subarray(0, 4)].join('.'),
        ...(mac && mac.length >= 6 ? { mac: [...mac.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':') } : {}) };
    }
    v6 ??= await firstV6(reader, ch);
  }
  return { address: v4?.address ?? '0.0.0.0', ...(v4?.mac ? { mac: v4.mac } : {}), v6address: v6 ?? '::/0' };
}
