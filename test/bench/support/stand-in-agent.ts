/**
 * A fast stand-in for IPA's command API (GET/POST /v1/commands/, reference/ipa-protocol.md §8), so the conductor
 * bench can run the real `direct` deploy's heartbeat handling without an agent's own work in the measurement:
 * `deploy.get_deploy_steps` answers with write_image, `deploy.execute_deploy_step` starts a command that stays
 * RUNNING (a long image write), anything else succeeds at once. Commands are kept per agent token, so one server
 * stands in for every node's agent; `nextPoll(token)` resolves at the next command-list read for that token,
 * which is what one heartbeat of a node in `wait call-back` costs the conductor (record, lock, poll, judge).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

interface Command {
  id: string;
  command_name: string;
  command_status: 'RUNNING' | 'SUCCEEDED';
  command_error: null;
  command_result: Record<string, unknown> | null;
}

export interface StandInAgent {
  url: string;
  /** Commands the conductor sent to the agent holding `token`, oldest first. */
  commands(token: string): readonly Command[];
  /** Resolves at the next GET /v1/commands/ carrying `token`. */
  nextPoll(token: string): Promise<void>;
  /** Command-list reads so far, all tokens. */
  polls(): number;
  close(): Promise<void>;
}

const WRITE_IMAGE = { interface: 'deploy', step: 'write_image', priority: 80, reboot_requested: false, argsinfo: null };

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startStandInAgent(): Promise<StandInAgent> {
  const lists = new Map<string, Command[]>();
  const waiters = new Map<string, (() => void)[]>();
  let polls = 0;
  let seq = 0;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const u = new URL(req.url ?? '/', 'http://stand-in');
    const token = u.searchParams.get('agent_token') ?? '';
    if (!/^\/v1\/commands\/?$/.test(u.pathname)) return send(res, 404, { faultcode: 'Client', faultstring: 'Not found' });
    const list = lists.get(token) ?? [];
    lists.set(token, list);
    if (req.method === 'GET') {
      polls++;
      send(res, 200, { commands: list });
      const w = waiters.get(token) ?? [];
      waiters.delete(token);
      for (const f of w) f();
      return;
    }
    if (req.method !== 'POST') return send(res, 405, { faultcode: 'Client', faultstring: 'Method not allowed' });
    let name = '';
    try {
      name = String((JSON.parse(await readBody(req)) as { name?: unknown }).name ?? '');
    } catch {
      return send(res, 400, { faultcode: 'Client', faultstring: 'Invalid JSON body' });
    }
    const short = name.slice(name.indexOf('.') + 1);
    const cmd: Command = { id: `stand-in-${++seq}`, command_name: short, command_status: 'SUCCEEDED', command_error: null,
      command_result: null };
    if (name === 'deploy.get_deploy_steps') {
      cmd.command_result = { deploy_steps: { GenericHardwareManager: [WRITE_IMAGE] },
        hardware_manager_version: { generic_hardware_manager: '1.2' } };
    } else if (name === 'deploy.execute_deploy_step') {
      cmd.command_status = 'RUNNING';
    }
    list.push(cmd);
    send(res, 200, cmd);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => send(res, 500, { faultcode: 'Server', faultstring: String(e) }));
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    commands: (token) => lists.get(token) ?? [],
    nextPoll: (token) => new Promise<void>((resolve) => {
      const w = waiters.get(token) ?? [];
      w.push(resolve);
      waiters.set(token, w);
    }),
    polls: () => polls,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
