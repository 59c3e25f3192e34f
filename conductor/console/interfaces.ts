/**
 * Console interfaces over IPMI Serial-over-LAN: `ipmitool-socat` (console_info {type: "socat", url:
 * "tcp://HOST:PORT"}, as Ironic) and `ipmitool-web` (console_info {type: "web", url: "http://HOST:PORT/?token=..."},
 * a browser terminal; the stand-in for Ironic's shellinabox one). Ports come from [console] port_range; the port
 * a node got is kept in driver_internal_info.allocated_console_port and asked for again when the console is
 * restored after a conductor restart. One ConsoleSessions per conductor holds the running bridges.
 */
import { createServer } from 'node:net';
import { errorMessage } from '../../common/errors.js';
import type { ConductorConfig } from '../config.js';
import type { ConductorContext } from '../context.js';
import { parseIpmiInfo, type IpmiInfo } from '../drivers/ipmitool.js';
import { IPMI_PROPERTIES } from '../drivers/ipmitool.js';
import type { DriverInterface, DriverNode } from '../drivers/types.js';
import { Conflict, DriverOperationError, InvalidParameterValue } from '../errors.js';
import type { NodeRecord } from '../store/types.js';
import type { NodeTask } from '../drivers/index.js';
import { startSolBridge, type SolBridge } from './sol-bridge.js';
import { startWebConsole, type WebConsole } from './web-console.js';

export interface ConsoleInfo {
  type: string;
  url: string;
}

export interface ConsoleInterface extends DriverInterface {
  startConsole(task: NodeTask): Promise<void>;
  stopConsole(task: NodeTask): Promise<void>;
  getConsole(task: NodeTask): Promise<ConsoleInfo>;
}

export function isConsoleInterface(i: DriverInterface | undefined): i is ConsoleInterface {
  return !!i && typeof (i as Partial<ConsoleInterface>).startConsole === 'function' &&
    typeof (i as Partial<ConsoleInterface>).getConsole === 'function';
}

const PORT_KEY = 'allocated_console_port';

interface Session {
  bridge: SolBridge;
  web?: WebConsole;
  ports: number[];
}

function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

/** The running consoles of one conductor. */
export class ConsoleSessions {
  private readonly sessions = new Map<string, Session>();
  private readonly low: number;
  private readonly high: number;

  constructor(readonly cfg: ConductorConfig['console']) {
    const [lo, hi] = cfg.port_range.split(':').map(Number) as [number, number];
    if (!(lo >= 1 && hi <= 65535 && lo <= hi)) throw new InvalidParameterValue(`Invalid console port_range ${cfg.port_range}`);
    this.low = lo;
    this.high = hi;
  }

  get publicHost(): string {
    return this.cfg.public_host ?? this.cfg.host;
  }

  get(uuid: string): Session | undefined {
    return this.sessions.get(uuid);
  }

  private inUse(): Set<number> {
    return new Set([...this.sessions.values()].flatMap((s) => s.ports));
  }

  /** A free port of the range, `preferred` first (a restored console keeps its URL when it can). */
  async allocate(preferred?: unknown, also: number[] = []): Promise<number> {
    const used = this.inUse();
    for (const p of also) used.add(p);
    if (typeof preferred === 'number' && preferred >= this.low && preferred <= this.high && !used.has(preferred) &&
      await canBind(this.cfg.host, preferred)) return preferred;
    for (let p = this.low; p <= this.high; p++) {
      if (!used.has(p) && await canBind(this.cfg.host, p)) return p;
    }
    throw new DriverOperationError(`No free port in the console port range ${this.cfg.port_range}`);
  }

  set(uuid: string, s: Session): void {
    this.sessions.set(uuid, s);
  }

  async stop(uuid: string): Promise<boolean> {
    const s = this.sessions.get(uuid);
    if (!s) return false;
    this.sessions.delete(uuid);
    await s.web?.close();
    await s.bridge.close();
    return true;
  }

  /** The nodes whose consoles run here. */
  running(): string[] {
    return [...this.sessions.keys()];
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.sessions.keys()].map((u) => this.stop(u)));
  }
}

abstract class IpmitoolConsoleBase implements ConsoleInterface {
  abstract readonly name: string;
  readonly properties = IPMI_PROPERTIES;
  constructor(protected readonly sessions: ConsoleSessions, protected readonly ipmitool = 'ipmitool') {}

  validate(node: DriverNode): void {
    parseIpmiInfo(node);
  }

  protected abstract open(task: NodeTask, info: IpmiInfo, port: number): Promise<Session>;

  async startConsole(task: NodeTask): Promise<void> {
    const info = parseIpmiInfo(task.driverNode());
    await this.sessions.stop(task.node.uuid);
    const port = await this.sessions.allocate(task.node.driver_internal_info[PORT_KEY]);
    let session: Session;
    try {
      session = await this.open(task, info, port);
    } catch (e) {
      throw new DriverOperationError(`Failed to start the console of node ${task.node.uuid}: ${errorMessage(e)}`, e);
    }
    this.sessions.set(task.node.uuid, session);
    await task.updateInternalInfo({ [PORT_KEY]: port });
  }

