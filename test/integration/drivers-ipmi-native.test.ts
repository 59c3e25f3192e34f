/**
 * The native RMCP+ client and the `ipmi-native` interfaces against Debian's ipmi_sim (cipher suite 3; ipmi_sim
 * has no SHA-256, so suite 17 is covered by test/unit/ipmi-native-crypto.test.ts and here only as the refused
 * first probe).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { have } from '../../common/exec.js';
import { DriverOperationError, InvalidParameterValue, PowerStateFailure } from '../../conductor/errors.js';
import { IpmiNativeManagement, IpmiNativePower, type IpmiNativeOptions } from '../../conductor/drivers/ipmi-native.js';
import type { DriverNode } from '../../conductor/drivers/types.js';
import {
  chassisControl, getBootFlags, getChassisStatus, getDeviceId, raw, setBootFlags,
} from '../../conductor/ipmi-native/commands.js';
import { IpmiError } from '../../conductor/ipmi-native/errors.js';
import { IpmiSessionPool } from '../../conductor/ipmi-native/pool.js';
import { IpmiSession, type IpmiTarget } from '../../conductor/ipmi-native/session.js';
import { freeUdpPort, startIpmiSim, type IpmiSim } from '../../lab/ipmi-sim.js';
import { startTestConductor } from '../fixtures/conductor.js';

const PASSWORD = 'S3cret-pw';
const fast: Partial<IpmiNativeOptions> = { powerStateChangeTimeoutS: 10, softPowerOffTimeoutS: 10, pollIntervalS: 0.1 };
const skip = (await have('ipmi_sim')) ? false : 'ipmi_sim not installed (apt: openipmi)';
let sim: IpmiSim;
const pools: IpmiSessionPool[] = [];
const sessions: IpmiSession[] = [];

function pool(opts: ConstructorParameters<typeof IpmiSessionPool>[0] = { callTimeoutMs: 8000 }): IpmiSessionPool {
  const p = new IpmiSessionPool(opts);
  pools.push(p);
  return p;
}

function target(extra: Partial<IpmiTarget> = {}): IpmiTarget {
  return { host: '127.0.0.1', port: sim.port, username: 'admin', password: PASSWORD, cipherSuite: 3, privLevel: 'ADMINISTRATOR', ...extra };
}

function session(extra: Partial<IpmiTarget> = {}, opts: ConstructorParameters<typeof IpmiSession>[1] = { callTimeoutMs: 8000 }): IpmiSession {
  const s = new IpmiSession(target(extra), opts);
  sessions.push(s);
  return s;
}

function node(info: Record<string, unknown>, extra: Partial<DriverNode> = {}): DriverNode {
  return {
    uuid: '5a1e2c0b-03f2-4d2e-ae87-c02d7f33c999', driver: 'ipmi', driver_info: info, instance_info: {},
    driver_internal_info: {}, properties: {}, ports: [], ...extra,
  };
}

/** Chassis-script operations logged since `from` ("set power 1", "set boot pxe", ...), quotes stripped. */
function opsSince(from: number): string[] {
  return sim.chassisLog().slice(from).map((l) => l.split(' ').slice(1).join(' ').replace(/"/g, ''));
}

before(async () => { if (!skip) sim = await startIpmiSim({ password: PASSWORD }); });
after(async () => {
  for (const s of sessions) await s.close();
  for (const p of pools) await p.close();
  await sim?.stop();
});

test('every command over one cipher-suite-3 session: device id, chassis status/control, boot options, raw', { skip }, async () => {
  const s = session();
  const id = await getDeviceId(s);
  // node.emu: mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
  assert.deepEqual({ rev: id.deviceRevision, fw: id.firmwareRevision, mfr: id.manufacturerId, product: id.productId, ipmi: id.ipmiVersion },
    { rev: 3, fw: '9.08', mfr: 0x1291, product: 0xf02, ipmi: '2.0' });
  assert.equal((await getChassisStatus(s)).powerOn, false);

  let mark = sim.chassisLog().length;
  await chassisControl(s, 'on');
  assert.equal(sim.isOn(), true);
  assert.equal((await getChassisStatus(s)).powerOn, true);
  await chassisControl(s, 'reset');
  assert.ok(opsSince(mark).includes('set reset 1'), opsSince(mark).join('; '));
  await chassisControl(s, 'off');
  assert.equal(sim.isOn(), false);
  assert.equal((await getChassisStatus(s)).powerOn, false);
  mark = sim.chassisLog().length;
  await chassisControl(s, 'cycle'); // ipmi_sim: power 0, then power 1 about a second later
  for (let i = 0; i < 40 && !sim.isOn(); i++) await sleep(100);
  assert.equal(sim.isOn(), true, `cycle: ${opsSince(mark).join('; ')}`);
  await chassisControl(s, 'soft');
  for (let i = 0; i < 40 && sim.isOn(); i++) await sleep(100);
  assert.equal(sim.isOn(), false);

  await setBootFlags(s, { device: 'pxe', persistent: false, efi: false, disableTimeout: true });
  assert.equal(sim.bootDevice(), 'pxe');
  assert.equal((await getBootFlags(s)).device, 'pxe');
  await setBootFlags(s, { device: 'disk', persistent: true, efi: false });
  assert.equal(sim.bootDevice(), 'default');
  assert.equal((await getBootFlags(s)).device, 'disk');
  await setBootFlags(s, { device: 'bios', persistent: false, efi: true });
  assert.equal(sim.bootDevice(), 'bios');
  await setBootFlags(s, { device: 'cdrom', persistent: false, efi: false });
  assert.equal((await getBootFlags(s)).device, 'cdrom');

  const r = await raw(s, 0x06, 0x01);
  assert.equal(r.completionCode, 0);
  assert.equal(r.data[0], id.deviceId);
  const bad = await raw(s, 0x06, 0xfe); // no such App command
  assert.equal(bad.completionCode, 0xc1);
  assert.equal(s.stats.sessionsOpened, 1, 'every command reused the one session');
});

test('ipmi-native power and management interfaces: status, on, off, reboot, soft off, boot device (legacy + UEFI)', { skip }, async () => {
  const p = pool();
  const power = new IpmiNativePower(p, fast);
  const mgmt = new IpmiNativeManagement(p, fast);
  const n = node(sim.driverInfo());
  power.validate(n);
  assert.equal(await power.getPowerState(n), 'power off');
  await power.setPowerState(n, 'power on');
  assert.equal(sim.isOn(), true);
  const mark = sim.chassisLog().length;
  await power.setPowerState(n, 'rebooting');
  const ops = opsSince(mark);
  const off = ops.indexOf('set power 0');
  const on = ops.indexOf('set power 1');
  assert.ok(off >= 0 && on > off, `expected off then on, got ${ops.join('; ')}`);
  await power.setPowerState(n, 'soft power off');
  assert.equal(await power.getPowerState(n), 'power off');
  await power.setPowerState(n, 'power on');
  await power.setPowerState(n, 'power off');
  assert.equal(sim.isOn(), false);

  await mgmt.setBootDevice(n, 'pxe', false);
  assert.equal(sim.bootDevice(), 'pxe');
  assert.deepEqual(await mgmt.getBootDevice(n), { boot_device: 'pxe', persistent: false });
  await mgmt.setBootDevice(n, 'disk', true);
  assert.equal((await mgmt.getBootDevice(n)).boot_device, 'disk');
  const uefi = node(sim.driverInfo(), { properties: { capabilities: 'boot_mode:uefi' } });
  await mgmt.setBootDevice(uefi, 'pxe', true);
  assert.equal(sim.bootDevice(), 'pxe');
  assert.equal(p.size, 1, 'power and management share the BMC session');
  assert.throws(() => power.validate(node(sim.driverInfo({ ipmi_protocol_version: '1.5', ipmi_cipher_suite: undefined }))), InvalidParameterValue);
  assert.throws(() => mgmt.validate(node(sim.driverInfo({ ipmi_cipher_suite: 1 }))), /ipmi_cipher_suite must be 3 or 17/);
});

test('cipher suite unset: 17 is tried, ipmi_sim refuses it, 3 is used and remembered', { skip }, async () => {
  const p = pool();
  const power = new IpmiNativePower(p, fast);
  const n = node(sim.driverInfo({ ipmi_cipher_suite: undefined }));
  assert.equal(await power.getPowerState(n), 'power off');
  assert.equal(await power.getPowerState(n), 'power off');
  const only17 = session({ cipherSuite: 17 });
  await assert.rejects(getDeviceId(only17), (e: unknown) => {
    assert.ok(e instanceof IpmiError && e.kind === 'cipher', String(e));
    assert.match(e.message, /invalid authentication algorithm|cipher/);
    return true;
  });
});

test('wrong password and wrong user: immediate, clear authentication errors without the password', { skip }, async () => {
  const s = session({ password: 'wrong-pw-1' });
  const t0 = Date.now();
  await assert.rejects(getChassisStatus(s), (e: unknown) => {
    assert.ok(e instanceof IpmiError && e.kind === 'auth', String(e));
    assert.match(e.message, /RAKP 2 HMAC is invalid \(wrong ipmi_password/);
    assert.ok(!e.message.includes('wrong-pw-1') && !e.message.includes(PASSWORD));
    return true;
  });
  assert.ok(Date.now() - t0 < 5000, 'no retry loop on bad credentials');
  await assert.rejects(getChassisStatus(session({ username: 'nobody' })), (e: unknown) =>
    e instanceof IpmiError && e.kind === 'auth' && /unauthorized name/.test(e.message));
  const power = new IpmiNativePower(pool(), fast);
  await assert.rejects(power.getPowerState(node(sim.driverInfo({ ipmi_password: 'wrong-pw-2' }))), (e: unknown) => {
    assert.ok(e instanceof PowerStateFailure, String(e));
    assert.match(e.message, /Failed to get power state .*authentication rejected/);
    assert.ok(!e.message.includes('wrong-pw-2'));
    return true;
  });
  await assert.rejects(new IpmiNativeManagement(pool(), fast).setBootDevice(node(sim.driverInfo({ ipmi_password: 'x' })), 'pxe', false),
    DriverOperationError);
});

test('BMC gone: nothing listening, or killed mid-session, ends in a clear timeout error within the budget', { skip }, async () => {
  const port = await freeUdpPort();
  const s = session({ port }, { callTimeoutMs: 2500, attemptTimeoutMs: 300 });
  const t0 = Date.now();
  await assert.rejects(getChassisStatus(s), (e: unknown) => {
    assert.ok(e instanceof IpmiError && e.kind === 'unreachable', String(e));
    assert.match(e.message, /no response from the BMC after \d+ attempt\(s\).*check ipmi_address\/ipmi_port/);
    return true;
  });
  assert.ok(Date.now() - t0 < 6000);
  assert.ok(s.stats.packetsSent >= 3, `retried: ${s.stats.packetsSent} packets`);

  const own = await startIpmiSim({ password: PASSWORD });
  try {
    const live = new IpmiSession({ ...target(), port: own.port }, { callTimeoutMs: 2500, attemptTimeoutMs: 300 });
    sessions.push(live);
    assert.equal((await getChassisStatus(live)).powerOn, false);
    await own.stop();
    await assert.rejects(getChassisStatus(live), (e: unknown) => e instanceof IpmiError && e.kind === 'unreachable');
  } finally {
    await own.stop();
  }
});

test('one session survives 100 sequential calls', { skip }, async () => {
  const s = session();
  // Get Device ID: ipmi_sim answers it itself (chassis status forks its chassis script per call).
  let ok = 0;
  for (let i = 0; i < 100; i++) if ((await getDeviceId(s)).productId === 0xf02) ok++;
  assert.equal(ok, 100);
  assert.equal((await getChassisStatus(s)).powerOn, false);
  assert.equal(s.stats.sessionsOpened, 1);
  assert.equal(s.stats.dropped, 0);
});

test('two concurrent callers share one session and each gets its own answer', { skip }, async () => {
  const p = pool();
  const a = p.session(target());
  const b = p.session(target());
  assert.equal(a, b);
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0
    ? getDeviceId(a).then((d) => `id:${d.productId}`)
    : getBootFlags(b).then((f) => `boot:${typeof f.device}`))));
  assert.deepEqual(results, Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? `id:${0xf02}` : 'boot:string')));
  assert.equal(a.stats.sessionsOpened, 1);
});

