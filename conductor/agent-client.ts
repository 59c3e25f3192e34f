/**
 * The conductor's client for the agent command API (IPA-compatible, as Ironic's agent_client). Every call carries the agent token (GETs too: newer agents require it); connection
 * failures are retried, a lost POST reply is recovered from the command list, 409/"agent is busy" becomes
 * AgentInProgress so the caller waits for the next heartbeat.
 */
import { Agent, request, type Dispatcher } from 'undici';
import type { CommandList, CommandResult, StepsResult } from '../protocol/agent-api.js';
import { getLogger } from '../common/logger.js';
import { parseJsonSafe, PEER_JSON_LIMITS } from '../common/safe-json.js';
import { AgentConnectionFailed, IronicError } from './errors.js';

const log = getLogger('agent-client');

export class AgentInProgress extends IronicError {
  constructor(message: string) { super(message, 409, 'AgentInProgress'); }
}
export class AgentAPIError extends IronicError {
  constructor(message: string, readonly httpStatus: number) { super(message, 500, 'AgentAPIError'); }
}
export class AgentCommandTimeout extends IronicError {
  constructor(message: string) { super(message, 500, 'AgentCommandTimeout'); }
}

/** Where the agent is and how to trust it: from driver_internal_info (agent_url, token, agent_verify_ca). */
export interface AgentEndpoint {
  url: string;
  token?: string | null;
  /** PEM the agent sent with its heartbeat (auto-TLS): pinned as the only CA for this agent. */
  verifyCa?: string | null;
  /** With no pinned PEM: false skips verification (operator's insecure choice), a string is a CA bundle PEM. */
  verify?: boolean | string;
}

export interface AgentClientOptions {
  /** Per HTTP call ([agent]command_timeout, 60 s). */
  commandTimeoutMs?: number;
  /** Attempts on connection failures ([agent]max_command_attempts, 3). */
  maxAttempts?: number;
  /** Pause between those attempts ([agent]command_retry_interval, 2 s). */
  retryIntervalMs?: number;
  /** Polling of async commands ([agent]command_wait_interval 6 s × command_wait_attempts 100). */
  pollIntervalMs?: number;
  pollAttempts?: number;
  /** Largest response body read for a command (a hostile or broken agent must not fill the conductor's memory). */
  maxResponseBytes?: number;
  /** Largest response body for log.collect_system_logs (a base64 tarball). */
  maxLogBytes?: number;
}

type Json = Record<string, unknown>;

function shortName(method: string): string {
  const i = method.indexOf('.');
  return i < 0 ? method : method.slice(i + 1);
}

function faultOf(body: unknown): string {
  if (body && typeof body === 'object' && 'faultstring' in body) return String((body as Json).faultstring);
  return typeof body === 'string' ? body : JSON.stringify(body);
}

/** Text Ironic would put in last_error for a failed command: details, else message, else the whole error. */
export function commandErrorText(result: CommandResult): string {
  const e = result.command_error;
  if (!e) return `${result.command_name} failed`;
  if ('details' in e && e.details) return e.details;
  if ('message' in e && e.message) return e.message;
  if ('error' in e) return e.error;
  return JSON.stringify(e);
}

export class AgentClient {
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly retryIntervalMs: number;
  private readonly pollIntervalMs: number;
  private readonly pollAttempts: number;
  private readonly dispatchers = new Map<string, Dispatcher>();
  private readonly maxResponseBytes: number;
  private readonly maxLogBytes: number;

  constructor(opts: AgentClientOptions = {}) {
    this.maxResponseBytes = opts.maxResponseBytes ?? 8 * 2 ** 20;
    this.maxLogBytes = opts.maxLogBytes ?? 64 * 2 ** 20;
    this.timeoutMs = opts.commandTimeoutMs ?? 60_000;
    this.attempts = opts.maxAttempts ?? 3;
    this.retryIntervalMs = opts.retryIntervalMs ?? 2_000;
    this.pollIntervalMs = opts.pollIntervalMs ?? 6_000;
    this.pollAttempts = opts.pollAttempts ?? 100;
  }

  private static key(ep: AgentEndpoint): string {
    return `${ep.verifyCa ?? ''}|${String(ep.verify ?? true)}`;
  }

  /** Number of per-CA HTTP clients held (tests check they are released). */
  get clientCount(): number {
    return this.dispatchers.size;
  }

  /**
   * Drops the HTTP client for an agent's pinned CA once that agent is gone (power off, token wiped): each
   * ramdisk boot brings a new self-signed CA, and clients kept per CA would pile up with their sockets.
   */
  async release(verifyCa: string | null | undefined): Promise<void> {
    if (!verifyCa) return;
    for (const [k, d] of [...this.dispatchers]) {
      if (k.startsWith(`${verifyCa}|`)) {
        this.dispatchers.delete(k);
        await d.close().catch(() => undefined);
      }
    }
  }

