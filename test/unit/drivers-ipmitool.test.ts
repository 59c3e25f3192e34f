import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidParameterValue, MissingParameterValue, PowerStateFailure } from '../../conductor/errors.js';
import {
  IpmitoolPower, classifyIpmiError, ipmitoolQueuedBmcs, parseBootParam, parseIpmiInfo, parsePowerStatus,
} from '../../conductor/drivers/ipmitool.js';
import { bootModeOf } from '../../conductor/drivers/driver-info.js';
import type { DriverNode } from '../../conductor/drivers/types.js';

function node(info: Record<string, unknown>, extra: Partial<DriverNode> = {}): DriverNode {
  return { uuid: 'n1', driver: 'ipmi', driver_info: info, instance_info: {}, driver_internal_info: {}, properties: {}, ports: [], ...extra };
}

test('parseIpmiInfo applies Ironic defaults', () => {
  const i = parseIpmiInfo(node({ ipmi_address: '10.1.1.1' }));
  assert.equal(i.protocolVersion, '2.0');
  assert.equal(i.privLevel, 'ADMINISTRATOR');
  assert.equal(i.port, undefined);
  assert.equal(i.disableBootTimeout, true);
  const j = parseIpmiInfo(node({ ipmi_address: 'bmc', ipmi_port: '6230', ipmi_priv_level: 'operator', ipmi_protocol_version: '1.5' }));
  assert.equal(j.port, 6230);
  assert.equal(j.privLevel, 'OPERATOR');
  assert.equal(j.protocolVersion, '1.5');
});

test('validate names every missing and malformed key', () => {
  assert.throws(() => parseIpmiInfo(node({ ipmi_port: 'abc' })), (e: unknown) => {
    assert.ok(e instanceof MissingParameterValue);
    assert.match(e.message, /ipmi_address/);
    assert.match(e.message, /ipmi_port must be an integer/);
    return true;
  });
  assert.throws(() => parseIpmiInfo(node({ ipmi_address: 'x', ipmi_port: 70000, ipmi_protocol_version: '3', ipmi_priv_level: 'ROOT', ipmi_cipher_suite: 'q' })),
    (e: unknown) => {
      assert.ok(e instanceof InvalidParameterValue);
      for (const k of ['ipmi_port', 'ipmi_protocol_version', 'ipmi_priv_level', 'ipmi_cipher_suite']) assert.match(e.message, new RegExp(k));
      return true;
    });
  assert.throws(() => new IpmitoolPower().validate(node({})), MissingParameterValue);
});

test('classifyIpmiError tells credentials from an unreachable BMC', () => {
  assert.equal(classifyIpmiError('RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session'), 'auth');
  assert.equal(classifyIpmiError('RAKP 2 message indicates an error : unauthorized name\nError: Unable to establish IPMI v2 / RMCP+ session'), 'auth');
  assert.equal(classifyIpmiError('Activate Session command failed\nError: Unable to establish LAN session'), 'auth');
  assert.equal(classifyIpmiError('Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\nError: Unable to establish IPMI v2 / RMCP+ session'), 'unreachable');
  assert.equal(classifyIpmiError('Error in open session response message : invalid authentication algorithm'), 'cipher');
  assert.equal(classifyIpmiError('Error: insufficient resources for session'), 'busy');
  assert.equal(classifyIpmiError('Invalid chassis command: frob'), 'command');
});

test('parsePowerStatus and parseBootParam', () => {
  assert.equal(parsePowerStatus('Chassis Power is on\n'), 'power on');
  assert.equal(parsePowerStatus('Chassis Power is off\n'), 'power off');
  assert.equal(parsePowerStatus('weird'), 'error');
  const pxeOnce = ' Boot Flags :\n   - Options apply to only next boot\n   - Boot Device Selector : Force PXE\n';
  assert.deepEqual(parseBootParam(pxeOnce), { boot_device: 'pxe', persistent: false });
  assert.deepEqual(parseBootParam('- Options apply to all future boots\n- Boot Device Selector : Force Boot from default Hard-Drive\n'),
    { boot_device: 'disk', persistent: true });
  assert.equal(parseBootParam('Boot Device Selector : Force Boot from default Hard-Drive, request Safe-Mode').boot_device, 'safe');
  assert.equal(parseBootParam('Boot Device Selector : Force Boot from CD/DVD').boot_device, 'cdrom');
  assert.equal(parseBootParam('Boot Device Selector : Force Boot into BIOS Setup').boot_device, 'bios');
  assert.equal(parseBootParam('Boot Device Selector : No override').boot_device, null);
});

