/**
 * The deploy ramdisk boots in QEMU (TCG, direct kernel boot, restricted user network) and its agent finds our
 * conductor on the host: the node is enrolled (fake-hardware, a port with the VM's MAC) and waits in `clean wait`;
 * the agent looks it up by MAC, heartbeats with the hostfwd'ed callback URL (the conductor then starts cleaning),
 * and `poll.get_hardware_info` from the host returns the VM's own inventory (its virtio disk, MAC and memory).
 * A vendor plugin baked in with --add-manager is imported by the agent executable and its clean step reported.
 * A recording proxy between guest and conductor shows what crossed the wire. The serial log is kept (and its
 * path printed) when anything fails.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildRamdisk, REPO_ROOT } from '../../ramdisk-build/build.js';
import { startTestConductor, type TestConductor } from '../fixtures/conductor.js';
import { bootRamdiskVm, ensureRamdisk, startRecordingProxy, type AgentVm, type RecordingProxy } from '../fixtures/ramdisk.js';

const MAC = '52:54:00:b3:7a:42';
/** A vendor plugin as a vendor would ship it: a plain ES module in a directory given to --add-manager. */
const PLUGIN = `
export default {
  name: 'RamdiskTestHardwareManager',
  versionName: 'ramdisk_test_hardware_manager',
  version: '1.0',
  evaluateHardwareSupport() { return 3; },
  getCleanSteps() {
    return [{ step: 'ramdisk_test_step', priority: 0, interface: 'deploy', reboot_requested: false, abortable: true }];
  },
  async ramdisk_test_step() { return { ok: true }; },
};
`;
const DISK_MIB = 64;
const MEMORY_MIB = 512;

