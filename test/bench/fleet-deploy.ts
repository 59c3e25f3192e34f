/**
 * `npm run bench -- fleet-deploy [--nodes N] [--image-mib M]`: N virtual nodes (lab/virtual-nodes.ts: a Redfish
 * BMC each, the agent as a process, a loop-device disk each) deployed at once by one conductor, images served
 * through the conductor's image cache (image_download_source=http) from a counting origin server.
 * Figures: one node alone, then all N at once (first deploy call -> last node active), origin bytes served /
 * image size, heartbeats received vs processing runs, the same fleet deploy again with fast-track (undeploy ->
 * cleaning leaves the agents up -> deploy). The conductor runs in this process: its CPU seconds and peak RSS
 * include the N small BMC emulators (they cost little next to it), never the agents.
 * Where the time goes: per phase (state + step) of the fleet cleaning and the fleet deploy, when nodes enter it
 * and how long they stay (test/bench/support/fleet-timeline.ts); the conductor's event-loop delay, image cache
 * and BMC call counters.
 * Last line: `fleet-deploy nodes=… all_active_s=… one_node_s=… origin_ratio=… fast_track_all_active_s=… conductor_rss_mib=…`.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { setLogLevel } from '../../common/logger.js';
import { startConductor, type RunningConductor } from '../../conductor/main.js';
import { startVirtualNodes, type VirtualFleet } from '../../lab/virtual-nodes.js';
import { buildRawDiskImage, fileDigest } from '../fixtures/images.js';
import { numArg, sizeMiBArg } from './support/args.js';
import { FleetTimeline, phaseOf } from './support/fleet-timeline.js';

interface NodeJson { uuid: string; name: string; provision_state: string; last_error: string | null; deploy_step?: unknown; clean_step?: unknown }

/** An origin that counts the bytes it sent (Range requests honoured, as image servers do). */
async function countingOrigin(dir: string): Promise<{ url: string; bytes: () => number; close: () => Promise<void>; server: Server }> {
  let sent = 0;
  const server = createServer((req, res) => {
    void (async () => {
      const file = join(dir, decodeURIComponent((req.url ?? '/').slice(1)));
      const st = await stat(file).catch(() => undefined);
      if (!st || !st.isFile() || file.includes('..')) { res.writeHead(404).end(); return; }
      const m = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
      const start = m ? Number(m[1]) : 0;
      const end = m && m[2] ? Number(m[2]) : st.size - 1;
      res.writeHead(m ? 206 : 200, { 'Content-Length': end - start + 1, 'Accept-Ranges': 'bytes',
        ...(m ? { 'Content-Range': `bytes ${start}-${end}/${st.size}` } : {}) });
      if (req.method === 'HEAD') { res.end(); return; }
      const s = createReadStream(file, { start, end });
      s.on('data', (c) => { sent += (c as Buffer).length; });
      s.pipe(res);
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, bytes: () => sent, server,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

export default async function fleetDeploy(args: string[]): Promise<void> {
  const count = numArg(args, '--nodes', null, 50);
  const imageMiB = sizeMiBArg(args, '--image-mib', null, 256);
  setLogLevel('warn');
  const dir = await mkdtemp(join(tmpdir(), 'bmts-bench-fleet-'));
  let conductor: RunningConductor | undefined;
  let fleet: VirtualFleet | undefined;
  let origin: Awaited<ReturnType<typeof countingOrigin>> | undefined;
  try {
    const img = await buildRawDiskImage(dir, { sizeMiB: imageMiB, name: 'fleet.raw' });
    const sha = await fileDigest(img.path, 'sha256');
    origin = await countingOrigin(dir);
    conductor = await startConductor({
      host: '127.0.0.1', port: 0, data_dir: join(dir, 'data'), conductor_host: 'bench-fleet', require_tls: false,
      auth: { strategy: 'noauth' }, tls: { mode: 'off' }, enabled_hardware_types: ['redfish'],
      heartbeat_timeout: 10, deploy_callback_timeout: 1800, clean_callback_timeout: 1800,
      periodic: { sync_power_state_interval: 0, check_provision_state_interval: 0, reservation_cleanup_interval: 0 },
      boot: { http_root: join(dir, 'http'), listen_host: '127.0.0.1', kernel_append_params: '' },
      agent: { power_off_poll_attempts: 20, power_off_poll_interval: 0.5, command_wait_interval: 1, command_timeout: 120,
        max_command_attempts: 3, command_wait_attempts: 300, deploy_logs_collect: 'never' },
      deploy: { image_download_source: 'http', image_cache_allow_loopback: true, fast_track: false, fast_track_timeout: 60 },
    });
    const c = conductor;
    const ctx = c.ctx;
    const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> => {
      const r = await fetch(`${c.url}${path}`, { method, headers: { 'X-OpenStack-Ironic-API-Version': '1.82',
        ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      const text = await r.text();
      return { status: r.status, body: text ? JSON.parse(text) as unknown : undefined };
    };
    const list = async (): Promise<NodeJson[]> =>
      ((await api('GET', '/v1/nodes?fields=uuid,name,provision_state,last_error,deploy_step,clean_step&limit=1000')).body as { nodes: NodeJson[] }).nodes;
    let peakAgentsMiB = 0;
    let peakConductorMiB = 0;
    const sample = async (): Promise<void> => {
      peakAgentsMiB = Math.max(peakAgentsMiB, (await fleet!.sampleRss()) / 1024);
      peakConductorMiB = Math.max(peakConductorMiB, process.memoryUsage().rss / 2 ** 20);
    };
    const listLatency: number[] = [];
    let sampling: Promise<void> | undefined;
    const waitAll = async (names: string[], state: string, timeline?: FleetTimeline): Promise<void> => {
      for (;;) {
        // RSS sampling reads /proc through the thread pool the image streams use: never let it delay the poll.
        sampling ??= sample().finally(() => { sampling = undefined; });
        const l0 = Date.now();
        const all = (await list()).filter((n) => names.includes(n.name));
        listLatency.push(Date.now() - l0);
        const now = Date.now();
        for (const n of all) timeline?.observe(n.name, phaseOf(n.provision_state, n.deploy_step ?? n.clean_step), now);
        const bad = all.filter((n) => /failed|error/.test(n.provision_state));
        if (bad.length) throw new Error(`nodes failed: ${bad.map((n) => `${n.name}: ${n.last_error}`).join('; ')}`);
        if (all.every((n) => n.provision_state === state)) {
          await sampling;
          return;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    const verb = async (names: string[], target: string): Promise<void> => {
      const rs = await Promise.all(names.map((n) => api('PUT', `/v1/nodes/${n}/states/provision`, { target })));
      const bad = rs.filter((r) => r.status !== 202);
      if (bad.length) throw new Error(`${target}: ${bad.length} requests refused: ${JSON.stringify(bad[0]?.body)}`);
    };
    const setImage = async (n: string): Promise<void> => {
      await api('PATCH', `/v1/nodes/${n}`, [
        { op: 'add', path: '/instance_info/image_source', value: `${origin!.url}/fleet.raw` },
        { op: 'add', path: '/instance_info/image_os_hash_algo', value: 'sha256' },
        { op: 'add', path: '/instance_info/image_os_hash_value', value: sha }]);
    };

    fleet = await startVirtualNodes({ count, apiUrl: c.url, logDir: join(dir, 'agents'), diskMiB: imageMiB + 32,
      agentFlags: { 'ipa-heartbeat-min-interval': '1' } });
    const names = fleet.nodes.map((n) => n.name);
    for (const v of fleet.nodes) {
      const r = await api('POST', '/v1/nodes', { name: v.name, driver: 'redfish', driver_info: v.driverInfo,
        boot_interface: 'fake', deploy_interface: 'direct', properties: { root_device: { name: v.disk } } });
      if (r.status !== 201) throw new Error(`enroll ${v.name}: ${JSON.stringify(r.body)}`);
      await api('POST', '/v1/ports', { address: v.mac, node_uuid: (r.body as NodeJson).uuid });
    }
    await verb(names, 'manage');
    await waitAll(names, 'manageable');
    const tClean = Date.now();
    const cleanLine = new FleetTimeline(tClean);
    await verb(names, 'provide');
    await waitAll(names, 'available', cleanLine);
    console.log(`cleaning ${count} nodes at once: ${((Date.now() - tClean) / 1000).toFixed(1)} s; per phase:\n${cleanLine.format()}`);
    for (const n of names) await setImage(n);

    // One node alone (it also fills the conductor's image cache: the origin is asked once for the whole bench).
    const t1 = Date.now();
    await verb([names[0]!], 'active');
    await waitAll([names[0]!], 'active');
    const oneNodeS = (Date.now() - t1) / 1000;
    console.log(`one node: ${oneNodeS.toFixed(1)} s`);
    await verb([names[0]!], 'deleted');
    await waitAll([names[0]!], 'available');
    await setImage(names[0]!);

    const cpu0 = process.cpuUsage();
    const hb0 = { ...ctx.heartbeats.stats };
    const bmc0 = { ...ctx.fleet.stats };
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const t2 = Date.now();
    listLatency.length = 0;
    const deployLine = new FleetTimeline(t2);
    await verb(names, 'active');
    const apiS = (Date.now() - t2) / 1000;
    await waitAll(names, 'active', deployLine);
    const allS = (Date.now() - t2) / 1000;
    loop.disable();
    const cpu = process.cpuUsage(cpu0);
    const cache = ctx.imageCache;
    console.log(`${count} deploy calls answered in ${apiS.toFixed(1)} s; per phase (s after the calls):\n${deployLine.format()}`);
    const sorted = [...listLatency].sort((x, y) => x - y);
    console.log(`GET /v1/nodes (all ${count}) while they deploy: ${sorted.length} calls, median ${((sorted[sorted.length >> 1] ?? 0) / 1000).toFixed(2)} s, ` +
      `max ${((sorted.at(-1) ?? 0) / 1000).toFixed(2)} s`);
    console.log(`conductor event-loop delay p50 ${(loop.percentile(50) / 1e6).toFixed(0)} ms, p99 ${(loop.percentile(99) / 1e6).toFixed(0)} ms, ` +
      `max ${(loop.max / 1e6).toFixed(0)} ms; BMC calls ${ctx.fleet.stats.bmcCalls - bmc0.bmcCalls} (waited for a slot ${ctx.fleet.stats.bmcWaited - bmc0.bmcWaited}); ` +
      `image cache: origin fetches ${cache?.master.stats.originFetches ?? 'n/a'}, hits ${cache?.master.stats.hits ?? 'n/a'}, ` +
      `served ${cache ? (cache.served.bytes / 2 ** 20).toFixed(0) : 'n/a'} MiB in ${cache?.served.requests ?? 'n/a'} requests`);
    const hb = ctx.heartbeats.stats;
    console.log(`${count} nodes at once: ${allS.toFixed(1)} s (${(allS / oneNodeS).toFixed(2)}x one node); ` +
      `conductor process CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s; heartbeats handed over ${hb.received - hb0.received}, ` +
      `deferred ${hb.deferred - hb0.deferred}, processing runs ${hb.runs - hb0.runs} (the rest coalesced)`);

    // Fast-track: cleaning leaves the agents running; the deploy reuses them.
    ctx.config.deploy.fast_track = true;
    await verb(names, 'deleted');
    await waitAll(names, 'available');
    for (const n of names) await setImage(n);
    const offBefore = fleet.nodes.map((v) => v.powerLog().length);
    const t3 = Date.now();
    const ftLine = new FleetTimeline(t3);
    await verb(names, 'active');
    await waitAll(names, 'active', ftLine);
    const ftS = (Date.now() - t3) / 1000;
    console.log(`fast-track deploy per phase:\n${ftLine.format()}`);
    const cycled = fleet.nodes.filter((v, i) => v.powerLog().slice(offBefore[i]).filter((t) => t === 'On').length > 1).length;
    console.log(`${count} nodes at once with fast-track: ${ftS.toFixed(1)} s (nodes power-cycled before the write: ${cycled})`);

    const ratio = origin.bytes() / img.size;
    const rusage = process.resourceUsage();
    console.log(`origin served ${(origin.bytes() / 2 ** 20).toFixed(0)} MiB for a ${imageMiB} MiB image; ` +
      `agents' peak total RSS ${peakAgentsMiB.toFixed(0)} MiB (highest single agent ${(fleet.peakAgentRssKiB() / 1024).toFixed(0)} MiB); ` +
      `conductor process max RSS ${(rusage.maxRSS / 1024).toFixed(0)} MiB; BMC calls ${ctx.fleet.stats.bmcCalls}`);
    console.log(`fleet-deploy nodes=${count} all_active_s=${allS.toFixed(1)} one_node_s=${oneNodeS.toFixed(1)} ` +
      `origin_ratio=${ratio.toFixed(2)} fast_track_all_active_s=${ftS.toFixed(1)} conductor_rss_mib=${Math.max(peakConductorMiB, rusage.maxRSS / 1024).toFixed(0)}`);
  } finally {
    await fleet?.stop();
    await conductor?.close();
    await origin?.close();
    await rm(dir, { recursive: true, force: true });
  }
}