  private dispatcher(ep: AgentEndpoint): Dispatcher {
    const key = AgentClient.key(ep);
    let d = this.dispatchers.get(key);
    if (!d) {
      const connect: Record<string, unknown> = {};
      if (ep.verifyCa) connect.ca = ep.verifyCa;
      else if (typeof ep.verify === 'string') connect.ca = ep.verify;
      else if (ep.verify === false) connect.rejectUnauthorized = false;
      d = new Agent({ connect, keepAliveTimeout: 10_000, headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs });
      this.dispatchers.set(key, d);
    }
    return d;
  }

  private commandsUrl(ep: AgentEndpoint, query: Record<string, string>, id?: string): string {
    if (!ep.url) throw new AgentConnectionFailed('Agent driver requires agent_url in driver_internal_info');
    const base = ep.url.replace(/\/+$/, '');
    const u = new URL(`${base}/v1/commands/${id ?? ''}`);
    for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
    if (ep.token) u.searchParams.set('agent_token', ep.token);
    return u.toString();
  }

  private async http(ep: AgentEndpoint, method: 'GET' | 'POST', url: string, body?: Json,
    maxBytes = this.maxResponseBytes): Promise<{ status: number; json: unknown }> {
    const res = await request(url, {
      method,
      dispatcher: this.dispatcher(ep),
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) {
      res.body.destroy();
      throw new AgentAPIError(`Agent response too large: ${declared} bytes (limit ${maxBytes})`, res.statusCode);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) {
        res.body.destroy();
        throw new AgentAPIError(`Agent response too large: more than ${maxBytes} bytes`, res.statusCode);
      }
      chunks.push(chunk as Buffer);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    let json: unknown = text;
    try {
      json = text ? parseJsonSafe(text, PEER_JSON_LIMITS) : null;
    } catch {
      if (res.statusCode < 400) throw new AgentAPIError(`Agent returned a non-JSON body: ${text.slice(0, 200)}`, res.statusCode);
    }
    return { status: res.statusCode, json };
  }

  /** Waits before attempt i (0-based): nothing before the first. */
  private async pauseBefore(i: number): Promise<void> {
    if (i > 0 && this.retryIntervalMs > 0) await new Promise((r) => setTimeout(r, this.retryIntervalMs));
  }

  /** GET /v1/commands/ once; connection errors are thrown as they are (the callers retry). */
  private async listOnce(ep: AgentEndpoint): Promise<CommandResult[]> {
    const { status, json } = await this.http(ep, 'GET', this.commandsUrl(ep, {}));
    if (status >= 400) throw new AgentAPIError(`Agent returned error ${status}: ${faultOf(json)}`, status);
    const list = (json as CommandList | null)?.commands;
    if (!Array.isArray(list)) throw new AgentAPIError('Agent returned no command list', status);
    return list;
  }

  /** GET /v1/commands/: the full ordered history (Ironic looks at the last entry). */
  async listCommands(ep: AgentEndpoint): Promise<CommandResult[]> {
    let lastErr: unknown;
    for (let i = 0; i < this.attempts; i++) {
      await this.pauseBefore(i);
      try {
        return await this.listOnce(ep);
      } catch (e) {
        if (e instanceof IronicError) throw e;
        lastErr = e;
        log.warn({ url: ep.url, attempt: i + 1, of: this.attempts, err: String(e) }, 'agent command list failed to connect');
      }
    }
    throw new AgentConnectionFailed(`Failed to connect to the agent at ${ep.url} after ${this.attempts} attempts: ${String(lastErr)}`, lastErr);
  }

  /** POST a command; with wait=true the agent answers with the final result. */
  async command(ep: AgentEndpoint, method: string, params: Json, opts: { wait?: boolean; maxBytes?: number } = {}): Promise<CommandResult> {
    const url = this.commandsUrl(ep, { wait: opts.wait ? 'true' : 'false' });
    let lastErr: unknown;
    for (let i = 0; i < this.attempts; i++) {
      await this.pauseBefore(i);
      let res: { status: number; json: unknown };
      try {
        res = await this.http(ep, 'POST', url, { name: method, params }, opts.maxBytes);
      } catch (e) {
        if (e instanceof IronicError) throw e;
        lastErr = e;
        // The agent may have got the request and only the reply was lost: adopt a RUNNING command of that name.
        try {
          const list = await this.listOnce(ep);
          const last = list.at(-1);
          if (last && last.command_name === shortName(method) && last.command_status === 'RUNNING') return last;
        } catch {
          /* fall through to the next attempt */
        }
        log.warn({ method, url: ep.url, attempt: i + 1, of: this.attempts, err: String(e) }, 'agent command failed to connect');
        continue;
      }
      const { status, json } = res;
      if (status >= 400) {
        const fault = faultOf(json);
        if (status === 409 || /agent is busy/i.test(fault)) throw new AgentInProgress(`Agent is busy: ${fault}`);
        throw new AgentAPIError(`Agent returned error for ${method}: ${status} ${fault}`, status);
      }
      const result = json as CommandResult;
      if (!result || typeof result !== 'object' || !result.command_status) {
        throw new AgentAPIError(`Agent returned bad command result for ${method}: ${JSON.stringify(json).slice(0, 300)}`, status);
      }
      const err = result.command_error;
      if (err && 'type' in err && err.type === 'TypeError') {
        throw new AgentAPIError(`Agent rejected the parameters of ${method}: ${commandErrorText(result)}`, status);
      }
      return result;
    }
    throw new AgentConnectionFailed(`Failed to connect to the agent at ${ep.url} for ${method} after ${this.attempts} attempts: ${String(lastErr)}`, lastErr);
  }

  /** POST then poll the list until the last command of that name finishes (only install_bootloader in Ironic). */
  async commandAndPoll(ep: AgentEndpoint, method: string, params: Json): Promise<CommandResult> {
    const first = await this.command(ep, method, params, { wait: false });
    if (first.command_status !== 'RUNNING') return first;
    const name = shortName(method);
    for (let i = 0; i < this.pollAttempts; i++) {
      await new Promise((r) => setTimeout(r, this.pollIntervalMs));
      const list = await this.listCommands(ep);
      const mine = list.filter((c) => c.command_name === name).at(-1);
      if (mine && mine.command_status !== 'RUNNING') return mine;
    }
    throw new AgentCommandTimeout(`Agent command ${method} did not finish in time`);
  }

  getCleanSteps(ep: AgentEndpoint, node: Json, ports: Json[]): Promise<CommandResult> {
    return this.command(ep, 'clean.get_clean_steps', { node, ports }, { wait: true });
  }
  executeCleanStep(ep: AgentEndpoint, step: Json, node: Json, ports: Json[], cleanVersion: Record<string, string> | undefined): Promise<CommandResult> {
    return this.command(ep, 'clean.execute_clean_step', { step, node, ports, clean_version: cleanVersion ?? null });
  }
  getDeploySteps(ep: AgentEndpoint, node: Json, ports: Json[]): Promise<CommandResult> {
    return this.command(ep, 'deploy.get_deploy_steps', { node, ports }, { wait: true });
  }
  executeDeployStep(ep: AgentEndpoint, step: Json, node: Json, ports: Json[], deployVersion: Record<string, string> | undefined): Promise<CommandResult> {
    return this.command(ep, 'deploy.execute_deploy_step', { step, node, ports, deploy_version: deployVersion ?? null });
  }
  getPartitionUuids(ep: AgentEndpoint): Promise<CommandResult> {
    return this.command(ep, 'standby.get_partition_uuids', {}, { wait: true });
  }
  installBootloader(ep: AgentEndpoint, params: { root_uuid: string; efi_system_part_uuid?: string | null; prep_boot_part_uuid?: string | null; target_boot_mode: string }): Promise<CommandResult> {
    return this.commandAndPoll(ep, 'image.install_bootloader', params);
  }
  powerOff(ep: AgentEndpoint): Promise<CommandResult> {
    return this.command(ep, 'standby.power_off', {});
  }
  reboot(ep: AgentEndpoint): Promise<CommandResult> {
    return this.command(ep, 'standby.run_image', {});
  }
  sync(ep: AgentEndpoint): Promise<CommandResult> {
    return this.command(ep, 'standby.sync', {}, { wait: true });
  }
  collectSystemLogs(ep: AgentEndpoint): Promise<CommandResult> {
    return this.command(ep, 'log.collect_system_logs', {}, { wait: true, maxBytes: this.maxLogBytes });
  }

  /** Steps from a get_*_steps result, validated as Ironic's refresh_steps does. */
  static stepsFrom(result: CommandResult, kind: 'clean' | 'deploy' | 'service'): StepsResult {
    const r = result.command_result as Partial<StepsResult> | null;
    const key = `${kind}_steps` as const;
    if (!r || !r[key] || !r.hardware_manager_version) {
      throw new AgentAPIError(`Agent returned invalid ${kind} steps: missing ${key} or hardware_manager_version`, 200);
    }
    for (const steps of Object.values(r[key])) {
      for (const s of steps) {
        if (!s || !s.interface || !s.step || typeof s.priority !== 'number') {
          throw new AgentAPIError(`Agent returned an invalid ${kind} step: ${JSON.stringify(s)}`, 200);
        }
      }
    }
    return r as StepsResult;
  }

  async close(): Promise<void> {
    await Promise.all([...this.dispatchers.values()].map((d) => d.close()));
    this.dispatchers.clear();
  }
}
