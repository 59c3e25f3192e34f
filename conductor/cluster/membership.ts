/**
 * This conductor among the others on the same database: it registers in `conductors` (refusing a name a live
 * conductor still answers to), heartbeats every conductor.heartbeat_interval, re-reads the table on each beat and
 * rebuilds one hash ring per (conductor group, hardware type) from the conductors alive at that moment (online and
 * heartbeating within conductor.heartbeat_timeout), as Ironic's HashRingManager does. Each beat reports the ring
 * change and the dead conductors to `onBeat` (takeover.ts).
 */
import { ConfigError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { ClusterView, RingNode } from '../context.js';
import { IronicError } from '../errors.js';
import type { ConductorRecord, Store } from '../store/types.js';
import { HashRing } from './hash-ring.js';

export interface ClusterSettings {
  host: string;
  group: string;
  /** Enabled hardware type names. */
  drivers: string[];
  hardwareInterfaces: Record<string, string[]>;
  rpcUrl: string;
  heartbeatIntervalS: number;
  heartbeatTimeoutS: number;
  partitionExponent: number;
}

export interface BeatReport {
  /** The live set changed since the previous beat (rings rebuilt). */
  ringChanged: boolean;
  /** Conductors still marked online whose heartbeat is older than heartbeat_timeout. */
  dead: string[];
}

export type RpcCaller = (url: string, method: string, params: readonly unknown[]) => Promise<unknown>;

function ringKey(group: string, driver: string): string {
  // Ironic compares conductor groups case-insensitively.
  return `${group.toLowerCase()}\n${driver}`;
}

export class Cluster implements ClusterView {
  private live = new Map<string, ConductorRecord>();
  private rings = new Map<string, HashRing>();
  private previousRings = new Map<string, HashRing>();
  private signature = '';
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private stopped = false;
  /** Bumped whenever the rings are rebuilt. */
  version = 0;
  onBeat: ((report: BeatReport) => Promise<void>) | undefined;

  constructor(private readonly store: Store, readonly settings: ClusterSettings, private readonly log: Logger,
    private readonly rpc: RpcCaller) {}

  get host(): string { return this.settings.host; }

  isAlive(rec: ConductorRecord, now = Date.now()): boolean {
    if (rec.hostname === this.settings.host && !this.stopped) return true;
    if (!rec.online || !rec.updated_at) return false;
    return now - Date.parse(rec.updated_at) <= this.settings.heartbeatTimeoutS * 1000;
  }

  /**
   * Registers this conductor. A row under the same name that is alive and whose RPC answers belongs to another
   * running conductor: refused. One that is alive but silent is this name's previous life (killed): taken over.
   */
  async register(): Promise<void> {
    const { host } = this.settings;
    const mine = (await this.store.listConductors()).find((r) => r.hostname === host);
    if (mine?.online && mine.updated_at &&
      Date.now() - Date.parse(mine.updated_at) <= this.settings.heartbeatTimeoutS * 1000) {
      const url = mine.rpc_url;
      if (url && url !== this.settings.rpcUrl && await this.rpc(url, 'ping', []).then(() => true, () => false)) {
        throw new ConfigError(`a conductor named "${host}" is already running (its RPC at ${url} answers); ` +
          'give this one another conductor.hostname');
      }
      this.log.warn({ host }, 'a previous conductor with this hostname did not shut down cleanly; ' +
        'taking over its registration');
    }
    await this.heartbeat();
    await this.refresh();
  }

  private async heartbeat(): Promise<void> {
    const s = this.settings;
    await this.store.upsertConductor({ hostname: s.host, conductor_group: s.group, drivers: [...s.drivers],
      online: true, hardware_interfaces: s.hardwareInterfaces, rpc_url: s.rpcUrl });
  }

  /** Re-reads the conductors; rebuilds the rings when the live set changed. */
  async refresh(): Promise<BeatReport> {
    const rows = await this.store.listConductors();
    const now = Date.now();
    const live = new Map<string, ConductorRecord>();
    const dead: string[] = [];
    for (const r of rows) {
      if (this.isAlive(r, now)) live.set(r.hostname, r);
      else if (r.online) dead.push(r.hostname);
    }
    const signature = [...live.values()].map((r) => `${r.hostname}|${r.conductor_group.toLowerCase()}|` +
      `${[...r.drivers].sort().join(',')}`).sort().join('\n');
    this.live = live;
    if (signature === this.signature) return { ringChanged: false, dead };
    const hostsByKey = new Map<string, string[]>();
    for (const r of live.values()) {
      for (const d of r.drivers) {
        const k = ringKey(r.conductor_group, d);
        const list = hostsByKey.get(k) ?? [];
        list.push(r.hostname);
        hostsByKey.set(k, list);
      }
    }
    this.previousRings = this.rings;
    this.rings = new Map([...hostsByKey].map(([k, hosts]) => [k, new HashRing(hosts, this.settings.partitionExponent)]));
    this.signature = signature;
    this.version++;
    this.log.info({ live: [...live.keys()].sort(), version: this.version }, 'conductor hash ring rebuilt');
    return { ringChanged: true, dead };
  }

  ownerOf(node: RingNode): string | null {
    return this.rings.get(ringKey(node.conductor_group, node.driver))?.primary(node.uuid) ?? null;
  }

  /** The owner under the rings before the last rebuild (null before the second build). */
  previousOwnerOf(node: RingNode): string | null {
    return this.previousRings.get(ringKey(node.conductor_group, node.driver))?.primary(node.uuid) ?? null;
  }

  owns(node: RingNode): boolean {
    const owner = this.ownerOf(node);
    if (owner !== null) return owner === this.settings.host;
    // Nodes no live conductor can drive keep their periodic care (timeouts) on exactly one conductor.
    return this.liveHosts()[0] === this.settings.host;
  }

  get shared(): boolean {
    return this.live.size > 1;
  }

  hostsFor(driver: string): string[] {
    const hosts = [...this.live.values()].filter((r) => r.drivers.includes(driver)).map((r) => r.hostname);
    if (!this.stopped && this.settings.drivers.includes(driver) && !hosts.includes(this.settings.host)) {
      hosts.push(this.settings.host);
    }
    return hosts.sort();
  }

  liveScope(): { groups: string[]; drivers: string[] } {
    const rows = [...this.live.values()];
    return { groups: [...new Set(rows.map((r) => r.conductor_group.toLowerCase()))].sort(),
      drivers: [...new Set(rows.flatMap((r) => r.drivers))].sort() };
  }

  liveHosts(): readonly string[] {
    const hosts = new Set(this.live.keys());
    if (!this.stopped) hosts.add(this.settings.host);
    return [...hosts].sort();
  }

  async call(host: string, method: string, params: readonly unknown[]): Promise<unknown> {
    const url = this.live.get(host)?.rpc_url;
    if (!url) throw new IronicError(`Conductor ${host} has no RPC URL registered; it cannot take requests yet.`, 503,
      'ConductorUnreachable');
    return this.rpc(url, method, params);
  }

  /** Heartbeats (and reports each beat) until stop(). */
  start(): void {
    const t = setInterval(() => {
      if (this.beating || this.stopped) return;
      this.beating = this.beat().finally(() => { this.beating = undefined; });
    }, this.settings.heartbeatIntervalS * 1000);
    t.unref();
    this.timer = t;
  }

  private async beat(): Promise<void> {
    try {
      await this.heartbeat();
    } catch (e) {
      this.log.error({ err: errorMessage(e) }, 'conductor heartbeat failed');
    }
    try {
      const report = await this.refresh();
      if (!this.stopped) await this.onBeat?.(report);
    } catch (e) {
      this.log.error({ err: errorMessage(e) }, 'conductor ring refresh or takeover failed');
    }
  }

  /**
   * Stops heartbeating (main.ts then marks this conductor offline, so the others take its nodes at their next
   * beat instead of waiting for heartbeat_timeout).
   */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.stopped = true;
    await this.beating;
  }
}