test('keep-alive holds an idle session; Close Session frees the BMC slot; idle sessions are closed', { skip }, async () => {
  const watcher = session();
  const activeSessions = async (): Promise<number> => {
    const r = await raw(watcher, 0x06, 0x3d, [0x00]); // Get Session Info: byte 3 = currently active sessions
    assert.equal(r.completionCode, 0);
    return (r.data[2] as number) & 0x3f;
  };
  const before = await activeSessions();
  const kept = new IpmiSession(target(), { callTimeoutMs: 5000, keepaliveMs: 300, idleCloseMs: 0 });
  sessions.push(kept);
  await getDeviceId(kept);
  assert.equal(await activeSessions(), before + 1);
  const sent = kept.stats.packetsSent;
  await sleep(1200);
  assert.ok(kept.stats.packetsSent > sent, 'keep-alive packets were sent while idle');
  await getDeviceId(kept);
  assert.equal(kept.stats.sessionsOpened, 1, 'the kept-alive session was still valid');
  await kept.close();
  assert.equal(await activeSessions(), before);
  await assert.rejects(getDeviceId(kept), (e: unknown) => e instanceof IpmiError && e.kind === 'closed');

  const idle = new IpmiSession(target(), { callTimeoutMs: 5000, keepaliveMs: 0, idleCloseMs: 400 });
  sessions.push(idle);
  await getDeviceId(idle);
  assert.equal(idle.established, true);
  for (let i = 0; i < 30 && idle.established; i++) await sleep(100);
  assert.equal(idle.established, false);
  assert.equal(await activeSessions(), before);
});