test('bootModeOf reads instance_info and capabilities', () => {
  assert.equal(bootModeOf(node({})), 'bios');
  assert.equal(bootModeOf(node({}), 'uefi'), 'uefi');
  assert.equal(bootModeOf(node({}, { properties: { capabilities: 'foo:bar,boot_mode:uefi' } })), 'uefi');
  assert.equal(bootModeOf(node({}, { properties: { capabilities: { boot_mode: 'uefi' } } })), 'uefi');
  assert.equal(bootModeOf(node({}, { instance_info: { deploy_boot_mode: 'bios' }, properties: { capabilities: 'boot_mode:uefi' } })), 'bios');
});

/** A stand-in ipmitool (the shell script `body`, given its temp dir) for the test `fn`; the dir is removed after. */
async function withStubIpmitool(body: (dir: string) => string, fn: (stub: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-ipmistub-'));
  try {
    const stub = join(dir, 'ipmitool');
    await writeFile(stub, `#!/bin/sh\n${body(dir)}`);
    await chmod(stub, 0o755);
    await fn(stub, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('a BMC that accepts "power on" but never turns on fails after the state-change timeout', () =>
  withStubIpmitool(() => 'for a in "$@"; do last1="$a"; done\n[ "$last1" = status ] && echo "Chassis Power is off"\nexit 0\n', async (stub) => {
    const power = new IpmitoolPower({ ipmitoolPath: stub, minCommandIntervalS: 0, pollIntervalS: 0.05 });
    await assert.rejects(power.setPowerState(node({ ipmi_address: 'stub' }), 'power on', 0.3), (e: unknown) => {
      assert.ok(e instanceof PowerStateFailure);
      assert.match(e.message, /did not reach "power on".*still "power off"/);
      return true;
    });
  }));

// Every command waits for the gate file, so all five BMCs are busy at once until the test opens it.
test('per-BMC command queues: one entry per busy BMC, none left behind once the BMCs are idle', () =>
  withStubIpmitool((dir) => `while [ ! -e ${join(dir, 'gate')} ]; do sleep 0.02; done\necho "Chassis Power is on"\n`, async (stub, dir) => {
    const power = new IpmitoolPower({ ipmitoolPath: stub, minCommandIntervalS: 0.2 });
    const bmcs = Array.from({ length: 5 }, (_, i) => node({ ipmi_address: `queue-test-${i}` }));
    const before = ipmitoolQueuedBmcs();
    const results = Promise.all([...bmcs, ...bmcs].map((n) => power.getPowerState(n)));
    const until = async (want: number, what: string): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (ipmitoolQueuedBmcs() !== want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(ipmitoolQueuedBmcs(), want, what);
    };
    await until(before + 5, 'one queue per busy BMC');
    await writeFile(join(dir, 'gate'), '');
    assert.deepEqual(await results, Array(10).fill('power on'));
    await until(before, 'idle BMC queues were never dropped');
  }));

test('a node without ipmi_password sends ipmitool an empty one, as Ironic does', () =>
  withStubIpmitool((dir) => `[ "\${IPMI_PASSWORD+set}" = set ] && printf '%s' "$IPMI_PASSWORD" > ${join(dir, 'seen')}\necho "Chassis Power is on"\n`,
    async (stub, dir) => {
      const power = new IpmitoolPower({ ipmitoolPath: stub, minCommandIntervalS: 0 });
      assert.equal(await power.getPowerState(node({ ipmi_address: 'no-password' })), 'power on');
      assert.equal(await readFile(join(dir, 'seen'), 'utf8'), '');
    }));
