/**
 * The agent's first lookup goes out once the NICs are known, not after the whole inventory: a vendor plugin whose
 * listHardwareInfo blocks (until the test opens a gate) does not hold the lookup, yet get_hardware_info answers
 * the plugin's full inventory once it is ready; with inspection configured, the inspection callback still gets the
 * full inventory before the lookup, and the lookup carries the UUID inspection answered (IPA's order).
 */
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { configFromFlags } from '../../agent/config.js';
import { startAgent, type RunningAgent } from '../../agent/main.js';
import { resetManagers } from '../../hardware-managers/dispatch.js';
import { startConductorStub } from '../fixtures/conductor-stub.js';
import { httpCall } from '../fixtures/agent-http.js';

const MAC = '52:54:00:5e:0a:01';

/** What the plugin and the test share (the plugin is imported by the agent's loader, in this process). */
interface Gate {
  open: () => void;
  opened: Promise<void>;
  calls: number;
  done: number;
}
const g = globalThis as { __bmtsSlowInventory?: Gate };

function newGate(): Gate {
  let open!: () => void;
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return { open, opened, calls: 0, done: 0 };
}

const PLUGIN = `
const nic = { name: 'eth9', mac_address: '${MAC.toUpperCase()}', ipv4_address: null, ipv6_address: null, has_carrier: true,
  lldp: null, vendor: null, product: null, client_id: null, biosdevname: null, speed_mbps: null, pci_address: null, driver: null };
export default (api) => ({
  name: 'SlowInventoryManager',
  evaluateHardwareSupport: () => api.HardwareSupport.SERVICE_PROVIDER,
  listNetworkInterfaces: () => [nic],
  async listHardwareInfo() {
    const gate = globalThis.__bmtsSlowInventory;
    gate.calls++;
    await gate.opened;
    gate.done++;
    return { interfaces: [nic], cpu: { model_name: 'slow', frequency: null, count: 1, architecture: 'x86_64', flags: [], socket_count: 1 },
      disks: [], memory: { total: 1, physical_mb: 1 }, bmc_address: null, bmc_v6address: null,
      system_vendor: { product_name: 'SlowBox', serial_number: 'SLOW-1', manufacturer: 'Slow Inc.',
        firmware: { vendor: '', version: '', build_date: '' } },
      boot: { current_boot_mode: 'bios', pxe_interface: null }, hostname: 'slow' };
  },
});
`;

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  g.__bmtsSlowInventory?.open();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  resetManagers();
});

async function pluginDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-early-lookup-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'slow-inventory.mjs'), PLUGIN);
  return dir;
}

function agentFlags(dir: string, apiUrl: string, extra: Record<string, string | number | boolean> = {}): Record<string, string | number | boolean> {
  return {
    'ipa-api-url': apiUrl, 'ipa-listen-host': '127.0.0.1', 'ipa-listen-port': 0, 'ipa-advertise-host': '127.0.0.1',
    'ipa-enable-auto-tls': false, 'ipa-hardware-manager-dir': dir, 'ipa-log-file': join(dir, 'agent.log'),
    'ipa-lookup-interval': 1, ...extra,
  };
}

async function start(flags: Record<string, string | number | boolean>): Promise<RunningAgent> {
  resetManagers();
  const agent = await startAgent(configFromFlags(flags));
  cleanups.push(() => agent.stop());
  return agent;
}

/** Rejects after `ms` unless `p` settles first: a lookup waiting for the gate never would. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(what)), ms); }),
  ]);
}

test('the lookup does not wait for a slow listHardwareInfo; get_hardware_info still answers the full inventory', { timeout: 120_000 }, async () => {
  const gate = newGate();
  g.__bmtsSlowInventory = gate;
  const stub = await startConductorStub();
  cleanups.push(() => stub.close());
  const dir = await pluginDir();

  const agent = await within(start(agentFlags(dir, stub.url)), 60_000, 'the agent waited for the inventory before its lookup');
  // Looked up, found and serving while the plugin's inventory is still blocked.
  assert.equal(gate.done, 0, 'the inventory finished before the lookup: the test proves nothing');
  assert.equal(stub.lookups.length, 1);
  assert.equal(stub.lookups[0]?.query.addresses, MAC, 'the lookup carries the MACs listNetworkInterfaces gave');
  assert.equal(stub.lookups[0]?.query.node_uuid, undefined);
  assert.equal(agent.node?.uuid, stub.nodeUuid);

  // The full inventory is still there for whoever asks: get_hardware_info waits for the plugin and returns it.
  const token = encodeURIComponent(agent.token() ?? '');
  const answer = httpCall(`http://127.0.0.1:${agent.port}/v1/commands/?wait=true&agent_token=${token}`, {
    method: 'POST', body: { name: 'poll.get_hardware_info', params: {} },
  });
  setTimeout(() => gate.open(), 200);
  const r = await answer;
  assert.equal(r.status, 200, r.text);
  const result = (r.json as { command_result?: { system_vendor?: { manufacturer?: string }; interfaces?: { mac_address: string }[] } })
    .command_result;
  assert.equal(result?.system_vendor?.manufacturer, 'Slow Inc.');
  assert.deepEqual(result?.interfaces?.map((i) => i.mac_address), [MAC.toUpperCase()]);
  assert.ok(gate.done >= 1);
});

test('with inspection the callback gets the full inventory first, and the lookup uses the UUID it answered', { timeout: 120_000 }, async () => {
  const gate = newGate();
  g.__bmtsSlowInventory = gate;
  const stub = await startConductorStub();
  cleanups.push(() => stub.close());
  const inspectedUuid = randomUUID();
  const posts: Array<{ body: Record<string, unknown>; lookupsBefore: number }> = [];
  const callback = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push({ body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>, lookupsBefore: stub.lookups.length });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ uuid: inspectedUuid }));
    });
  });
  await new Promise<void>((r) => callback.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => callback.close(r)));
  const callbackUrl = `http://127.0.0.1:${(callback.address() as AddressInfo).port}/v1/continue_inspection`;
  const dir = await pluginDir();

  setTimeout(() => gate.open(), 500);
  const agent = await start(agentFlags(dir, stub.url, { 'ipa-inspection-callback-url': callbackUrl, 'ipa-inspection-collectors': 'default' }));
  assert.equal(posts.length, 1);
  const inventory = posts[0]?.body.inventory as { system_vendor?: { serial_number?: string }; cpu?: { model_name?: string } } | undefined;
  assert.equal(inventory?.system_vendor?.serial_number, 'SLOW-1', 'inspection got the slow manager\'s full inventory');
  assert.equal(inventory?.cpu?.model_name, 'slow');
  assert.equal(posts[0]?.lookupsBefore, 0, 'inspection comes before the lookup');
  assert.equal(stub.lookups[0]?.query.node_uuid, inspectedUuid);
  assert.equal(stub.lookups[0]?.query.addresses, MAC);
  assert.equal(agent.inspection?.uuid, inspectedUuid);
});
