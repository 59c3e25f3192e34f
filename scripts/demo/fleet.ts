/**
 * `npm run demo -- --nodes N` (N > 1): a fleet of virtual nodes (lab/virtual-nodes.ts: a Redfish BMC each, the
 * agent as a process on this host, a loop-device disk each) enrolled on a lab conductor (noauth, plain HTTP on
 * 127.0.0.1), then manage → provide (automated cleaning) → deploy a small whole-disk image on all of them at
 * once, with fast-track on: the agents stay up after cleaning and the deploy reuses them without a power cycle.
 * `--keep` leaves everything up until Ctrl-C for the `baremetal` CLI.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startConductor, type RunningConductor } from '../../conductor/main.js';
import { startVirtualNodes, type VirtualFleet } from '../../lab/virtual-nodes.js';
import { buildRawDiskImage, fileDigest, serveImages, type ImageServer } from '../../test/fixtures/images.js';

interface NodeJson { uuid: string; name: string; provision_state: string; last_error: string | null }

export async function runFleetDemo(o: { nodes: number; keep: boolean; apiPort: number | undefined;
  say: (line: string) => void }): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-demo-fleet-'));
  let conductor: RunningConductor | undefined;
  let fleet: VirtualFleet | undefined;
  let images: ImageServer | undefined;
  const t0 = Date.now();
  const lap = (): string => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  try {
    const img = await buildRawDiskImage(dir, { sizeMiB: 16, name: 'demo.raw' });
    const sha = await fileDigest(img.path, 'sha256');
    images = await serveImages(dir);
    conductor = await startConductor({
      host: '127.0.0.1', port: o.apiPort ?? 0, data_dir: join(dir, 'conductor-data'), require_tls: false,
      auth: { strategy: 'noauth' }, tls: { mode: 'off' }, enabled_hardware_types: ['redfish'], heartbeat_timeout: 10,
      agent: { power_off_poll_attempts: 20, power_off_poll_interval: 0.5, command_wait_interval: 1, command_timeout: 120,
        max_command_attempts: 3, command_wait_attempts: 300, deploy_logs_collect: 'on_failure' },
      deploy: { fast_track: true, fast_track_timeout: 60 },
    });
    const c = conductor;
    o.say(`conductor on ${c.url} (noauth, lab only) [${lap()}]`);
    fleet = await startVirtualNodes({ count: o.nodes, apiUrl: c.url, logDir: join(dir, 'agents'), diskMiB: 48 });
    o.say(`${o.nodes} virtual nodes: a Redfish BMC, a loop disk and a MAC each [${lap()}]`);
    const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> => {
      const r = await fetch(`${c.url}${path}`, { method, headers: { 'X-OpenStack-Ironic-API-Version': '1.82',
        ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      const text = await r.text();
      return { status: r.status, body: text ? JSON.parse(text) as unknown : undefined };
    };
    const names = fleet.nodes.map((n) => n.name);
    const all = async (target: string, want: string): Promise<void> => {
      const rs = await Promise.all(names.map((n) => api('PUT', `/v1/nodes/${n}/states/provision`, { target })));
      const bad = rs.find((r) => r.status !== 202);
      if (bad) throw new Error(`${target}: ${JSON.stringify(bad.body)}`);
      for (let last = '';;) {
        const nodes = ((await api('GET', '/v1/nodes?fields=name,provision_state,last_error')).body as { nodes: NodeJson[] }).nodes;
        const failed = nodes.find((n) => /failed|error/.test(n.provision_state));
        if (failed) throw new Error(`${failed.name}: ${failed.provision_state}: ${failed.last_error}`);
        const done = nodes.filter((n) => n.provision_state === want).length;
        const line = `  ${target}: ${done}/${nodes.length} ${want}`;
        if (line !== last) o.say(`${line} [${lap()}]`);
        last = line;
        if (done === nodes.length) return;
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    for (const v of fleet.nodes) {
      const r = await api('POST', '/v1/nodes', { name: v.name, driver: 'redfish', driver_info: v.driverInfo,
        boot_interface: 'fake', deploy_interface: 'direct', properties: { root_device: { name: v.disk } },
        instance_info: { image_source: images.url('demo.raw'), image_os_hash_algo: 'sha256', image_os_hash_value: sha } });
      if (r.status !== 201) throw new Error(`enroll ${v.name}: ${JSON.stringify(r.body)}`);
      await api('POST', '/v1/ports', { address: v.mac, node_uuid: (r.body as NodeJson).uuid });
    }
    o.say(`enrolled ${names.length} nodes (redfish / fake boot / direct deploy) [${lap()}]`);
    await all('manage', 'manageable');
    await all('provide', 'available');
    const up = fleet.nodes.filter((v) => v.agentRunning()).length;
    o.say(`cleaned; fast-track keeps ${up}/${names.length} agents up and heartbeating [${lap()}]`);
    const before = fleet.nodes.map((v) => v.ramdiskBoots());
    await all('active', 'active');
    const reboots = fleet.nodes.filter((v, i) => v.ramdiskBoots() !== before[i]).length;
    o.say(`all ${names.length} nodes active; ramdisk boots for the deploy: ${reboots} (fast-track) [${lap()}]`);
    if (o.keep) {
      o.say(`Up until Ctrl-C. Try: baremetal --os-auth-type none --os-endpoint ${c.url} node list`);
      await new Promise<void>((r) => { process.once('SIGINT', () => r()); process.once('SIGTERM', () => r()); });
    }
    return 0;
  } finally {
    await fleet?.stop();
    await conductor?.close();
    await images?.close();
    await rm(dir, { recursive: true, force: true });
  }
}
