/**
 * Bytes written, read from the agent's own command list while write_image runs: GET /v1/commands on the
 * hostfwd port (loopback). This is a read-only look for the progress display; the agent's self-signed auto-TLS
 * certificate is not verified because nothing is sent and nothing read here is trusted for anything else. If the
 * agent refuses token-less reads, the display simply shows the step without bytes.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface WriteWatcher {
  start(): void;
  stop(): void;
}

const WRITTEN_KEYS = ['bytes_written', 'written_bytes', 'written', 'bytes', 'downloaded_bytes', 'received'];
const TOTAL_KEYS = ['total_bytes', 'image_size', 'size', 'total', 'content_length'];

function pick(obj: Record<string, unknown>, keys: string[]): number | undefined {
  for (const k of keys) if (typeof obj[k] === 'number') return obj[k];
  return undefined;
}

/** Progress numbers from the running execute_deploy_step result (flat or under `progress`). */
export function progressOf(commands: unknown): { written: number; total: number | undefined } | undefined {
  const list = (commands as { commands?: unknown[] } | undefined)?.commands;
  if (!Array.isArray(list)) return undefined;
  for (const c of [...list].reverse()) {
    const cmd = c as { command_name?: string; command_result?: unknown };
    if (cmd.command_name !== 'execute_deploy_step' || !cmd.command_result || typeof cmd.command_result !== 'object') continue;
    const r = cmd.command_result as Record<string, unknown>;
    for (const o of [r, r.progress, r.write_progress]) {
      if (!o || typeof o !== 'object') continue;
      const written = pick(o as Record<string, unknown>, WRITTEN_KEYS);
      if (written !== undefined) return { written, total: pick(o as Record<string, unknown>, TOTAL_KEYS) };
    }
    return undefined;
  }
  return undefined;
}

function getJson(port: number, tls: boolean): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const opts = { host: '127.0.0.1', port, path: '/v1/commands/', timeout: 3000, ...(tls ? { rejectUnauthorized: false } : {}) };
    const req = (tls ? httpsRequest : httpRequest)(opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        if ((res.statusCode ?? 500) >= 400) return reject(new Error(`HTTP ${res.statusCode}`));
        try { resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))); } catch (e) { reject(e as Error); }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** The agent also logs `image progress` JSON lines on the console: the last one in `serial`, if any. */
export function progressFromSerial(serial: string): { written: number; total: number | undefined } | undefined {
  const lines = serial.split('\n').filter((l) => l.includes('"image progress"'));
  for (const line of lines.reverse()) {
    try {
      const o = JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>;
      const written = pick(o, WRITTEN_KEYS);
      if (written !== undefined) return { written, total: pick(o, TOTAL_KEYS) };
    } catch {
      /* a line cut by the console or interleaved with kernel output */
    }
  }
  return undefined;
}

export function watchAgentWrite(
  port: number,
  onBytes: (written: number, total: number | undefined) => void,
  serial?: () => string,
): WriteWatcher {
  let timer: NodeJS.Timeout | undefined;
  let tls: boolean | undefined;
  let busy = false;
  const tick = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      let body: unknown;
      if (tls === undefined) {
        body = await getJson(port, true).then((b) => { tls = true; return b; })
          .catch(() => getJson(port, false).then((b) => { tls = false; return b; }));
      } else {
        body = await getJson(port, tls);
      }
      const p = progressOf(body) ?? (serial ? progressFromSerial(serial()) : undefined);
      if (p) onBytes(p.written, p.total);
    } catch {
      // The agent may refuse token-less reads: its console log carries the same numbers.
      const p = serial ? progressFromSerial(serial()) : undefined;
      if (p) onBytes(p.written, p.total);
    } finally {
      busy = false;
    }
  };
  return {
    start() {
      timer ??= setInterval(() => void tick(), 1000);
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}
