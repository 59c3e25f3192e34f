/**
 * Fleet limits and fast-track rules without processes: the semaphores, the ConcurrentActionLimit admission (with
 * requests racing), BMC bounds per address, and Ironic's fast-track decisions (enabled / able / agent alive).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildConfig } from '../../conductor/config.js';
import type { ConductorContext } from '../../conductor/context.js';
import { bmcAddress } from '../../conductor/drivers/bmc-bounds.js';
import type { DriverNode } from '../../conductor/drivers/types.js';
import { agentIsAlive, fastTrackAble, fastTrackEnabled } from '../../conductor/fast-track.js';
import { FleetState, Semaphore } from '../../conductor/fleet.js';
import type { NodeQuery, NodeRecord, Store } from '../../conductor/store/types.js';

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

test('Semaphore: never more than its size at once, FIFO hand-over', async () => {
  const s = new Semaphore(2);
  let active = 0;
  let peak = 0;
  const order: number[] = [];
  await Promise.all(Array.from({ length: 7 }, (_, i) => s.run(async () => {
    active++;
    peak = Math.max(peak, active);
    order.push(i);
    await tick();
    active--;
  })));
  assert.equal(peak, 2);
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6]);
  assert.equal(s.inUse, 0);
});

/** A store whose only ability is listing nodes by provision state (what admission reads). */
function fakeStore(states: string[]): Store {
  return {
    listNodes: async (q: NodeQuery) => states.filter((s) => q.provision_state?.includes(s)).map((s) => ({ provision_state: s }) as NodeRecord),
  } as unknown as Store;
}

test('admit: parallel requests past max_concurrent_deploy get ConcurrentActionLimit (503), exactly the rest pass', async () => {
  const config = buildConfig({ conductor: { max_concurrent_deploy: 3 } });
  const fleet = new FleetState(config);
  const states = ['available', 'deploying', 'active'];
  const store = fakeStore(states);
  const results = await Promise.allSettled(Array.from({ length: 6 }, () => fleet.admit(store, 'provisioning', async () => {
    await tick(); // the state change takes a moment, as a store write does
    states.push('wait call-back');
  })));
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 2, 'one deploying already: two more fit');
  const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(refused.length, 4);
  const e = refused[0]!.reason as { status: number; code: string; message: string };
  assert.equal(e.status, 503);
  assert.equal(e.code, 'ConcurrentActionLimit');
  assert.equal(e.message, 'Unable to process request at this time. The concurrent action limit for provisioning has been ' +
    'reached. Please contact your administrator and try again later.');
  assert.equal(fleet.stats.rejected, 4);
});

test('admit: cleaning and unprovisioning count deleting, cleaning and clean wait against max_concurrent_clean', async () => {
  const fleet = new FleetState(buildConfig({ conductor: { max_concurrent_clean: 2 } }));
  await assert.rejects(fleet.admit(fakeStore(['clean wait', 'deleting']), 'cleaning', async () => undefined),
    /concurrent action limit for cleaning/);
  await assert.rejects(fleet.admit(fakeStore(['cleaning', 'clean wait']), 'unprovisioning', async () => undefined),
    /concurrent action limit for unprovisioning/);
  await fleet.admit(fakeStore(['clean wait', 'wait call-back', 'deploying']), 'cleaning', async () => undefined);
});

test('bmcCall: at most max_bmc_calls_per_address per BMC and max_bmc_calls in total', async () => {
  const fleet = new FleetState(buildConfig({ conductor: { max_bmc_calls: 3, max_bmc_calls_per_address: 1 } }));
  const perAddr = new Map<string, number>();
  let total = 0;
  let peakTotal = 0;
  let peakAddr = 0;
  await Promise.all(Array.from({ length: 12 }, (_, i) => fleet.bmcCall(`bmc-${i % 4}`, async () => {
    const k = `bmc-${i % 4}`;
    perAddr.set(k, (perAddr.get(k) ?? 0) + 1);
    total++;
    peakTotal = Math.max(peakTotal, total);
    peakAddr = Math.max(peakAddr, perAddr.get(k)!);
    await tick();
    perAddr.set(k, perAddr.get(k)! - 1);
    total--;
  })));
  assert.equal(peakAddr, 1);
  assert.equal(peakTotal, 3);
  assert.equal(fleet.stats.bmcCalls, 12);
});

