/**
 * A small client of the Ironic-compatible REST API, as the `baremetal` CLI speaks it (http_basic over HTTPS
 * with the conductor's CA, or noauth over HTTP; a pinned microversion). node:http(s) keeps it free of undici's
 * Connection: close crash and of any conductor internals: the demo and the e2e test only talk to
 * the conductor over its public API and the files it documents (`<data_dir>/admin-credentials.json`,
 * `<data_dir>/tls/ca.pem`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../../common/errors.js';

/** 1.78 has everything the demo reads (deploy_step, node history) and is what the CLI negotiates up to. */
export const API_VERSION = '1.78';

export interface NodeJson {
  uuid: string;
  name: string | null;
  driver: string;
  power_state: string | null;
  target_power_state: string | null;
  provision_state: string;
  target_provision_state: string | null;
  last_error: string | null;
  maintenance: boolean;
  clean_step: Record<string, unknown>;
  deploy_step: Record<string, unknown>;
  driver_info: Record<string, unknown>;
  driver_internal_info: Record<string, unknown>;
  instance_info: Record<string, unknown>;
  [key: string]: unknown;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly method: string,
    readonly path: string,
    readonly body: string,
  ) {
    super(`${method} ${path} -> HTTP ${status}: ${ApiError.fault(body)}`);
  }

  /** Ironic's error body wraps a JSON string in `error_message`; show its faultstring. */
  static fault(body: string): string {
    try {
      const outer = JSON.parse(body) as { error_message?: string };
      if (typeof outer.error_message === 'string') {
        try {
          return (JSON.parse(outer.error_message) as { faultstring?: string }).faultstring ?? outer.error_message;
        } catch {
          return outer.error_message;
        }
      }
    } catch {
      /* not JSON */
    }
    return body.slice(0, 300);
  }
}

export interface ApiAccess {
  username: string;
  password: string;
  /** PEM of the CA that signed the API's certificate. */
  ca: string | undefined;
  caFile: string | undefined;
}

export class IronicApi {
  private access: ApiAccess | undefined;

  /** `dataDir`: the conductor's, whose generated credentials and CA this client uses once they exist. */
  constructor(readonly endpoint: string, readonly dataDir?: string) {}

  /** The generated credentials and CA (read when first needed: the conductor writes them at its first start). */
  credentials(): ApiAccess | undefined {
    if (this.access || !this.dataDir) return this.access;
    const credFile = join(this.dataDir, 'admin-credentials.json');
    const caFile = join(this.dataDir, 'tls', 'ca.pem');
    const https = this.endpoint.startsWith('https:');
    if (!existsSync(credFile) || (https && !existsSync(caFile))) return undefined;
    const c = JSON.parse(readFileSync(credFile, 'utf8')) as { username: string; password: string };
    this.access = { username: c.username, password: c.password, ca: https ? readFileSync(caFile, 'utf8') : undefined,
      caFile: https ? caFile : undefined };
    return this.access;
  }

