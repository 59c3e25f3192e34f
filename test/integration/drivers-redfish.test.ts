import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { run, have } from '../../common/exec.js';
import { DriverOperationError, InvalidParameterValue, PowerStateFailure } from '../../conductor/errors.js';
import { RedfishManagement, RedfishPower, type RedfishOptions } from '../../conductor/drivers/redfish.js';
import { RedfishClientPool, RedfishError } from '../../conductor/drivers/redfish-client.js';
import type { DriverNode } from '../../conductor/drivers/types.js';
import { startRedfishEmulator, type RedfishEmulator } from '../fixtures/redfish-emulator.js';
import { freePort } from '../../lab/qemu.js';

const fast: Partial<RedfishOptions> = {
  requestTimeoutS: 5, connectionAttempts: 3, connectionRetryIntervalS: 0.1, powerStateChangeTimeoutS: 5, pollIntervalS: 0.05,
};
/** The sessions of every interface under test (as one conductor's interfaces share them). */
const pool = new RedfishClientPool();
const emus: RedfishEmulator[] = [];
after(async () => {
  await pool.close();
  await Promise.all(emus.map((e) => e.stop()));
});
async function emulator(opts: Parameters<typeof startRedfishEmulator>[0] = {}): Promise<RedfishEmulator> {
  const e = await startRedfishEmulator(opts);
  emus.push(e);
  return e;
}
function node(info: Record<string, unknown>, extra: Partial<DriverNode> = {}): DriverNode {
  return { uuid: 'rf-node-1', driver: 'redfish', driver_info: info, instance_info: {}, driver_internal_info: {}, properties: {}, ports: [], ...extra };
}
function infoFor(e: RedfishEmulator, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { redfish_address: e.url, redfish_username: e.username, redfish_password: e.password, ...extra };
}

const noRedfishtool = (await have('redfishtool')) ? false : 'redfishtool not installed (apt: redfishtool)';

test('the emulator itself satisfies redfishtool (a client we did not write)', { skip: noRedfishtool }, async () => {
  const e = await emulator();
  const rt = (...args: string[]) => run('redfishtool', ['-r', e.hostPort, '-u', e.username, '-p', e.password, '-S', 'Never', ...args],
    { okCodes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], quiet: true });
  const list = await rt('Systems', 'list');
  assert.equal(list.exitCode, 0, list.stderr);
  assert.equal(JSON.parse(list.stdout).Members[0].Id, '437XR1138R2');
  const sys = JSON.parse((await rt('-1', 'Systems')).stdout);
  assert.equal(sys.PowerState, 'Off');
  assert.ok(sys.Actions['#ComputerSystem.Reset']['ResetType@Redfish.AllowableValues'].includes('ForceOff'));
  assert.equal((await rt('-1', 'Systems', 'reset', 'On')).exitCode, 0);
  assert.equal(e.systems.get('437XR1138R2')?.PowerState, 'On');
  assert.deepEqual(e.resets.map((r) => r.type), ['On']);
  const patched = await rt('-A', 'Session', '-1', 'Systems', 'setBootOverride', 'Continuous', 'Hdd');
  assert.equal(patched.exitCode, 0, patched.stderr);
  assert.equal(JSON.parse(patched.stdout).Boot.BootSourceOverrideTarget, 'Hdd');
  assert.equal(e.sessionsCreated, 1);
  assert.equal(e.sessions.size, 0, 'redfishtool deletes its session; the emulator must honour DELETE');
  const bad = await run('redfishtool', ['-r', e.hostPort, '-u', e.username, '-p', 'nope', '-S', 'Never', '-1', 'Systems'],
    { okCodes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], quiet: true });
  assert.notEqual(bad.exitCode, 0);
  assert.match(bad.stderr + bad.stdout, /401|Unauthorized/i);
});

test('power: status, on, reboot, soft off, off over one session', async () => {
  const e = await emulator();
  const p = new RedfishPower(fast, pool);
  const n = node(infoFor(e));
  p.validate(n);
  assert.equal(await p.getPowerState(n), 'power off');
  await p.setPowerState(n, 'power on');
  await p.setPowerState(n, 'rebooting');
  await p.setPowerState(n, 'soft rebooting');
  await p.setPowerState(n, 'soft power off');
  await p.setPowerState(n, 'power off'); // already off: nothing sent
  await p.setPowerState(n, 'soft rebooting'); // from off: just On
  await p.setPowerState(n, 'power off');
  assert.deepEqual(e.resets.map((r) => r.type), ['On', 'ForceOff', 'On', 'GracefulRestart', 'GracefulShutdown', 'On', 'ForceOff']);
  assert.equal(e.systems.get('437XR1138R2')?.PowerState, 'Off');
  assert.equal(e.sessionsCreated, 1);
  assert.ok(e.requests.filter((r) => r.path.startsWith('/redfish/v1/Systems')).every((r) => r.auth === 'session'));
  await pool.close();
  assert.equal(e.sessions.size, 0, 'close() logs out');
});

