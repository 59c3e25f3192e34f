import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { have } from '../../common/exec.js';
import { IpmitoolPower } from '../../conductor/drivers/ipmitool.js';
import { syncPowerState } from '../../conductor/drivers/power-sync.js';
import type { DriverNode } from '../../conductor/drivers/types.js';
import { freeUdpPort, startIpmiSim, type IpmiSim } from '../../lab/ipmi-sim.js';

const skip = (await have('ipmi_sim')) && (await have('ipmitool')) ? false : 'ipmi_sim/ipmitool not installed';
let sim: IpmiSim | undefined;
after(async () => { await sim?.stop(); });
const fast = { minCommandIntervalS: 0, attemptIntervalS: 1, commandRetryTimeoutS: 2, retryBackoffS: 0.2, pollIntervalS: 0.1 };

function node(info: Record<string, unknown>, power_state: string | null): DriverNode {
  return { uuid: 'ps-1', driver: 'ipmi', driver_info: info, instance_info: {}, driver_internal_info: {}, properties: {}, ports: [], power_state };
}

test('a power change behind the conductor\'s back is recorded, not fought', { skip }, async () => {
  sim = await startIpmiSim({ powerOn: true });
  const power = new IpmitoolPower(fast);
  const first = await syncPowerState(node(sim.driverInfo(), null), power);
  assert.deepEqual({ changed: first.changed, to: first.to, event: first.event }, { changed: true, to: 'power on', event: undefined });
  const same = await syncPowerState(node(sim.driverInfo(), 'power on'), power);
  assert.equal(same.changed, false);
  await sim.setPowerOutOfBand(false); // someone pressed the power button
  const calls = sim.chassisLog().length;
  const r = await syncPowerState(node(sim.driverInfo(), 'power on'), power);
  assert.equal(r.changed, true);
  assert.equal(r.from, 'power on');
  assert.equal(r.to, 'power off');
  assert.equal(r.event?.severity, 'INFO');
  assert.match(r.event?.message ?? '', /found "power off" but recorded "power on".*left as it is/);
  assert.ok(sim.chassisLog().slice(calls).every((l) => !/ set /.test(l)), 'sync must only read the BMC');
  assert.equal(sim.isOn(), false);
});

test('repeated read failures end in maintenance after max retries', { skip }, async () => {
  const port = await freeUdpPort();
  const power = new IpmitoolPower({ ...fast, commandRetryTimeoutS: 0.5 });
  const n = node({ ipmi_address: '127.0.0.1', ipmi_port: port, ipmi_password: 'x', ipmi_cipher_suite: 3 }, 'power on');
  const r1 = await syncPowerState(n, power, { failures: 0, maxRetries: 2 });
  assert.deepEqual({ changed: r1.changed, failures: r1.failures, maintenance: r1.maintenance }, { changed: false, failures: 1, maintenance: false });
  assert.match(r1.error ?? '', /no response from the BMC/);
  const r2 = await syncPowerState(n, power, { failures: r1.failures, maxRetries: 2 });
  assert.equal(r2.maintenance, true);
  assert.equal(r2.to, null);
  assert.equal(r2.event?.severity, 'ERROR');
  assert.match(r2.event?.message ?? '', /max retries exceeded.*power failure/);
});
