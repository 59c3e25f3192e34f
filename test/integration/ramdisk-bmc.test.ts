/**
 * In-band BMC discovery in the deploy ramdisk: the VM's KCS interface is wired to ipmi_sim (QEMU's
 * `ipmi-bmc-extern`), whose LAN configuration reports an address and a MAC; the agent's inventory must report
 * them as `bmc_address` and `bmc_mac`, read through the guest's /dev/ipmi0 as IPA does (`ipmitool lan print`).
 * The agent runs standalone (no conductor): the host asks it for `get_hardware_info` directly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startIpmiSim, type IpmiSim } from '../../lab/ipmi-sim.js';
import { have } from '../../common/exec.js';
import { eventually } from '../fixtures/agent-http.js';
import { bootRamdiskVm, ensureRamdisk, type AgentVm } from '../fixtures/ramdisk.js';

const BMC = { ip: '192.0.2.77', mac: '52:54:00:be:ef:01' };

interface BmcFacts { bmc_address?: string | null; bmc_mac?: string; bmc_v6address?: string | null }

/** The agent's inventory, asked for directly (standalone: no token), retried while the VM still boots. */
function hardwareInfo(agentUrl: string, timeoutMs: number): Promise<BmcFacts> {
  return eventually(async () => {
    const r = await fetch(`${agentUrl}/v1/commands/?wait=true`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'poll.get_hardware_info', params: {} }),
    });
    const body = await r.json() as { command_status?: string; command_result?: BmcFacts; command_error?: unknown };
    assert.equal(body.command_status, 'SUCCEEDED', JSON.stringify(body.command_error));
    return body.command_result ?? {};
  }, 'get_hardware_info from the ramdisk agent', timeoutMs);
}

test('the ramdisk agent reports the BMC address and MAC it reads in-band over KCS', { timeout: 10 * 60_000 }, async (t) => {
  if (!(await have('ipmi_sim'))) {
    t.skip('ipmi_sim (openipmi) is not installed');
    return;
  }
  const built = await ensureRamdisk();
  if (!built.ok) {
    t.skip(built.reason);
    return;
  }
  let sim: IpmiSim | undefined;
  let avm: AgentVm | undefined;
  let failed = true;
  try {
    sim = await startIpmiSim({ inBand: BMC });
    assert.ok(sim.kcsQemuArgs);
    avm = await bootRamdiskVm({
      files: { kernel: built.kernel, initramfs: built.initramfs, manifest: built.manifest },
      conductorPort: 9, // unused: standalone, the agent looks nobody up
      append: ['ipa-standalone=1'],
      vm: { extraArgs: sim.kcsQemuArgs },
    });
    const inv = await hardwareInfo(avm.agentUrl, 5 * 60_000);
    assert.equal(inv.bmc_address, BMC.ip);
    assert.equal(inv.bmc_mac, BMC.mac);
    assert.equal(inv.bmc_v6address, '::/0', 'ipmi_sim has no IPv6 LAN parameters: IPA reports ::/0 then');
    failed = false;
  } finally {
    await avm?.dispose(failed);
    await sim?.stop();
  }
});
