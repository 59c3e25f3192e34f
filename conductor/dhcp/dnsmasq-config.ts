/**
 * What the dnsmasq provider writes, as pure functions (unit-tested): per-MAC host entries in dhcp-hostsdir,
 * per-node option files in dhcp-optsdir (file names and line formats as Ironic's ironic/dhcp/dnsmasq.py), and the
 * dnsmasq configuration itself, for the dnsmasq the conductor runs or for one a site runs on its own.
 */
import { join } from 'node:path';
import type { DhcpOption } from './types.js';

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

/** Lower-case colon form; anything else is refused (the MAC becomes a file name and a dnsmasq line). */
export function normaliseMac(mac: string): string {
  const m = mac.trim().toLowerCase().replace(/-/g, ':');
  if (!MAC.test(m)) throw new Error(`not a MAC address: ${JSON.stringify(mac)}`);
  return m;
}

export function hostFileName(mac: string): string {
  return `ironic-${normaliseMac(mac)}.conf`;
}

export function optsFileName(nodeUuid: string): string {
  if (!/^[A-Za-z0-9-]+$/.test(nodeUuid)) throw new Error(`invalid node UUID ${JSON.stringify(nodeUuid)}`);
  return `ironic-${nodeUuid}.conf`;
}

/** The MAC gets the node's transaction tag (its options apply) and `ironic` (any lease of ours). */
export function hostEntry(mac: string, tag: string): string {
  return `${normaliseMac(mac)},set:${checkTag(tag)},set:ironic\n`;
}

/** After the ramdisk: dnsmasq answers this MAC nothing (picked up by inotify without a reload). */
export function ignoreEntry(mac: string): string {
  return `${normaliseMac(mac)},ignore\n`;
}

function checkTag(tag: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(tag)) throw new Error(`invalid dnsmasq tag ${JSON.stringify(tag)}`);
  return tag;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: a control character would end or forge a dnsmasq line
const CONTROL = /[\x00-\x1f\x7f]/;

/** `tag:<tag>,<opt_name>,<opt_value>` per option; names/values that could forge another line are refused. */
export function optsFile(tag: string, options: readonly DhcpOption[]): string {
  const lines = options.filter((o) => o.ip_version === 4).map((o) => {
    if (CONTROL.test(o.opt_name) || CONTROL.test(o.opt_value)) throw new Error(`DHCP option ${o.opt_name} has control characters`);
    if (!/^(tag:!?[A-Za-z0-9_-]+,|!?\d+,)*(\d+|option:[a-z0-9-]+)$/.test(o.opt_name)) {
      throw new Error(`invalid DHCP option name ${JSON.stringify(o.opt_name)}`);
    }
    return `tag:${checkTag(tag)},${o.opt_name},${o.opt_value}`;
  });
  return `${lines.join('\n')}\n`;
}

export interface DnsmasqSettings {
  /** Holds hostsdir/, optsdir/, dnsmasq.leases, dnsmasq.conf. */
  dir: string;
  interface: string;
  /** `start,end[,lease time]`, e.g. 192.168.77.100,192.168.77.150,1h. */
  range: string;
  tftpRoot?: string | undefined;
  /** Answer MACs without a host entry too (discovery); default: only known ones. */
  allowUnknown?: boolean;
  pidFile?: string | undefined;
  /** User dnsmasq drops to (its default: nobody, which must then be able to read tftp_root and the dirs). */
  user?: string | undefined;
  /**
   * dnsmasq's check that an address is free (an ICMP echo, up to 3 s of silence) before it first offers it
   * (default on, dnsmasq's default). Off (`no-ping`) only where nothing but this server hands out addresses in the
   * range: the check delays every new lease by 3 s, during which PXE firmware re-sends its DISCOVER.
   */
  pingCheck?: boolean | undefined;
}

export const dnsmasqPaths = (dir: string): { hostsdir: string; optsdir: string; leases: string; conf: string; log: string } => ({
  hostsdir: join(dir, 'hostsdir'), optsdir: join(dir, 'optsdir'), leases: join(dir, 'dnsmasq.leases'),
  conf: join(dir, 'dnsmasq.conf'), log: join(dir, 'dnsmasq.log'),
});

/** dnsmasq.conf for the provisioning network: DHCP (no DNS) on one interface, TFTP, per-node files. */
export function dnsmasqConf(s: DnsmasqSettings): string {
  for (const [k, v] of Object.entries({ interface: s.interface, range: s.range, dir: s.dir, tftpRoot: s.tftpRoot ?? '', user: s.user ?? '' })) {
    if (CONTROL.test(v)) throw new Error(`dnsmasq ${k} has control characters`);
  }
  if (!/^[A-Za-z0-9_.:-]+$/.test(s.interface)) throw new Error(`invalid interface name ${JSON.stringify(s.interface)}`);
  if (!/^[0-9a-fA-F.:]+,[0-9a-fA-F.:]+(,[0-9a-zA-Z.:]+)*$/.test(s.range)) throw new Error(`invalid DHCP range ${JSON.stringify(s.range)}`);
  const p = dnsmasqPaths(s.dir);
  const lines = [
    '# written by baremetal-ts (conductor/dhcp/dnsmasq-config.ts); per-node entries live in the two dirs below',
    'port=0',
    `interface=${s.interface}`,
    'bind-dynamic',
    'except-interface=lo',
    `dhcp-range=${s.range}`,
    `dhcp-leasefile=${p.leases}`,
    `dhcp-hostsdir=${p.hostsdir}`,
    `dhcp-optsdir=${p.optsdir}`,
    // iPXE sends option 175: such clients get the script URL instead of another iPXE binary.
    'dhcp-match=set:ipxe,175',
    // iPXE's no-pxedhcp (175.176 = 1): every boot option comes from this server, so iPXE requests the offer at
    // once instead of waiting 2 s for ProxyDHCP offers on each DHCP (ROM and chain-loaded iPXE alike).
    'dhcp-option-force=tag:ipxe,encap:175,176,1',
    'dhcp-match=set:efi64,option:client-arch,7',
    'dhcp-match=set:efi64,option:client-arch,9',
    ...(s.allowUnknown ? [] : ['dhcp-ignore=tag:!known']),
    'log-dhcp',
    ...(s.pingCheck === false ? ['no-ping'] : []),
    ...(s.tftpRoot ? ['enable-tftp', `tftp-root=${s.tftpRoot}`] : []),
    ...(s.pidFile ? [`pid-file=${s.pidFile}`] : []),
    ...(s.user ? [`user=${s.user}`] : []),
  ];
  return `${lines.join('\n')}\n`;
}

/** Leases file lines `<expiry> <mac> <ip> <hostname> <client-id>`: the addresses of these MACs. */
export function leasedAddresses(leases: string, macs: readonly string[]): string[] {
  const want = new Set(macs.map(normaliseMac));
  const out: string[] = [];
  for (const line of leases.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 3 && want.has((f[1] ?? '').toLowerCase())) out.push(f[2] as string);
  }
  return out;
}
