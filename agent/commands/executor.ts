/**
 * Runs commands one at a time and keeps every result for the agent's lifetime.
 * Dispatch errors (bad name, unknown extension/command, bad params, busy) are thrown for the HTTP layer; anything
 * failing once a command runs becomes a FAILED record. Sync commands complete inside the call, async ones are
 * RUNNING at once and finish in the background, then `onAsyncDone` fires (the heartbeat loop forces a heartbeat).
 */
import { randomUUID } from 'node:crypto';
import { getLogger, type Logger } from '../../common/logger.js';
import {
  AgentError,
  AgentIsBusy,
  RequestedObjectNotFoundError,
  serializeError,
  type CommandResult,
  type CommandStatus,
  type SerializedError,
} from '../../protocol/agent-api.js';
import { CommandRegistry } from './registry.js';
import type { CommandContext } from './types.js';
import { NO_AGENT, type AgentLifecycle } from '../lifecycle.js';

export interface ExecutorOptions {
  /** Called after any async command finishes (success or failure). */
  onAsyncDone?: (result: CommandResult) => void;
  /** Minimum gap between progress merges into command_result (default 1000 ms). */
  progressIntervalMs?: number;
  log?: Logger;
  /** The agent the commands run in (default: a stand-in refusing power/node-info changes). */
  agent?: AgentLifecycle;
}

class CommandRecord {
  readonly id = randomUUID();
  status: CommandStatus = 'RUNNING';
  error: CommandResult['command_error'] = null;
  result: Record<string, unknown> | null = null;
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    readonly name: string,
    readonly async: boolean,
    readonly confidential = false,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  finish(status: CommandStatus, result: Record<string, unknown> | null, error: CommandResult['command_error']): void {
    this.status = status;
    this.result = result;
    this.error = error;
    this.resolveDone();
  }

  toJSON(): CommandResult {
    return {
      id: this.id,
      command_name: this.name,
      command_status: this.status,
      command_error: this.error,
      command_result: this.result,
    };
  }
}

/** IPA wraps bare strings (async ones prefixed with the command name); other non-objects are wrapped too. */
function wrapResult(value: unknown, name: string, async: boolean): Record<string, unknown> | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return { result: async ? `${name}: ${value}` : value };
  if (typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value)) {
    return value as Record<string, unknown>;
  }
  return { result: value };
}

function errorOf(err: unknown): SerializedError | { error: string } {
  if (typeof err === 'string') return { error: err };
  return serializeError(err);
}

function statusOf(err: unknown): CommandStatus {
  return err instanceof AgentError && err.code === 'VersionMismatch' ? 'CLEAN_VERSION_MISMATCH' : 'FAILED';
}

export class CommandExecutor {
  private readonly records: CommandRecord[] = [];
  private readonly byId = new Map<string, CommandRecord>();
  /** Serialises dispatch like IPA's command lock: a sync command holds it until it completes. */
  private lock: Promise<void> = Promise.resolve();
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private readonly progressIntervalMs: number;

  constructor(
    private readonly registry: CommandRegistry,
    private readonly opts: ExecutorOptions = {},
  ) {
    this.log = opts.log ?? getLogger('executor');
    this.progressIntervalMs = opts.progressIntervalMs ?? 1000;
  }

  /** All results, oldest first; `redactConfidential` nulls the results of confidentialResult commands. */
  list(opts: { redactConfidential?: boolean } = {}): CommandResult[] {
    return this.records.map((r) => {
      const json = r.toJSON();
      return opts.redactConfidential && r.confidential ? { ...json, command_result: null } : json;
    });
  }

  get(id: string): CommandResult {
    return this.record(id).toJSON();
  }

  /** Resolve once the command is no longer RUNNING (or at once). */
  async wait(id: string): Promise<CommandResult> {
    const rec = this.record(id);
    await rec.done;
    return rec.toJSON();
  }

  /** The in-flight command, if the newest one is still running. */
  running(): CommandResult | null {
    const last = this.records.at(-1);
    return last && last.status === 'RUNNING' ? last.toJSON() : null;
  }

