/**
 * The heartbeat loop: first heartbeat at once, then every
 * heartbeat_timeout × U(0.3, 0.6) after a success or minGap × U(1, 2) after a failure (IPA: 5 × U(1, 2) s).
 * force() asks for one as soon as minGap has passed since the previous one (after an async command ends).
 * Failures are logged and retried, never fatal.
 */
import { getLogger, type Logger } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';

export interface HeartbeaterOptions {
  /** Sends one heartbeat; throws on any failure. */
  send: () => Promise<void>;
  heartbeatTimeoutS: number;
  /** Minimum gap before a forced heartbeat, and the failure retry base (IPA: 5 s). */
  minGapS?: number;
  log?: Logger;
  random?: () => number;
}

export function successIntervalS(timeoutS: number, rnd: () => number = Math.random): number {
  return timeoutS * (0.3 + 0.3 * rnd());
}

export function failureIntervalS(minGapS: number, rnd: () => number = Math.random): number {
  return minGapS * (1 + rnd());
}

export class Heartbeater {
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private stopped = true;
  private forced = false;
  private lastAttempt = 0;
  private intervalMs = 0;
  private readonly log: Logger;
  private readonly minGapMs: number;
  private readonly rnd: () => number;
  /** Counters for status and tests. */
  sent = 0;
  failed = 0;
  lastError: string | null = null;

  constructor(private readonly opts: HeartbeaterOptions) {
    this.log = opts.log ?? getLogger('heartbeat');
    this.minGapMs = (opts.minGapS ?? 5) * 1000;
    this.rnd = opts.random ?? Math.random;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.arm(0);
  }

  /** Heartbeat soon: at once if minGap has passed since the last one, else when it has. */
  force(): void {
    this.forced = true;
    if (this.stopped || this.inFlight) return;
    this.arm(Math.max(0, this.lastAttempt + this.minGapMs - Date.now()));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight?.catch(() => undefined); // stopping: a failed last heartbeat was already logged by send()
  }

  private arm(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.inFlight = this.beat().finally(() => {
        this.inFlight = null;
        this.next();
      });
    }, delayMs);
  }

  private next(): void {
    if (this.stopped) return;
    const due = this.lastAttempt + this.intervalMs;
    const forcedDue = this.lastAttempt + this.minGapMs;
    this.arm(Math.max(0, (this.forced ? Math.min(due, forcedDue) : due) - Date.now()));
  }

  private async beat(): Promise<void> {
    // A force() arriving while this heartbeat is in flight must lead to another one: clear the flag now.
    const wasForced = this.forced;
    this.forced = false;
    this.lastAttempt = Date.now();
    try {
      await this.opts.send();
      this.sent++;
      this.lastError = null;
      this.intervalMs = successIntervalS(this.opts.heartbeatTimeoutS, this.rnd) * 1000;
      this.log.info({ next_in_s: Math.round(this.intervalMs / 100) / 10, forced: wasForced }, 'heartbeat sent');
    } catch (e) {
      this.failed++;
      this.lastError = errorMessage(e);
      this.forced = this.forced || wasForced;
      this.intervalMs = failureIntervalS(this.minGapMs / 1000, this.rnd) * 1000;
      const conflict = e instanceof Error && e.name === 'HeartbeatConflictError';
      this.log[conflict ? 'warn' : 'error'](
        { err: this.lastError, retry_in_s: Math.round(this.intervalMs / 100) / 10 },
        'heartbeat failed',
      );
    }
  }
}
