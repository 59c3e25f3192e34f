/**
 * Sessions by BMC: one IpmiSession per BMC address, port and user, shared by every caller (power sync, API
 * calls, deploys) so a fleet costs one RAKP handshake per BMC instead of one per command. Changed credentials,
 * cipher suite or privilege level replace the session. Owned by whoever builds the drivers (one per conductor)
 * and closed with it: every BMC session is then ended with Close Session.
 */
import { IpmiError } from './errors.js';
import { type IpmiSessionOptions, IpmiSession, type IpmiTarget } from './session.js';

export class IpmiSessionPool {
  private readonly sessions = new Map<string, IpmiSession>();
  /** Cipher suite that worked per BMC when the node leaves it unset (17 is tried first, then 3). */
  private readonly probedSuite = new Map<string, 3 | 17>();
  private closed = false;

  constructor(private readonly opts: Partial<IpmiSessionOptions> = {}) {}

  get size(): number {
    return this.sessions.size;
  }

  session(target: IpmiTarget): IpmiSession {
    if (this.closed) throw new IpmiError('the IPMI session pool is closed', 'closed');
    const key = `${target.host}|${target.port}|${target.username}`;
    const have = this.sessions.get(key);
    if (have && !this.differs(have.target, target)) return have;
    if (have) void have.close();
    const s = new IpmiSession({ ...target }, this.opts);
    this.sessions.set(key, s);
    return s;
  }

  /**
   * Run `fn` on the BMC's session; with `cipherSuite` undefined, use the suite that worked before, else try 17
   * and fall back to 3 when the BMC refuses it (as ipmitool's probe does, without its 10 s cost per call).
   */
  async with<T>(target: Omit<IpmiTarget, 'cipherSuite'> & { cipherSuite: number | undefined },
    fn: (s: IpmiSession) => Promise<T>): Promise<T> {
    if (target.cipherSuite !== undefined) return fn(this.session({ ...target, cipherSuite: target.cipherSuite }));
    const bmc = `${target.host}|${target.port}`;
    const known = this.probedSuite.get(bmc);
    if (known) return fn(this.session({ ...target, cipherSuite: known }));
    try {
      const r = await fn(this.session({ ...target, cipherSuite: 17 }));
      this.probedSuite.set(bmc, 17);
      return r;
    } catch (e) {
      if (!(e instanceof IpmiError) || e.kind !== 'cipher') throw e;
      const r = await fn(this.session({ ...target, cipherSuite: 3 }));
      this.probedSuite.set(bmc, 3);
      return r;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((s) => s.close()));
  }

  private differs(a: IpmiTarget, b: IpmiTarget): boolean {
    return a.password !== b.password || a.cipherSuite !== b.cipherSuite || a.privLevel !== b.privLevel ||
      !(a.kg ?? Buffer.alloc(0)).equals(b.kg ?? Buffer.alloc(0));
  }
}