  /** Abort in-flight commands (agent shutdown). */
  shutdown(): void {
    this.abort.abort(new Error('agent is shutting down'));
  }

  /**
   * Dispatch `extension.command`. Throws AgentError for HTTP-level refusals; otherwise returns the record
   * (sync: finished; async: RUNNING unless `wait`).
   */
  async execute(name: string, params: Record<string, unknown>, opts: { wait?: boolean } = {}): Promise<CommandResult> {
    const previous = this.lock;
    let release!: () => void;
    this.lock = new Promise((r) => (release = r));
    await previous;
    let rec: CommandRecord;
    try {
      CommandRegistry.split(name);
      const last = this.records.at(-1);
      if (last && last.status === 'RUNNING') throw new AgentIsBusy(`executing command ${last.name}`);
      const resolved = this.registry.resolve(name);
      const parsed = CommandRegistry.validate(resolved, params);
      rec = new CommandRecord(resolved.command, resolved.def.async, resolved.def.confidentialResult === true);
      const ctx = this.context(rec);
      if (!resolved.def.async) {
        await this.runSync(rec, () => resolved.def.run(parsed as never, ctx));
        return rec.toJSON();
      }
      this.add(rec);
      this.log.info({ command: name, id: rec.id }, 'async command started');
      void this.runAsync(rec, () => resolved.def.run(parsed as never, ctx), name);
    } finally {
      release();
    }
    if (opts.wait) await rec.done;
    return rec.toJSON();
  }

  private record(id: string): CommandRecord {
    const rec = this.byId.get(id);
    if (!rec) throw new RequestedObjectNotFoundError(`Command Result with id ${id} not found.`);
    return rec;
  }

  private add(rec: CommandRecord): void {
    this.records.push(rec);
    this.byId.set(rec.id, rec);
  }

  private async runSync(rec: CommandRecord, fn: () => Promise<unknown>): Promise<void> {
    try {
      const value = await fn();
      rec.finish('SUCCEEDED', wrapResult(value, rec.name, false), null);
    } catch (err) {
      // Content errors raised by the command itself are the caller's fault: HTTP 400, no record (as IPA).
      if (err instanceof AgentError && err.status === 400) throw err;
      this.log.warn({ command: rec.name, err: String(err) }, 'sync command failed');
      rec.finish(statusOf(err), null, errorOf(err));
    }
    this.add(rec);
  }

  private async runAsync(rec: CommandRecord, fn: () => Promise<unknown>, fullName: string): Promise<void> {
    try {
      const value = await fn();
      rec.finish('SUCCEEDED', wrapResult(value, rec.name, true), null);
      this.log.info({ command: fullName, id: rec.id }, 'async command succeeded');
    } catch (err) {
      rec.finish(statusOf(err), rec.result, errorOf(err));
      this.log.warn({ command: fullName, id: rec.id, err: String(err) }, 'async command failed');
    }
    try {
      this.opts.onAsyncDone?.(rec.toJSON());
    } catch (err) {
      this.log.warn({ err: String(err) }, 'onAsyncDone listener failed');
    }
  }

  private context(rec: CommandRecord): CommandContext {
    let pending: Record<string, unknown> | null = null;
    let lastApplied = 0;
    let timer: NodeJS.Timeout | null = null;
    const apply = (): void => {
      timer = null;
      if (pending === null || rec.status !== 'RUNNING') return;
      rec.result = { ...(rec.result ?? {}), ...pending };
      pending = null;
      lastApplied = Date.now();
    };
    void rec.done.then(() => {
      if (timer) clearTimeout(timer);
    });
    return {
      log: this.log.child({ command: rec.name, id: rec.id }),
      signal: this.abort.signal,
      agent: this.opts.agent ?? NO_AGENT,
      progress: (update) => {
        if (rec.status !== 'RUNNING') return;
        pending = { ...(pending ?? {}), ...update };
        const due = lastApplied + this.progressIntervalMs - Date.now();
        if (due <= 0) apply();
        else if (!timer) timer = setTimeout(apply, due).unref();
      },
    };
  }
}