async function until<T>(what: string, timeoutMs: number, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface Inventory {
  interfaces?: Array<{ name?: string; mac_address?: string }>;
  disks?: Array<{ name?: string; size?: number }>;
  memory?: { total?: number; physical_mb?: number };
}

test('ramdisk boots in QEMU, looks itself up at the conductor, heartbeats and reports its inventory', { timeout: 15 * 60_000 }, async (t) => {
  if (!existsSync(join(REPO_ROOT, 'agent/main.ts'))) {
    t.skip('agent/main.ts does not exist yet: the ramdisk would run the stand-in agent');
    return;
  }
  const built = await ensureRamdisk();
  if (!built.ok) {
    t.skip(built.reason);
    return;
  }
  assert.equal(built.manifest.agent.entry, 'agent/main.ts');
  // The same ramdisk plus a vendor plugin baked in with --add-manager (its own small initramfs segment).
  const work = await mkdtemp(join(tmpdir(), 'bmts-ramdisk-boot-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  await mkdir(join(work, 'vendor'));
  await writeFile(join(work, 'vendor', 'ramdisk-test-manager.mjs'), PLUGIN);
  const withPlugin = await buildRamdisk({ out: join(work, 'ramdisk'), addManagers: [join(work, 'vendor')], say: () => undefined });
  assert.deepEqual(withPlugin.manifest.hardware_managers_added, ['/usr/lib/baremetal-agent/managers/ramdisk-test-manager.mjs']);
  const files = { kernel: withPlugin.kernel, initramfs: withPlugin.initramfs, manifest: withPlugin.manifest };

  let conductor: TestConductor | null = null;
  let proxy: RecordingProxy | null = null;
  let avm: AgentVm | null = null;
  let failed = true;
  try {
    // Plain: the recording proxy in front of the API speaks HTTP (the demo and e2e cover HTTPS + auth).
    // Fast-track: the agent stays up after cleaning. Without it cleaning ends with standby.power_off, and
    // get_hardware_info below (409 while the clean step runs) raced it: a quick erase_devices_metadata left only the
    // moment between the step's end and the power-off, and the test lost that race once the agent started faster.
    conductor = await startTestConductor({ plain: true, config: { clean_callback_timeout: 900, deploy: { fast_track: true } } });
    const c = conductor;
    const node = async (): Promise<{ provision_state: string; last_error: string | null }> =>
      (await c.api('GET', `/v1/nodes/${uuid}`)).body as { provision_state: string; last_error: string | null };
    const created = await c.api('POST', '/v1/nodes', { driver: 'fake-hardware', deploy_interface: 'direct', name: 'ramdisk-vm' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const uuid = (created.body as { uuid: string }).uuid;
    const port = await c.api('POST', '/v1/ports', { address: MAC, node_uuid: uuid });
    assert.equal(port.status, 201, JSON.stringify(port.body));
    for (const [target, state] of [['manage', 'manageable'], ['provide', 'clean wait']] as const) {
      const r = await c.api('PUT', `/v1/nodes/${uuid}/states/provision`, { target });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      await until(`node ${state}`, 60_000, async () => ((await node()).provision_state === state ? true : undefined));
    }

    proxy = await startRecordingProxy(c.url);
    const wire = proxy;
    avm = await bootRamdiskVm({
      files,
      conductorPort: wire.port,
      mac: MAC,
      diskMiB: DISK_MIB,
      memoryMiB: MEMORY_MIB,
      append: ['ipa-lookup-interval=1'],
    });
    const vm = avm.vm;
    await vm.waitForSerial(/bmts-supervise: starting baremetal-agent/, 180_000);
    const lookup = await until('a successful lookup at the conductor', 180_000, () => {
      if (!vm.running()) throw new Error(`QEMU exited (serial log: ${vm.serialLog})`);
      return wire.lookups().find((l) => l.status === 200);
    });
    const addresses = (lookup.query.addresses ?? '').split(',').map((a) => a.toLowerCase());
    assert.ok(addresses.includes(MAC), `lookup addresses ${lookup.query.addresses} include the VM's MAC ${MAC}`);
    const answer = lookup.response as { node?: { uuid?: string }; config?: { agent_token?: string } } | null;
    assert.equal(answer?.node?.uuid, uuid, 'the conductor found the enrolled node by MAC');
    const token = answer?.config?.agent_token ?? '';
    assert.ok(token.length > 10 && token !== '******', 'the first lookup hands out the agent token');

    const hb = await until('an accepted heartbeat', 120_000, () => wire.heartbeats().find((h) => h.status === 202));
    assert.equal(hb.path, `/v1/heartbeat/${uuid}`);
    assert.equal(hb.body?.callback_url, avm.agentUrl, 'callback_url is the hostfwd URL from ipa-advertise-*');
    assert.equal(hb.body?.agent_token, token);
    // The heartbeat drove the state machine: cleaning started (and may already be over), with the clean steps
    // the agent reported, the baked-in vendor plugin's among them.
    const dii = await until('the conductor acting on the heartbeat (clean steps fetched)', 120_000, async () => {
      const n = (await c.api('GET', `/v1/nodes/${uuid}`)).body as { provision_state: string; driver_internal_info?: Record<string, unknown> };
      const d = n.driver_internal_info ?? {};
      // The steps are cached from the first heartbeat until cleaning ends (the node is back in `clean wait` while a
      // step runs on the agent), so only their presence is asked for, not a state that may last milliseconds.
      return Array.isArray(d.agent_cached_clean_steps) ? d : undefined;
    });
    const steps = dii.agent_cached_clean_steps as Array<{ step?: string }>;
    assert.ok(steps.some((x) => x.step === 'ramdisk_test_step'), `plugin step among the agent's clean steps: ${JSON.stringify(steps.map((x) => x.step))}`);
    assert.equal((dii.hardware_manager_version as Record<string, string> | undefined)?.ramdisk_test_hardware_manager, '1.0');

    // A clean step may be running on the agent (one command at a time): a busy agent answers 409, retry.
    const inv = await until('poll.get_hardware_info', 180_000, async () => {
      const res = await fetch(`${avm?.agentUrl}/v1/commands/?wait=true&agent_token=${encodeURIComponent(token)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'poll.get_hardware_info', params: {} }),
        signal: AbortSignal.timeout(120_000),
      });
      const body = (await res.json()) as { command_status?: string; command_result?: Inventory; command_error?: unknown };
      if (res.status === 409) return undefined;
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.command_status, 'SUCCEEDED', JSON.stringify(body.command_error));
      return body.command_result ?? {};
    });
    const nic = (inv.interfaces ?? []).find((i) => i.mac_address?.toLowerCase() === MAC);
    assert.ok(nic, `an interface with MAC ${MAC} in ${JSON.stringify(inv.interfaces)}`);
    const disk = (inv.disks ?? []).find((d) => d.size === DISK_MIB * 2 ** 20);
    assert.ok(disk, `the ${DISK_MIB} MiB virtio disk in ${JSON.stringify(inv.disks)}`);
    assert.match(disk.name ?? '', /^\/dev\/vd[a-z]$/);
    const total = inv.memory?.total ?? 0;
    assert.ok(total > (MEMORY_MIB / 2) * 2 ** 20 && total <= MEMORY_MIB * 2 ** 20, `memory.total ${total} fits -m ${MEMORY_MIB}`);

    // The agent knows it runs in the ramdisk (the marker file the build writes).
    assert.match(vm.readSerial(), /"inRamdisk":true/);
    const after = (await c.api('GET', `/v1/nodes/${uuid}?fields=provision_state,clean_step,last_error`)).body;
    t.diagnostic(`node after the heartbeat: ${JSON.stringify(after)}`);
    failed = false;
  } finally {
    if (failed && avm) {
      t.diagnostic(`serial log kept: ${avm.vm.serialLog}`);
      console.error(`ramdisk-boot: serial log kept at ${avm.vm.serialLog}`);
      console.error(avm.vm.readSerial().split('\n').slice(-40).join('\n'));
    }
    await avm?.dispose(failed);
    await proxy?.close();
    await conductor?.close();
  }
});