  async call<T = unknown>(method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<T> {
    const url = new URL(path, this.endpoint);
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const access = this.credentials();
    if (this.dataDir && !access) throw new Error(`no credentials in ${this.dataDir} yet`);
    const https = url.protocol === 'https:';
    return new Promise<T>((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(
        url,
        {
          method,
          headers: {
            Accept: 'application/json',
            'X-OpenStack-Ironic-API-Version': API_VERSION,
            ...(access ? { Authorization: `Basic ${Buffer.from(`${access.username}:${access.password}`).toString('base64')}` } : {}),
            ...(data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {}),
          },
          timeout: timeoutMs,
          ...(https && access?.ca ? { ca: access.ca } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status >= 400) return reject(new ApiError(status, method, path, text));
            if (!text) return resolve(undefined as T);
            try {
              resolve(JSON.parse(text) as T);
            } catch {
              reject(new Error(`${method} ${path}: response is not JSON: ${text.slice(0, 200)}`));
            }
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(data);
    });
  }

  /** Poll `GET /` until the API answers (start-up), bounded. */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.call('GET', '/v1', undefined, 2000);
        return;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`conductor API at ${this.endpoint} not ready: ${errorMessage(e)}`);
        await sleep(200);
      }
    }
  }

  getNode(ident: string): Promise<NodeJson> {
    return this.call<NodeJson>('GET', `/v1/nodes/${encodeURIComponent(ident)}`);
  }

  createNode(body: Record<string, unknown>): Promise<NodeJson> {
    return this.call<NodeJson>('POST', '/v1/nodes', body);
  }

  createPort(nodeUuid: string, address: string): Promise<Record<string, unknown>> {
    return this.call('POST', '/v1/ports', { node_uuid: nodeUuid, address, pxe_enabled: true });
  }

  /** JSON-Patch `add` for each key (add replaces an existing member, as the CLI's `node set` does). */
  patchNode(ident: string, values: Record<string, unknown>): Promise<NodeJson> {
    const ops = Object.entries(values).map(([path, value]) => ({ op: 'add', path: `/${path}`, value }));
    return this.call<NodeJson>('PATCH', `/v1/nodes/${encodeURIComponent(ident)}`, ops);
  }

  provision(ident: string, target: string, extra: Record<string, unknown> = {}): Promise<void> {
    return this.call('PUT', `/v1/nodes/${encodeURIComponent(ident)}/states/provision`, { target, ...extra });
  }

  power(ident: string, target: 'power on' | 'power off'): Promise<void> {
    return this.call('PUT', `/v1/nodes/${encodeURIComponent(ident)}/states/power`, { target });
  }

  setBootDevice(ident: string, device: 'pxe' | 'disk', persistent = false): Promise<void> {
    return this.call('PUT', `/v1/nodes/${encodeURIComponent(ident)}/management/boot_device`, { boot_device: device, persistent });
  }

  validate(ident: string): Promise<Record<string, { result: boolean | null; reason: string | null }>> {
    return this.call('GET', `/v1/nodes/${encodeURIComponent(ident)}/validate`);
  }

  drivers(): Promise<{ drivers: Array<{ name: string }> }> {
    return this.call('GET', '/v1/drivers');
  }

  deleteNode(ident: string): Promise<void> {
    return this.call('DELETE', `/v1/nodes/${encodeURIComponent(ident)}`);
  }
}

export class StateTimeout extends Error {}
export class UnexpectedState extends Error {
  constructor(
    message: string,
    readonly node: NodeJson,
  ) {
    super(message);
  }
}

export interface WaitOptions {
  /** Stable states that end the wait successfully. */
  until: string[];
  /** States that end it with UnexpectedState (e.g. `deploy failed`). */
  failOn?: string[];
  timeoutMs: number;
  intervalMs?: number;
  /** Called with every polled node (progress display). */
  onPoll?: (node: NodeJson) => void | Promise<void>;
}

/** Poll a node until its provision_state is one of `until` (and no transition is pending). */
export async function waitForProvisionState(api: IronicApi, ident: string, opts: WaitOptions): Promise<NodeJson> {
  const deadline = Date.now() + opts.timeoutMs;
  let last: NodeJson | undefined;
  for (;;) {
    last = await api.getNode(ident);
    await opts.onPoll?.(last);
    if (opts.failOn?.includes(last.provision_state)) {
      throw new UnexpectedState(`node ${ident} went to "${last.provision_state}": ${last.last_error ?? '(no last_error)'}`, last);
    }
    if (opts.until.includes(last.provision_state) && !last.target_provision_state) return last;
    if (Date.now() > deadline) {
      throw new StateTimeout(
        `node ${ident} still "${last.provision_state}" (target ${last.target_provision_state ?? 'none'}) after ` +
          `${Math.round(opts.timeoutMs / 1000)} s waiting for ${opts.until.join('|')}; last_error: ${last.last_error ?? 'none'}`,
      );
    }
    await sleep(opts.intervalMs ?? 1000);
  }
}