test('bmcAddress: ipmi address+port, Redfish host:port, else the node', () => {
  const n = (driver_info: Record<string, unknown>): DriverNode =>
    ({ uuid: 'u1', driver: 'x', driver_info, instance_info: {}, driver_internal_info: {}, properties: {}, ports: [] }) as DriverNode;
  assert.equal(bmcAddress(n({ ipmi_address: '10.0.0.5', ipmi_port: 6230 })), 'ipmi:10.0.0.5:6230');
  assert.equal(bmcAddress(n({ ipmi_address: '10.0.0.5' })), 'ipmi:10.0.0.5:623');
  assert.equal(bmcAddress(n({ redfish_address: 'https://bmc.example:8443', redfish_system_id: '/x' })), 'redfish:bmc.example:8443');
  assert.equal(bmcAddress(n({ redfish_address: 'bmc.example' })), 'redfish:bmc.example');
  assert.equal(bmcAddress(n({})), 'node:u1');
});

function ctxWith(fastTrack: boolean, timeout = 300): ConductorContext {
  return { config: buildConfig({ deploy: { fast_track: fastTrack, fast_track_timeout: timeout } }) } as unknown as ConductorContext;
}

function node(extra: Partial<NodeRecord> = {}, dii: Record<string, unknown> = {}): NodeRecord {
  return { uuid: 'u1', driver_info: {}, driver_internal_info: dii, last_error: null, provision_state: 'available',
    ...extra } as unknown as NodeRecord;
}

test('fast-track enabled: driver_info.fast_track (strict boolean string) overrides [deploy]fast_track', () => {
  assert.equal(fastTrackEnabled(ctxWith(false), node()), false);
  assert.equal(fastTrackEnabled(ctxWith(true), node()), true);
  assert.equal(fastTrackEnabled(ctxWith(false), node({ driver_info: { fast_track: 'yes' } })), true);
  assert.equal(fastTrackEnabled(ctxWith(true), node({ driver_info: { fast_track: 'False' } })), false);
  assert.throws(() => fastTrackEnabled(ctxWith(true), node({ driver_info: { fast_track: 'maybe' } })),
    /Unrecognized value 'maybe'/);
});

test('fast-track able: not with a last_error (a recent failure always gets a clean boot) nor pending firmware updates', () => {
  assert.equal(fastTrackAble(ctxWith(true), node()), true);
  assert.equal(fastTrackAble(ctxWith(true), node({ last_error: 'boom' })), false);
  assert.equal(fastTrackAble(ctxWith(true), node({}, { firmware_updates: [{}] })), false);
  assert.equal(fastTrackAble(ctxWith(true), node({ driver_info: { fast_track: 'bogus' } })), false);
});

test('agent alive: an agent_url and a heartbeat within fast_track_timeout', () => {
  const now = Date.parse('2026-01-01T00:10:00Z');
  const at = (s: number): string => new Date(now - s * 1000).toISOString().replace(/Z$/, '000+00:00');
  const c = ctxWith(true, 60);
  assert.equal(agentIsAlive(c, node({}, { agent_url: 'http://127.0.0.1:1', agent_last_heartbeat: at(30) }), now), true);
  assert.equal(agentIsAlive(c, node({}, { agent_url: 'http://127.0.0.1:1', agent_last_heartbeat: at(61) }), now), false);
  assert.equal(agentIsAlive(c, node({}, { agent_last_heartbeat: at(1) }), now), false, 'powered off since: no agent_url');
  assert.equal(agentIsAlive(c, node({}, { agent_url: 'http://127.0.0.1:1' }), now), false, 'never heartbeated');
});
