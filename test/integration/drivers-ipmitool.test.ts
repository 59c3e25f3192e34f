import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { have } from '../../common/exec.js';
import { DriverOperationError, PowerStateFailure } from '../../conductor/errors.js';
import { IpmiCommandFailure, IpmitoolManagement, IpmitoolPower, type IpmitoolOptions } from '../../conductor/drivers/ipmitool.js';
import type { DriverNode } from '../../conductor/drivers/types.js';
import { freeUdpPort, startIpmiSim, type IpmiSim } from '../../lab/ipmi-sim.js';

const fast: Partial<IpmitoolOptions> = {
  commandRetryTimeoutS: 10, minCommandIntervalS: 0, attemptIntervalS: 1, retryBackoffS: 0.2,
  powerStateChangeTimeoutS: 10, softPowerOffTimeoutS: 10, pollIntervalS: 0.1,
};

function node(info: Record<string, unknown>, extra: Partial<DriverNode> = {}): DriverNode {
  return {
    uuid: '1be26c0b-03f2-4d2e-ae87-c02d7f33c123', driver: 'ipmi', driver_info: info, instance_info: {},
    driver_internal_info: {}, properties: {}, ports: [], ...extra,
  };
}

const missing = !(await have('ipmi_sim')) || !(await have('ipmitool'));
const skip = missing ? 'ipmi_sim/ipmitool not installed (apt: openipmi ipmitool)' : false;
let sim: IpmiSim;

before(async () => { if (!missing) sim = await startIpmiSim({ password: 'S3cret-pw' }); });
after(async () => { await sim?.stop(); });

test('power status, on, off, reboot and soft off against ipmi_sim', { skip }, async () => {
  const power = new IpmitoolPower(fast);
  const n = node(sim.driverInfo());
  await power.validate(n);
  assert.equal(await power.getPowerState(n), 'power off');
  await power.setPowerState(n, 'power on');
  assert.equal(sim.isOn(), true);
  assert.equal(await power.getPowerState(n), 'power on');
  const before = sim.chassisLog().length;
  await power.setPowerState(n, 'rebooting');
  const ops = sim.chassisLog().slice(before).map((l) => l.split(' ').slice(1).join(' '));
  // off then on, confirmed in between (never `power cycle`)
  const off = ops.findIndex((o) => /^set power "?0/.test(o));
  const on = ops.findIndex((o) => /^set power "?1/.test(o));
  assert.ok(off >= 0 && on > off, `expected off then on, got ${ops.join('; ')}`);
  assert.equal(sim.isOn(), true);
  await power.setPowerState(n, 'soft power off');
  assert.equal(sim.isOn(), false);
  assert.equal(await power.getPowerState(n), 'power off');
  await power.setPowerState(n, 'power on');
  await power.setPowerState(n, 'power off');
  assert.equal(sim.isOn(), false);
});

test('boot device set and get (legacy and UEFI raw form)', { skip }, async () => {
  const mgmt = new IpmitoolManagement(fast);
  const n = node(sim.driverInfo());
  await mgmt.setBootDevice(n, 'pxe', false);
  assert.equal(sim.bootDevice(), 'pxe');
  assert.deepEqual(await mgmt.getBootDevice(n), { boot_device: 'pxe', persistent: false });
  await mgmt.setBootDevice(n, 'disk', true);
  assert.equal((await mgmt.getBootDevice(n)).boot_device, 'disk');
  await mgmt.setBootDevice(n, 'bios', false);
  assert.equal((await mgmt.getBootDevice(n)).boot_device, 'bios');
  const uefi = node(sim.driverInfo(), { properties: { capabilities: 'boot_mode:uefi' } });
  await mgmt.setBootDevice(uefi, 'pxe', true);
  assert.equal(sim.bootDevice(), 'pxe');
  assert.equal((await mgmt.getBootDevice(uefi)).boot_device, 'pxe');
  assert.ok(sim.chassisLog().some((l) => / set boot "?cdrom|set boot "?pxe/.test(l)));
});

test('IPMI 1.5 (lan interface) works too', { skip }, async () => {
  const power = new IpmitoolPower(fast);
  const n = node(sim.driverInfo({ ipmi_protocol_version: '1.5', ipmi_cipher_suite: undefined }));
  assert.equal(await power.getPowerState(n), 'power off');
});

test('wrong password: immediate, clear authentication error, no retries', { skip }, async () => {
  const power = new IpmitoolPower(fast);
  const n = node(sim.driverInfo({ ipmi_password: 'wrong' }));
  await assert.rejects(power.getPowerState(n), (e: unknown) => {
    assert.ok(e instanceof PowerStateFailure, String(e));
    assert.match(e.message, /authentication rejected.*ipmi_username\/ipmi_password/);
    assert.ok(e.cause instanceof IpmiCommandFailure);
    assert.equal(e.cause.kind, 'auth');
    assert.equal(e.cause.attempts, 1);
    return true;
  });
  await assert.rejects(new IpmitoolManagement(fast).setBootDevice(n, 'pxe', false), DriverOperationError);
});

test('unreachable BMC: bounded retries with backoff, then a clear error', { skip }, async () => {
  const port = await freeUdpPort();
  const power = new IpmitoolPower({ ...fast, commandRetryTimeoutS: 4 });
  const n = node({ ipmi_address: '127.0.0.1', ipmi_port: port, ipmi_username: 'admin', ipmi_password: 'x', ipmi_cipher_suite: 3 });
  await assert.rejects(power.setPowerState(n, 'power on'), (e: unknown) => {
    assert.ok(e instanceof PowerStateFailure, String(e));
    assert.match(e.message, /no response from the BMC after \d+ attempt\(s\) within 4 s/);
    assert.ok(e.cause instanceof IpmiCommandFailure);
    assert.equal(e.cause.kind, 'unreachable');
    assert.ok(e.cause.attempts >= 2, `attempts ${e.cause.attempts}`);
    return true;
  });
});

test('the password reaches ipmitool through its environment (-E): never argv, no file', { skip }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-ipmiwrap-'));
  try {
    const wrapper = join(dir, 'ipmitool');
    // Records argv and whether IPMI_PASSWORD holds the BMC's password, then runs the real ipmitool.
    await writeFile(wrapper, `#!/bin/sh
echo "$@" >> ${dir}/argv.log
[ "$IPMI_PASSWORD" = ${JSON.stringify(sim.password)} ] && echo match >> ${dir}/env.log
exec ipmitool "$@"
`);
    await chmod(wrapper, 0o755);
    const power = new IpmitoolPower({ ...fast, ipmitoolPath: wrapper });
    const before = (await readdir(tmpdir())).filter((f) => f.startsWith('bmts-ipmi-'));
    assert.equal(await power.getPowerState(node(sim.driverInfo())), 'power off');
    const argv = await readFile(join(dir, 'argv.log'), 'utf8');
    assert.match(argv, / -E power status/);
    assert.doesNotMatch(argv, / -f /);
    assert.ok(!argv.includes(sim.password), 'password leaked into argv');
    assert.equal((await readFile(join(dir, 'env.log'), 'utf8')).trim(), 'match');
    assert.deepEqual((await readdir(tmpdir())).filter((f) => f.startsWith('bmts-ipmi-')), before, 'a temp dir was made');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