test('ResetType is chosen from the AllowableValues the system advertises', async () => {
  const e = await emulator({ resetTypes: ['ForceOn', 'ForceOff'] });
  const p = new RedfishPower(fast, pool);
  const n = node(infoFor(e));
  await p.setPowerState(n, 'power on');
  assert.deepEqual(e.resets.map((r) => r.type), ['ForceOn']);
  await assert.rejects(p.setPowerState(n, 'soft power off'), (err: unknown) => {
    assert.ok(err instanceof PowerStateFailure);
    assert.match(err.message, /does not allow ResetType GracefulShutdown \(allowed: ForceOn, ForceOff\)/);
    return true;
  });
});

test('boot override: target, once/continuous, UEFI/Legacy mode, and get', async () => {
  const e = await emulator({ bootTargets: ['None', 'Pxe', 'Hdd', 'BiosSetup'] });
  const m = new RedfishManagement(fast, pool);
  const n = node(infoFor(e));
  const boot = () => e.systems.get('437XR1138R2')?.Boot;
  await m.setBootDevice(n, 'pxe', false);
  assert.deepEqual(boot(), { BootSourceOverrideEnabled: 'Once', BootSourceOverrideTarget: 'Pxe', BootSourceOverrideMode: 'Legacy' });
  assert.deepEqual(await m.getBootDevice(n), { boot_device: 'pxe', persistent: false });
  await m.setBootDevice(node(infoFor(e), { properties: { capabilities: 'boot_mode:uefi' } }), 'disk', true);
  assert.deepEqual(boot(), { BootSourceOverrideEnabled: 'Continuous', BootSourceOverrideTarget: 'Hdd', BootSourceOverrideMode: 'UEFI' });
  assert.deepEqual(await m.getBootDevice(n), { boot_device: 'disk', persistent: true });
  await assert.rejects(m.setBootDevice(n, 'cdrom', false), /does not allow BootSourceOverrideTarget Cd/);
  await assert.rejects(m.setBootDevice(n, 'safe', false), InvalidParameterValue);
});

test('basic auth: auto falls back when there is no SessionService; session-only then fails clearly', async () => {
  const e = await emulator({ sessions: false });
  const p = new RedfishPower(fast, pool);
  assert.equal(await p.getPowerState(node(infoFor(e))), 'power off');
  assert.ok(e.requests.filter((r) => r.path.startsWith('/redfish/v1/Systems')).every((r) => r.auth === 'basic'));
  await assert.rejects(p.getPowerState(node(infoFor(e, { redfish_auth_type: 'session' }))), /offers no SessionService; set redfish_auth_type to basic or auto/);
});

test('wrong password: clear authentication error (session and basic)', async () => {
  const e = await emulator();
  for (const auth of ['auto', 'basic']) {
    await assert.rejects(new RedfishPower(fast, pool).getPowerState(node(infoFor(e, { redfish_password: 'bad', redfish_auth_type: auth }))), (err: unknown) => {
      assert.ok(err instanceof PowerStateFailure);
      assert.match(err.message, /authentication rejected.*check redfish_username\/redfish_password/);
      assert.ok(err.cause instanceof RedfishError && err.cause.kind === 'auth');
      return true;
    });
  }
});

test('several systems: redfish_system_id is required, by Id or path', async () => {
  const e = await emulator({ systems: ['a', 'b'] });
  const p = new RedfishPower(fast, pool);
  await assert.rejects(p.getPowerState(node(infoFor(e))), /redfish_system_id is required.*2 systems/);
  await p.setPowerState(node(infoFor(e, { redfish_system_id: 'b' })), 'power on');
  assert.equal(e.systems.get('b')?.PowerState, 'On');
  assert.equal(await p.getPowerState(node(infoFor(e, { redfish_system_id: '/redfish/v1/Systems/a' }))), 'power off');
});

test('TLS: custom CA bundle verifies; default verification rejects a self-signed BMC; false skips', async () => {
  const e = await emulator({ tls: true });
  const p = new RedfishPower(fast, pool);
  assert.ok(e.caFile);
  assert.equal(await p.getPowerState(node(infoFor(e, { redfish_verify_ca: e.caFile }))), 'power off');
  await assert.rejects(p.getPowerState(node(infoFor(e))), (err: unknown) => {
    assert.ok(err instanceof PowerStateFailure);
    assert.match(err.message, /TLS verification .* failed.*redfish_verify_ca/);
    return true;
  });
  assert.equal(await p.getPowerState(node(infoFor(e, { redfish_verify_ca: 'false' }))), 'power off');
});

test('unreachable BMC: bounded attempts, then a clear error', async () => {
  const port = await freePort();
  const p = new RedfishPower(fast, pool);
  await assert.rejects(p.getPowerState(node({ redfish_address: `http://127.0.0.1:${port}`, redfish_username: 'u', redfish_password: 'p' })),
    (err: unknown) => {
      assert.ok(err instanceof PowerStateFailure);
      assert.match(err.message, /unreachable \(ECONNREFUSED\).*after 3 attempt/);
      return true;
    });
});

test('management errors surface as DriverOperationError', async () => {
  const e = await emulator();
  await assert.rejects(new RedfishManagement(fast, pool).getBootDevice(node(infoFor(e, { redfish_password: 'bad' }))), DriverOperationError);
});
