/**
 * One RMCP+ session with one BMC over UDP (IPMI 2.0 §13.14–13.32): Get Channel Authentication Capabilities,
 * Open Session, RAKP 1–4, Set Session Privilege Level, then authenticated and encrypted IPMI requests, and
 * Close Session. Calls are queued and run one at a time (BMCs handle one outstanding request per session, and
 * the queue lets any number of callers share the session); each is retried with a doubling per-attempt timeout
 * inside one overall budget. Idle sessions are kept alive with Get Device ID and closed after a longer idle time.
 * Datagrams that are malformed, from another address, fail their integrity check or replay an old sequence
 * number are dropped, never thrown.
 */
import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { getLogger } from '../../common/logger.js';
import { type CipherSuite, cipherSuite, MAX_USERNAME_BYTES, userKey } from './crypto.js';
import { IpmiError, type IpmiErrorKind } from './errors.js';
import { type HandshakeIo, rmcpPlusHandshake } from './handshake.js';
import {
  COMPLETION_CODES, type DecodedPacket, decodeIpmiResponse, decodePacket, encodeIpmiRequest, encodeV2Packet,
  type IpmiResponse, type PacketKeys, PayloadType,
} from './packet.js';

const log = getLogger('ipmi-native');

/** Privilege levels (table 6-2) by Ironic's ipmi_priv_level names. */
export const PRIV_LEVELS = { CALLBACK: 1, USER: 2, OPERATOR: 3, ADMINISTRATOR: 4 } as const;
export type PrivLevelName = keyof typeof PRIV_LEVELS;

export interface IpmiTarget {
  host: string;
  port: number;
  username: string;
  password: string;
  cipherSuite: number;
  privLevel: PrivLevelName;
  /** BMC key Kg for two-key logins; absent = Kuid (the password) generates the SIK. */
  kg?: Buffer;
}

export interface IpmiSessionOptions {
  /** First per-attempt timeout; each retry doubles it up to maxAttemptTimeoutMs. */
  attemptTimeoutMs: number;
  maxAttemptTimeoutMs: number;
  /** Overall budget of one call, (re-)establishing the session and every retry included. */
  callTimeoutMs: number;
  /** Send Get Device ID after this long without traffic, so the BMC does not time the session out (0 = never). */
  keepaliveMs: number;
  /** Close the BMC session after this long without a caller, freeing the BMC's session slot (0 = never). */
  idleCloseMs: number;
}

export const DEFAULT_SESSION_OPTIONS: IpmiSessionOptions = {
  attemptTimeoutMs: 1000, maxAttemptTimeoutMs: 4000, callTimeoutMs: 20_000, keepaliveMs: 25_000, idleCloseMs: 600_000,
};

export interface IpmiReply {
  completionCode: number;
  data: Buffer;
}

type Handler = (p: DecodedPacket) => boolean;

interface Stats {
  sessionsOpened: number;
  packetsSent: number;
  dropped: number;
}

const NETFN_APP = 0x06;

function describeCc(cc: number): string {
  return `${COMPLETION_CODES[cc] ?? 'completion code'} (0x${cc.toString(16).padStart(2, '0')})`;
}

export class IpmiSession {
  readonly suite: CipherSuite;
  readonly stats: Stats = { sessionsOpened: 0, packetsSent: 0, dropped: 0 };
  private readonly opts: IpmiSessionOptions;
  private readonly name: string;
  private socket: Socket | undefined;
  private address: string | undefined;
  private handler: Handler | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  // Session state: set by establish(), cleared by drop().
  private keys: PacketKeys | undefined;
  private consoleSid = 0;
  private bmcSid = 0;
  private outSeq = 0;
  private inSeqHigh = 0;
  private readonly inSeqRecent = new Set<number>();
  private rqSeq = 0;
  private tag = 0;
  private lastTraffic = 0;
  private lastCall = 0;
  private busy = false;

