/**
 * The lab rack's forwarder inside its network namespace (lab/netns.ts starts it with `ip netns exec`). Unix
 * sockets are paths, shared across namespaces, so they carry TCP between the namespace and the root namespace's
 * loopback without any address or veth outside it:
 *   tcp:HOST:PORT>unix:PATH        nodes dial HOST:PORT on the bridge; the root namespace serves PATH
 *   unix:PATH>lease:FILE:MAC:PORT  the root namespace dials PATH; we connect to the address dnsmasq leased MAC
 * Usage: node --import tsx lab/ns-forward.ts RULE... ; prints "ready" once every listener is bound.
 */
import { readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';

type Target = { path: string } | { leaseFile: string; mac: string; port: number };

function leasedIp(file: string, mac: string): string | undefined {
  let text = '';
  try { text = readFileSync(file, 'utf8'); } catch { return undefined; }
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.toLowerCase() === mac.toLowerCase()) return f[2];
  }
  return undefined;
}

function pipe(client: Socket, target: Target): void {
  let upstream: Socket;
  if ('path' in target) upstream = connect(target.path);
  else {
    const ip = leasedIp(target.leaseFile, target.mac);
    if (!ip) { client.destroy(); return; }
    upstream = connect(target.port, ip);
  }
  upstream.setNoDelay(true);
  client.setNoDelay(true);
  client.pipe(upstream).pipe(client);
  const end = (): void => { client.destroy(); upstream.destroy(); };
  client.on('error', end);
  upstream.on('error', end);
  client.on('close', end);
  upstream.on('close', end);
}

async function listen(rule: string): Promise<void> {
  const [from, to] = rule.split('>');
  if (!from || !to) throw new Error(`bad rule ${rule}`);
  let target: Target;
  if (to.startsWith('unix:')) target = { path: to.slice(5) };
  else if (to.startsWith('lease:')) {
    const [, file, mac, port] = /^lease:(.+):((?:[0-9a-f]{2}:){5}[0-9a-f]{2}):(\d+)$/i.exec(to) ?? [];
    if (!file || !mac || !port) throw new Error(`bad lease target ${to}`);
    target = { leaseFile: file, mac, port: Number(port) };
  } else throw new Error(`bad target ${to}`);
  const server = createServer((c) => pipe(c, target));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (from.startsWith('unix:')) {
      rmSync(from.slice(5), { force: true });
      server.listen(from.slice(5), resolve);
    } else {
      const m = /^tcp:([0-9.]+):(\d+)$/.exec(from);
      if (!m) throw new Error(`bad listener ${from}`);
      server.listen(Number(m[2]), m[1], resolve);
    }
  });
}

await Promise.all(process.argv.slice(2).map(listen));
process.stdout.write('ready\n');
process.on('SIGTERM', () => process.exit(0));
