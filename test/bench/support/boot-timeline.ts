/**
 * A host-clock timeline of one ramdisk boot for `npm run bench -- ramdisk`: the serial log is polled and each new
 * line stamped with the host time it first appeared (the guest's clock under TCG is not the host's), the boot
 * server's per-file byte counters give the download start and end, and marks (QEMU start, lookup) are added by
 * the caller. Only the lines that delimit a phase are kept; the rest of the console is noise here.
 */
import { existsSync, readFileSync } from 'node:fs';
import { stripAnsi } from '../../../lab/qemu.js';

/** Serial lines that mark a phase boundary (first match of each wins). */
const MARKS: Array<[string, RegExp]> = [
  ['firmware: iPXE banner', /iPXE \d|iPXE initialising|iPXE \(http/],
  ['iPXE: ROM starts', /starting execution/],
  ['iPXE: DHCP done (IPv4 and IPv6)', /net0: \d+\.\d+\.\d+\.\d+\//],
  ['kernel: first line', /Linux version /],
  ['kernel: unpacking initramfs', /Unpacking initramfs|Trying to unpack rootfs/],
  ['kernel: initramfs freed', /Freeing initrd memory/],
  ['kernel: run /init', /Run \/init as init process/],
  ['init: start', /bmts-init: start/],
  ['init: modules loaded', /bmts-init: modules loaded/],
  ['init: network done', /bmts-init: network done/],
  ['supervisor: agent start', /bmts-supervise: starting baremetal-agent/],
  ['kernel: CRNG ready', /crng init done/],
  ['agent: starting', /agent starting/],
  ['agent: managers loaded, looking up', /looking up the node/],
];

export interface BootTimeline {
  /** Stamp a caller-side event (host clock). */
  mark(name: string): void;
  /** Stop polling; returns the rows sorted by time, seconds from `t0`. */
  stop(): Array<{ s: number; what: string; line?: string }>;
}

/** dnsmasq's log lines worth a row (every one of them: a slow DHCP shows as repeats). */
const DNSMASQ = /DHCP(DISCOVER|OFFER|REQUEST|ACK)|not giving|ignored|no address/;

export function watchBoot(opts: { serialLog: string; t0: number; sent?: Map<string, number>; sizes?: Record<string, number>; dnsmasqLog?: string }): BootTimeline {
  const rows: Array<{ at: number; what: string; line?: string }> = [];
  const seen = new Set<string>();
  const tails = new Map<string, { offset: number; partial: string }>();
  const dl = new Map<string, { first?: number; done?: number }>();
  const newLines = (file: string): string[] => {
    if (!existsSync(file)) return [];
    const t = tails.get(file) ?? { offset: 0, partial: '' };
    tails.set(file, t);
    const buf = readFileSync(file);
    if (buf.length <= t.offset) return [];
    const text = t.partial + stripAnsi(buf.subarray(t.offset).toString('utf8'));
    t.offset = buf.length;
    const lines = text.split('\n');
    t.partial = lines.pop() ?? '';
    return lines;
  };
  const poll = (): void => {
    const now = Date.now();
    for (const line of newLines(opts.serialLog)) {
      for (const [what, re] of MARKS) {
        if (!seen.has(what) && re.test(line)) {
          seen.add(what);
          rows.push({ at: now, what, line: line.trim().slice(0, 120) });
        }
      }
    }
    if (opts.dnsmasqLog) {
      for (const line of newLines(opts.dnsmasqLog)) {
        if (DNSMASQ.test(line)) rows.push({ at: now, what: 'dnsmasq', line: line.trim().slice(0, 120) });
      }
    }
    for (const [name, bytes] of opts.sent ?? []) {
      const d = dl.get(name) ?? {};
      if (d.first === undefined && bytes > 0) {
        d.first = now;
        rows.push({ at: now, what: `http: ${name} first bytes` });
      }
      const size = opts.sizes?.[name];
      if (d.done === undefined && size !== undefined && bytes >= size) {
        d.done = now;
        rows.push({ at: now, what: `http: ${name} all ${(size / 2 ** 20).toFixed(1)} MiB sent` });
      }
      dl.set(name, d);
    }
  };
  const timer = setInterval(poll, 25);
  return {
    mark(name) {
      poll();
      rows.push({ at: Date.now(), what: name });
    },
    stop() {
      clearInterval(timer);
      poll();
      return rows.sort((a, b) => a.at - b.at).map((r) => ({ s: (r.at - opts.t0) / 1000, what: r.what, ...(r.line ? { line: r.line } : {}) }));
    },
  };
}

/** Guest-clock marks from the serial log: kernel printk times and the init script's `uptime=` values. */
export function guestClock(serialLog: string): Array<{ s: number; what: string }> {
  if (!existsSync(serialLog)) return [];
  const out: Array<{ s: number; what: string }> = [];
  for (const raw of stripAnsi(readFileSync(serialLog, 'utf8')).split('\n')) {
    const k = /^\[\s*(\d+\.\d+)\] (.*)$/.exec(raw);
    if (k && /Linux version|Unpacking initramfs|Freeing initrd|Run \/init|virtio_net|link becomes ready|Freeing unused kernel/.test(k[2] ?? '')) {
      out.push({ s: Number(k[1]), what: `kernel: ${(k[2] ?? '').slice(0, 90)}` });
    }
    const u = /(bmts-\S+ .*?)uptime=(\d+\.\d+)/.exec(raw);
    if (u) out.push({ s: Number(u[2]), what: (u[1] ?? '').trim().slice(0, 90) });
  }
  return out;
}

export function printTimeline(rows: Array<{ s: number; what: string; line?: string }>, guest: Array<{ s: number; what: string }>): void {
  console.log('timeline (host clock, s from QEMU start):');
  let prev = 0;
  for (const r of rows) {
    console.log(`  ${r.s.toFixed(2).padStart(6)}  (+${(r.s - prev).toFixed(2).padStart(5)})  ${r.what}${r.line ? `  | ${r.line}` : ''}`);
    prev = r.s;
  }
  if (guest.length) {
    console.log('guest clock (s since kernel start):');
    for (const g of guest) console.log(`  ${g.s.toFixed(2).padStart(6)}  ${g.what}`);
  }
}

/**
 * The agent's own start-up split (its 'agent starting' line, `startup_ms`: ms from the process start): V8 up, Node's
 * bootstrap done, our modules evaluated. Null when the line (or the field) is not in the serial log.
 */
export function agentStartup(serialLog: string): string | null {
  if (!existsSync(serialLog)) return null;
  const m = /"startup_ms":\{"v8":(\d+),"environment":(\d+),"bootstrap":(\d+),"now":(\d+)\}/.exec(stripAnsi(readFileSync(serialLog, 'utf8')));
  if (!m) return null;
  const [v8, env, boot, now] = m.slice(1).map(Number) as [number, number, number, number];
  return `agent process (its clock, ms from exec): V8 ${v8}, Node environment ${env}, bootstrap done ${boot}, modules evaluated ` +
    `and 'agent starting' ${now} (${now - boot} ms of agent modules)`;
}