  constructor(readonly target: IpmiTarget, opts: Partial<IpmiSessionOptions> = {}) {
    const suite = cipherSuite(target.cipherSuite);
    if (!suite) throw new IpmiError(`cipher suite ${target.cipherSuite} is not supported by ipmi-native (use 3 or 17)`, 'cipher');
    if (Buffer.byteLength(target.username, 'utf8') > MAX_USERNAME_BYTES) {
      throw new IpmiError(`IPMI user names are at most ${MAX_USERNAME_BYTES} bytes`, 'auth');
    }
    try {
      userKey(target.password);
    } catch (e) {
      throw new IpmiError((e as Error).message, 'auth');
    }
    this.suite = suite;
    this.opts = { ...DEFAULT_SESSION_OPTIONS, ...opts };
    this.name = `${target.host}:${target.port}`;
  }

  /** Whether an RMCP+ session is currently established with the BMC. */
  get established(): boolean {
    return this.keys !== undefined;
  }

  /** Send one IPMI request and return the BMC's completion code and data (a non-zero code is not thrown here). */
  call(netFn: number, cmd: number, data: Buffer | readonly number[] = []): Promise<IpmiReply> {
    const body = Buffer.isBuffer(data) ? data : Buffer.from(data);
    return this.enqueue(async () => {
      this.lastCall = Date.now();
      const deadline = Date.now() + this.opts.callTimeoutMs;
      const reused = this.established;
      if (!reused) await this.establish(deadline);
      try {
        return await this.exchange(netFn, cmd, body, deadline);
      } catch (e) {
        // A session the BMC forgot (rebooted, timed out) answers nothing: open a new one once, within the budget.
        if (!reused || !(e instanceof IpmiError) || e.kind !== 'unreachable' || Date.now() >= deadline) throw e;
        log.info({ bmc: this.name }, 'IPMI session stopped answering; opening a new one');
        this.drop();
        await this.establish(deadline);
        return await this.exchange(netFn, cmd, body, deadline);
      }
    });
  }

  /** Close the BMC session (Close Session, best effort) and the socket; later calls fail with kind 'closed'. */
  async close(): Promise<void> {
    if (this.closed) return;
    const done = this.enqueue(() => this.logout(), true);
    this.closed = true;
    await done.catch(() => undefined);
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.socket?.close();
    this.socket = undefined;
  }

