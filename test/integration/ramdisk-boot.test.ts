/**
 * The deploy ramdisk boots in QEMU (TCG, direct kernel boot, restricted user network) and its agent finds the
 * conductor on the host: lookup by the VM's MAC, heartbeats advertising the hostfwd'ed callback URL, and
 * `poll.get_hardware_info` from the host returns the VM's own inventory (its virtio disk, its MAC, its memory).
 * The serial log is kept (and its path printed) when anything fails.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REPO_ROOT } from '../../ramdisk-build/build.js';
import { startConductorStub, type ConductorStub } from '../fixtures/conductor-stub.js';
import { bootRamdiskVm, ensureRamdisk, type AgentVm } from '../fixtures/ramdisk.js';

const MAC = '52:54:00:b3:7a:42';
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

test('ramdisk boots in QEMU, looks itself up, heartbeats and reports its inventory', { timeout: 15 * 60_000 }, async (t) => {
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

  let stub: ConductorStub | null = null;
  let avm: AgentVm | null = null;
  let failed = true;
  try {
    stub = await startConductorStub({ heartbeatTimeout: 30 });
    const conductor = stub;
    avm = await bootRamdiskVm({
      files: built,
      conductorPort: conductor.port,
      mac: MAC,
      diskMiB: DISK_MIB,
      memoryMiB: MEMORY_MIB,
      append: ['ipa-lookup-interval=1'],
    });
    const vm = avm.vm;

    await vm.waitForSerial(/bmts-supervise: starting baremetal-agent/, 180_000);
    const lookup = await until('a successful lookup at the conductor', 180_000, () => {
      if (!vm.running()) throw new Error(`QEMU exited (serial log: ${vm.serialLog})`);
      return conductor.lookups.find((l) => l.status === 200);
    });
    const addresses = (lookup.query.addresses ?? '').split(',').map((a) => a.toLowerCase());
    assert.ok(addresses.includes(MAC), `lookup addresses ${lookup.query.addresses} include the VM's MAC ${MAC}`);

    const hb = await until('a heartbeat', 120_000, () => conductor.heartbeats[0]);
    assert.equal(hb.uuid, conductor.nodeUuid);
    assert.equal(hb.body.callback_url, avm.agentUrl, 'callback_url is the hostfwd URL from ipa-advertise-*');
    assert.equal(hb.body.agent_token, conductor.token);

    const res = await fetch(`${avm.agentUrl}/v1/commands/?wait=true&agent_token=${encodeURIComponent(conductor.token)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'poll.get_hardware_info', params: {} }),
      signal: AbortSignal.timeout(120_000),
    });
    const body = (await res.json()) as { command_status?: string; command_result?: Inventory; command_error?: unknown };
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.command_status, 'SUCCEEDED', JSON.stringify(body.command_error));
    const inv = body.command_result ?? {};
    const nic = (inv.interfaces ?? []).find((i) => i.mac_address?.toLowerCase() === MAC);
    assert.ok(nic, `an interface with MAC ${MAC} in ${JSON.stringify(inv.interfaces)}`);
    const disk = (inv.disks ?? []).find((d) => d.size === DISK_MIB * 2 ** 20);
    assert.ok(disk, `the ${DISK_MIB} MiB virtio disk in ${JSON.stringify(inv.disks)}`);
    assert.match(disk.name ?? '', /^\/dev\/vd[a-z]$/);
    const total = inv.memory?.total ?? 0;
    assert.ok(total > (MEMORY_MIB / 2) * 2 ** 20 && total <= MEMORY_MIB * 2 ** 20, `memory.total ${total} fits -m ${MEMORY_MIB}`);

    // The agent knows it runs in the ramdisk (marker written by the build) and logs to the supervisor's file.
    assert.match(vm.readSerial(), /inRamdisk"?:true/);
    failed = false;
  } finally {
    if (failed && avm) {
      t.diagnostic(`serial log kept: ${avm.vm.serialLog}`);
      console.error(`ramdisk-boot: serial log kept at ${avm.vm.serialLog}`);
      console.error(avm.vm.readSerial().split('\n').slice(-40).join('\n'));
    }
    await avm?.dispose(failed);
    await stub?.close();
  }
});