  async stopConsole(task: NodeTask): Promise<void> {
    await this.sessions.stop(task.node.uuid);
    if (task.exclusive) await task.updateInternalInfo({ [PORT_KEY]: undefined });
  }

  abstract getConsole(task: NodeTask): Promise<ConsoleInfo>;

  protected running(task: NodeTask): Session {
    const s = this.sessions.get(task.node.uuid);
    // Between console_enabled being set and the bridge being up (or down), or just after a takeover: a retryable
    // 409, not a driver failure.
    if (!s) throw new Conflict(`The console of node ${task.node.uuid} is not running on this conductor yet (starting, stopping or moving); retry.`);
    return s;
  }
}

export class IpmitoolSocatConsole extends IpmitoolConsoleBase {
  readonly name = 'ipmitool-socat';

  protected async open(_task: NodeTask, info: IpmiInfo, port: number): Promise<Session> {
    return { bridge: await startSolBridge(info, this.sessions.cfg.host, port, this.ipmitool), ports: [port] };
  }

  async getConsole(task: NodeTask): Promise<ConsoleInfo> {
    const s = this.running(task);
    return { type: 'socat', url: `tcp://${this.sessions.publicHost}:${s.bridge.port}` };
  }
}

export class IpmitoolWebConsole extends IpmitoolConsoleBase {
  readonly name = 'ipmitool-web';

  /** The web page gets the allocated port; the SoL bridge behind it a second one, on loopback only. */
  protected async open(task: NodeTask, info: IpmiInfo, port: number): Promise<Session> {
    const inner = await this.sessions.allocate(undefined, [port]);
    const bridge = await startSolBridge(info, '127.0.0.1', inner, this.ipmitool);
    try {
      const web = await startWebConsole({ host: this.sessions.cfg.host, port, nodeLabel: task.node.name ?? task.node.uuid,
        bridge: { host: '127.0.0.1', port: inner } });
      return { bridge, web, ports: [port, inner] };
    } catch (e) {
      await bridge.close();
      throw e;
    }
  }

  async getConsole(task: NodeTask): Promise<ConsoleInfo> {
    const s = this.running(task);
    const web = s.web as WebConsole;
    return { type: 'web', url: `http://${this.sessions.publicHost}:${web.port}/?token=${web.issueToken(this.sessions.cfg.token_ttl)}` };
  }
}

/** The nodes with console_enabled, a page at a time (a fleet's node list is never materialised at once). */
async function* consoleNodes(ctx: ConductorContext): AsyncGenerator<NodeRecord> {
  let marker: string | undefined;
  for (;;) {
    const page = await ctx.store.listNodes({ limit: 500, ...(marker ? { marker } : {}) });
    for (const n of page) if (n.console_enabled) yield n;
    if (page.length < 500) return;
    marker = page[page.length - 1]?.uuid;
  }
}

export interface ConsoleSync { started: string[]; stopped: string[] }

/**
 * Consoles run where their nodes are owned (Ironic starts them on takeover): at start-up and whenever the ring
 * moves, this conductor starts the enabled consoles of the nodes it owns and stops the ones it runs for nodes
 * it no longer owns (console_enabled stays set: the new owner starts it). A console that cannot start is
 * disabled with the reason in last_error.
 */
export async function syncConsoles(ctx: ConductorContext, sessions: ConsoleSessions): Promise<ConsoleSync> {
  const out: ConsoleSync = { started: [], stopped: [] };
  const owns = (n: NodeRecord): boolean => ctx.cluster?.owns(n) ?? true;
  for (const uuid of sessions.running()) {
    const n = await ctx.store.getNodeByUuid(uuid);
    if (n && owns(n)) continue;
    await sessions.stop(uuid);
    out.stopped.push(uuid);
    ctx.log.info({ node: uuid }, 'console handed over to the node\'s new conductor');
  }
  for await (const n of consoleNodes(ctx)) {
    if (!owns(n) || sessions.get(n.uuid)) continue;
    await ctx.tasks.withNodeTask(n, { exclusive: true, retry: false, purpose: 'restoring console' }, async (task) => {
      const con = task.driver.find('console');
      if (!isConsoleInterface(con) || !task.node.console_enabled) return;
      try {
        await con.startConsole(task);
        out.started.push(task.node.uuid);
        ctx.log.info({ node: task.node.uuid }, 'console restored');
      } catch (e) {
        await task.save({ console_enabled: false, last_error: `Could not restore the console: ${errorMessage(e)}` });
      }
    }).catch((e: unknown) => ctx.log.warn({ node: n.uuid, err: errorMessage(e) }, 'could not restore the console'));
  }
  return out;
}
