/**
 * The `dnsmasq` DHCP provider. Host entries and options are files in dhcp-hostsdir / dhcp-optsdir
 * (dnsmasq-config.ts), so they survive a conductor restart: a restarted dnsmasq reads them all again. After every
 * change the provider sends dnsmasq SIGHUP (it re-reads both directories); without a pid to signal, dnsmasq's
 * inotify watch picks up new and changed files, which is why a cleaned MAC gets an `ignore` entry rather than a
 * deleted file (a deleted file's entries stay until a reload), as in Ironic.
 * With `manage: true` the conductor runs dnsmasq itself (in a network namespace when one is configured) and
 * restarts it if it dies; otherwise it only writes dnsmasq.conf for a dnsmasq the site runs.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnLong } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import type { DriverNode } from '../drivers/types.js';
import {
  dnsmasqConf, dnsmasqPaths, hostEntry, hostFileName, ignoreEntry, leasedAddresses, optsFile, optsFileName,
  type DnsmasqSettings,
} from './dnsmasq-config.js';
import type { DhcpOption, DhcpProvider } from './types.js';

const log = getLogger('dhcp');

export interface DnsmasqOptions extends DnsmasqSettings {
  /** Run and supervise dnsmasq (true) or only write its files for an external one (false). */
  manage: boolean;
  /** Network namespace the managed dnsmasq runs in (`ip netns exec`). */
  namespace?: string | undefined;
  binary?: string;
  /** External dnsmasq: its pid file, to send SIGHUP after changes (else inotify does the job). */
  externalPidFile?: string | undefined;
}

const pxeMacs = (node: DriverNode): string[] => node.ports.filter((p) => p.pxe_enabled).map((p) => p.address);

async function atomicWrite(path: string, content: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, content);
  await rename(tmp, path);
}

export class DnsmasqDhcp implements DhcpProvider {
  readonly name = 'dnsmasq';
  private readonly paths: ReturnType<typeof dnsmasqPaths>;
  private child: ReturnType<typeof spawnLong> | undefined;
  private closing = false;
  private supervisor: Promise<void> | undefined;
  private logStream: WriteStream | undefined;
  /** Managed dnsmasq starts (1 = first start), for tests and diagnostics. */
  starts = 0;

  constructor(readonly opts: DnsmasqOptions) {
    this.paths = dnsmasqPaths(opts.dir);
  }

  /** Directories and dnsmasq.conf; the managed dnsmasq is started and watched. */
  async start(): Promise<void> {
    await mkdir(this.paths.hostsdir, { recursive: true });
    await mkdir(this.paths.optsdir, { recursive: true });
    const pidFile = this.opts.manage ? undefined : this.opts.pidFile;
    await atomicWrite(this.paths.conf, dnsmasqConf({ ...this.opts, pidFile }));
    if (!this.opts.manage) {
      log.info({ conf: this.paths.conf }, 'dnsmasq config written for an external dnsmasq (dhcp.manage_dnsmasq false)');
      return;
    }
    this.logStream = createWriteStream(this.paths.log, { flags: 'a' });
    this.spawn();
    this.supervisor = this.supervise();
  }

  private spawn(): void {
    const dnsmasq = this.opts.binary ?? 'dnsmasq';
    const args = ['--keep-in-foreground', '--log-facility=-', `--conf-file=${this.paths.conf}`];
    const [file, argv] = this.opts.namespace ? ['ip', ['netns', 'exec', this.opts.namespace, dnsmasq, ...args]] : [dnsmasq, args];
    this.child = spawnLong(file, argv);
    this.starts++;
    if (this.logStream) {
      this.child.stdout?.pipe(this.logStream, { end: false });
      this.child.stderr?.pipe(this.logStream, { end: false });
    }
    log.info({ pid: this.child.pid, namespace: this.opts.namespace, conf: this.paths.conf }, 'dnsmasq started');
  }

  /** Restarts dnsmasq when it exits on its own, backing off 1 s doubling to 30 s. */
  private async supervise(): Promise<void> {
    let delay = 1000;
    while (!this.closing && this.child) {
      const started = Date.now();
      const r = await this.child.then((x) => x, (e: unknown) => e as { exitCode?: number; signal?: string });
      if (this.closing) return;
      log.warn({ exitCode: r.exitCode, signal: r.signal, log: this.paths.log }, 'dnsmasq exited; restarting');
      if (Date.now() - started > 60_000) delay = 1000;
      await sleep(delay);
      delay = Math.min(delay * 2, 30_000);
      if (!this.closing) this.spawn();
    }
  }

  /** Pid of the running managed dnsmasq. */
  pid(): number | undefined {
    return this.child?.pid;
  }

  private async reload(): Promise<void> {
    let pid: number | undefined = this.opts.manage ? this.child?.pid : undefined;
    if (!this.opts.manage && this.opts.externalPidFile) {
      const v = Number((await readFile(this.opts.externalPidFile, 'utf8').catch(() => '')).trim());
      pid = Number.isInteger(v) && v > 1 ? v : undefined;
    }
    if (!pid) return; // external dnsmasq without a pid file: its inotify watch reads the changed files
    try { process.kill(pid, 'SIGHUP'); } catch (e) { log.warn({ pid, err: String(e) }, 'could not signal dnsmasq to reload'); }
  }

  supportsIpxeTag(): boolean { return true; }

  async updateDhcpOpts(node: DriverNode, options: readonly DhcpOption[]): Promise<void> {
    // A fresh tag per transaction: options of an earlier one never apply, even before dnsmasq reloads.
    const tag = `bmts-${randomUUID()}`;
    await atomicWrite(join(this.paths.optsdir, optsFileName(node.uuid)), optsFile(tag, options));
    for (const mac of pxeMacs(node)) await atomicWrite(join(this.paths.hostsdir, hostFileName(mac)), hostEntry(mac, tag));
    await this.reload();
    log.info({ node: node.uuid, macs: pxeMacs(node), tag }, 'DHCP boot options written');
  }

  async cleanDhcpOpts(node: DriverNode): Promise<void> {
    for (const mac of pxeMacs(node)) await atomicWrite(join(this.paths.hostsdir, hostFileName(mac)), ignoreEntry(mac));
    await rm(join(this.paths.optsdir, optsFileName(node.uuid)), { force: true });
    await this.reload();
    log.info({ node: node.uuid, macs: pxeMacs(node) }, 'DHCP boot options removed');
  }

  async getIpAddresses(node: DriverNode): Promise<string[]> {
    const leases = await readFile(this.paths.leases, 'utf8').catch(() => '');
    return leasedAddresses(leases, pxeMacs(node));
  }

  async close(): Promise<void> {
    this.closing = true;
    const c = this.child;
    if (c?.pid && c.exitCode === null) {
      try { process.kill(c.pid, 'SIGTERM'); } catch { /* gone */ }
      const done = c.then(() => undefined, () => undefined);
      if (await Promise.race([done.then(() => true), sleep(3000).then(() => false)]) === false) {
        try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
        await Promise.race([done, sleep(2000)]);
      }
    }
    await this.supervisor;
    this.logStream?.end();
  }
}