test('through the conductor API: an ipmi node with ipmi-native power/management, enrolled, powered, deployed (fake deploy)', { skip }, async () => {
  const c = await startTestConductor({
    plain: true,
    config: { automated_clean: false, power: { state_change_timeout: 10, soft_power_off_timeout: 10, ipmi_command_retry_timeout: 5,
      ipmi_min_command_interval: 0, redfish_connection_attempts: 1, redfish_connection_retry_interval: 1 } },
  });
  try {
    const created = await c.api('POST', '/v1/nodes', {
      name: 'native-1', driver: 'ipmi', power_interface: 'ipmi-native', management_interface: 'ipmi-native',
      boot_interface: 'fake', deploy_interface: 'fake', driver_info: sim.driverInfo(),
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const n = created.body as { uuid: string; power_interface: string; management_interface: string };
    assert.deepEqual([n.power_interface, n.management_interface], ['ipmi-native', 'ipmi-native']);
    const v = (await c.api('GET', `/v1/nodes/${n.uuid}/validate`)).body as Record<string, { result: boolean; reason?: string }>;
    assert.equal(v.power?.result, true, v.power?.reason);
    assert.equal(v.management?.result, true, v.management?.reason);
    const node = async (): Promise<Record<string, unknown>> => (await c.api('GET', `/v1/nodes/${n.uuid}`)).body as Record<string, unknown>;
    const waitFor = async (field: string, want: unknown): Promise<Record<string, unknown>> => {
      let last: Record<string, unknown> = {};
      for (let i = 0; i < 200; i++) {
        last = await node();
        if (last[field] === want) return last;
        await sleep(100);
      }
      assert.fail(`${field} never became ${String(want)}: ${JSON.stringify(last)}`);
    };

    assert.equal((await c.api('PUT', `/v1/nodes/${n.uuid}/management/boot_device`, { boot_device: 'pxe', persistent: false })).status, 204);
    assert.equal(sim.bootDevice(), 'pxe');
    assert.equal(((await c.api('GET', `/v1/nodes/${n.uuid}/management/boot_device`)).body as { boot_device: string }).boot_device, 'pxe');
    assert.equal((await c.api('PUT', `/v1/nodes/${n.uuid}/states/power`, { target: 'power on' })).status, 202);
    await waitFor('power_state', 'power on');
    assert.equal(sim.isOn(), true);
    assert.equal((await c.api('PUT', `/v1/nodes/${n.uuid}/states/power`, { target: 'power off' })).status, 202);
    await waitFor('power_state', 'power off');
    assert.equal(sim.isOn(), false);

    // Bad credentials: the API accepts the request, the node records a clear last_error.
    const patchPw = async (value: string): Promise<void> => {
      assert.equal((await c.api('PATCH', `/v1/nodes/${n.uuid}`, [{ op: 'replace', path: '/driver_info/ipmi_password', value }])).status, 200);
    };
    await patchPw('not-it');
    assert.equal((await c.api('PUT', `/v1/nodes/${n.uuid}/states/power`, { target: 'power on' })).status, 202);
    let last: Record<string, unknown> = {};
    for (let i = 0; i < 100 && !last.last_error; i++) {
      last = await node();
      await sleep(100);
    }
    assert.match(String(last.last_error), /authentication rejected: the RAKP 2 HMAC is invalid/);
    assert.ok(!String(last.last_error).includes('not-it'));
    assert.equal(sim.isOn(), false);
    await patchPw(PASSWORD);

    assert.equal((await c.api('PUT', `/v1/nodes/${n.uuid}/states/power`, { target: 'power on' })).status, 202);
    await waitFor('power_state', 'power on');
    for (const [verb, state] of [['manage', 'manageable'], ['provide', 'available'], ['active', 'active']] as const) {
      assert.equal((await c.api('PUT', `/v1/nodes/${n.uuid}/states/provision`, { target: verb })).status, 202);
      await waitFor('provision_state', state);
    }
    assert.equal((await c.api('PUT', `/v1/nodes/${n.uuid}/states/power`, { target: 'power off' })).status, 202);
    await waitFor('power_state', 'power off');

    // Stopping the conductor ends its BMC session with Close Session (Get Session Info from another session).
    const watcher = session();
    const active = async (): Promise<number> => ((await raw(watcher, 0x06, 0x3d, [0x00])).data[2] as number) & 0x3f;
    const withConductor = await active();
    await c.close();
    assert.equal(await active(), withConductor - 1);
  } finally {
    await c.close();
  }
});