  private enqueue<T>(fn: () => Promise<T>, evenIfClosed = false): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.closed && !evenIfClosed) throw new IpmiError(`IPMI client for BMC ${this.name} is closed`, 'closed');
      this.busy = true;
      try {
        return await fn();
      } finally {
        this.busy = false;
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async ensureSocket(): Promise<Socket> {
    if (this.socket) return this.socket;
    const { host } = this.target;
    const address = isIP(host) ? host : (await lookup(host)).address;
    const s = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
    s.on('error', (e) => log.warn({ bmc: this.name, err: e.message }, 'IPMI socket error'));
    s.on('message', (msg, rinfo) => this.onMessage(msg, rinfo.address, rinfo.port));
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(0, () => {
        s.off('error', reject);
        resolve();
      });
    });
    s.unref(); // a forgotten client must not keep the process alive; waiting calls hold their own timers
    this.socket = s;
    this.address = address;
    if (!this.timer && (this.opts.keepaliveMs > 0 || this.opts.idleCloseMs > 0)) {
      const every = Math.max(250, Math.min(this.opts.keepaliveMs || Infinity, this.opts.idleCloseMs || Infinity) / 4);
      this.timer = setInterval(() => this.tick(), every);
      this.timer.unref();
    }
    return s;
  }

  private tick(): void {
    if (!this.established || this.busy || this.closed) return;
    const now = Date.now();
    if (this.opts.idleCloseMs > 0 && now - this.lastCall >= this.opts.idleCloseMs) {
      this.enqueue(() => this.logout()).catch(() => undefined);
    } else if (this.opts.keepaliveMs > 0 && now - this.lastTraffic >= this.opts.keepaliveMs) {
      this.enqueue(async () => {
        if (!this.established) return;
        const deadline = Date.now() + Math.min(this.opts.callTimeoutMs, this.opts.keepaliveMs);
        await this.exchange(NETFN_APP, 0x01, Buffer.alloc(0), deadline);
      }).catch((e: unknown) => {
        log.info({ bmc: this.name, err: (e as Error).message }, 'IPMI keep-alive failed; the next call opens a new session');
        this.drop();
      });
    }
  }

  private onMessage(msg: Buffer, address: string, port: number): void {
    if (address !== this.address || port !== this.target.port) {
      this.stats.dropped++;
      return;
    }
    let p: DecodedPacket;
    try {
      p = decodePacket(msg, this.keys);
    } catch {
      this.stats.dropped++;
      return;
    }
    if (this.keys && p.version === '2.0' && p.payloadType === PayloadType.IPMI) {
      if (p.sessionId !== this.consoleSid || !this.freshInboundSeq(p.sessionSeq)) {
        this.stats.dropped++;
        return;
      }
    }
    this.lastTraffic = Date.now();
    if (!this.handler?.(p)) this.stats.dropped++;
  }

  /** Inbound session sequence numbers: each accepted once, and at most 32 behind the highest seen (§6.12.13). */
  private freshInboundSeq(seq: number): boolean {
    if (seq === 0 || this.inSeqRecent.has(seq)) return false;
    if (seq + 32 < this.inSeqHigh) return false;
    this.inSeqRecent.add(seq);
    if (seq > this.inSeqHigh) this.inSeqHigh = seq;
    if (this.inSeqRecent.size > 64) for (const s of this.inSeqRecent) if (s + 32 < this.inSeqHigh) this.inSeqRecent.delete(s);
    return true;
  }

  private async send(packet: Buffer): Promise<void> {
    const s = await this.ensureSocket();
    this.stats.packetsSent++;
    await new Promise<void>((resolve) => {
      // A send error (e.g. ICMP unreachable on loopback) is only a lost datagram: the retry timer handles it.
      s.send(packet, this.target.port, this.address, () => resolve());
    });
  }

  /**
   * Send `build()` (rebuilt per attempt so each carries a new session sequence number) until `accept` takes an
   * answer; per-attempt timeouts double up to the maximum, bounded by `deadline`. Resolves undefined on timeout.
   */
  private async transact<T>(build: () => Buffer, accept: (p: DecodedPacket) => T | undefined, deadline: number,
    attempts = Infinity): Promise<{ value: T | undefined; tries: number }> {
    let timeout = this.opts.attemptTimeoutMs;
    let tries = 0;
    while (tries < attempts && Date.now() < deadline) {
      tries++;
      const wait = Math.max(1, Math.min(timeout, deadline - Date.now()));
      const got = await new Promise<T | undefined>((resolve) => {
        const t = setTimeout(() => {
          this.handler = undefined;
          resolve(undefined);
        }, wait);
        this.handler = (p) => {
          const v = accept(p);
          if (v === undefined) return false;
          clearTimeout(t);
          this.handler = undefined;
          resolve(v);
          return true;
        };
        this.send(build()).catch(() => undefined);
      });
      if (got !== undefined) return { value: got, tries };
      timeout = Math.min(timeout * 2, this.opts.maxAttemptTimeoutMs);
    }
    return { value: undefined, tries };
  }

  private nextRqSeq(): number {
    this.rqSeq = (this.rqSeq % 63) + 1;
    return this.rqSeq;
  }

  private nextTag(): number {
    this.tag = (this.tag + 1) & 0xff;
    return this.tag;
  }

  private fail(kind: IpmiErrorKind, what: string): IpmiError {
    return new IpmiError(`IPMI ${what} (BMC ${this.name}, user ${JSON.stringify(this.target.username)}, cipher suite ${this.suite.id})`, kind);
  }

  /** Get Channel Authentication Capabilities, Open Session, RAKP 1–4 and Set Session Privilege Level. */
  private async establish(deadline: number): Promise<void> {
    const priv = PRIV_LEVELS[this.target.privLevel];
    try {
      await this.ensureSocket();
    } catch (e) {
      throw this.fail('unreachable', `cannot reach the BMC address: ${(e as Error).message}; check ipmi_address`);
    }
    const io: HandshakeIo = {
      transact: (build, accept, dl, attempts) => this.transact(build, accept, dl, attempts),
      nextRqSeq: () => this.nextRqSeq(),
      nextTag: () => this.nextTag(),
      fail: (kind, what) => this.fail(kind, what),
    };
    const h = await rmcpPlusHandshake(io, this.suite, { username: this.target.username, password: this.target.password, priv,
      ...(this.target.kg ? { kg: this.target.kg } : {}) }, deadline, this.opts.callTimeoutMs);
    this.keys = h.keys;
    this.consoleSid = h.consoleSid;
    this.bmcSid = h.bmcSid;
    this.outSeq = 0;
    this.inSeqHigh = 0;
    this.inSeqRecent.clear();
    // 5. Sessions start at User level (§13.14): raise to the requested one.
    const r = await this.exchange(NETFN_APP, 0x3b, Buffer.from([priv]), deadline).catch((e: unknown) => {
      this.drop();
      throw e;
    });
    if (r.completionCode !== 0) {
      this.drop();
      throw this.fail('auth', `Set Session Privilege Level ${this.target.privLevel} refused: ${describeCc(r.completionCode)}; check ipmi_priv_level`);
    }
    this.stats.sessionsOpened++;
    log.debug({ bmc: this.name, suite: this.suite.id }, 'IPMI session established');
  }

  /** One IPMI request inside the session; a busy BMC (C0h) is retried until the deadline. */
  private async exchange(netFn: number, cmd: number, data: Buffer, deadline: number): Promise<IpmiReply> {
    const keys = this.keys;
    if (!keys) throw this.fail('unreachable', 'no session');
    let busyWait = 100;
    for (;;) {
      const rqSeq = this.nextRqSeq();
      const msg = encodeIpmiRequest({ netFn, cmd, rqSeq, data });
      const r = await this.transact(() => {
        this.outSeq = this.outSeq >= 0xffffffff ? 1 : this.outSeq + 1;
        return encodeV2Packet({ payloadType: PayloadType.IPMI, sessionId: this.bmcSid, sessionSeq: this.outSeq, payload: msg }, keys);
      }, (p) => {
        if (p.version !== '2.0' || p.payloadType !== PayloadType.IPMI) return undefined;
        const resp = tryResponse(p.payload);
        return resp && resp.rqSeq === rqSeq && resp.cmd === cmd && resp.netFn === netFn + 1 ? resp : undefined;
      }, deadline);
      if (!r.value) {
        throw this.fail('unreachable', `no response to netFn 0x${netFn.toString(16)} cmd 0x${cmd.toString(16)} after ${r.tries} attempt(s)`);
      }
      if (r.value.completionCode === 0xc0 && Date.now() + busyWait < deadline) {
        await new Promise((res) => setTimeout(res, busyWait));
        busyWait = Math.min(busyWait * 2, 2000);
        continue;
      }
      return { completionCode: r.value.completionCode, data: r.value.data };
    }
  }

  /** Close Session (one short attempt; the BMC times the session out anyway if it is lost), then forget it. */
  private async logout(): Promise<void> {
    if (!this.keys) return;
    const sid = Buffer.alloc(4);
    sid.writeUInt32LE(this.bmcSid >>> 0, 0);
    const deadline = Date.now() + Math.min(this.opts.attemptTimeoutMs, 1000);
    await this.exchange(NETFN_APP, 0x3c, sid, deadline).catch(() => undefined);
    this.drop();
  }

  private drop(): void {
    this.keys = undefined;
    this.consoleSid = 0;
    this.bmcSid = 0;
  }
}

function tryResponse(payload: Buffer): IpmiResponse | undefined {
  return tryParse(() => decodeIpmiResponse(payload));
}

function tryParse<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

export function describeCompletionCode(cc: number): string {
  return describeCc(cc);
}
