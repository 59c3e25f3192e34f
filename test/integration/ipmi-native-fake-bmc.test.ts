/**
 * The native IPMI client against a scripted UDP BMC (test/fixtures/fake-ipmi-bmc.ts): cipher suite 17 end to end
 * (ipmi_sim refuses it), and malformed, truncated, forged, duplicated and stale datagrams, which must be dropped
 * without crashing the client or confusing one request's answer with another's.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { IpmiNativeManagement } from '../../conductor/drivers/ipmi-native.js';
import type { DriverNode } from '../../conductor/drivers/types.js';
import { chassisControl, getBootFlags, getChassisStatus, getDeviceId, setBootFlags } from '../../conductor/ipmi-native/commands.js';
import { IpmiSessionPool } from '../../conductor/ipmi-native/pool.js';
import { CIPHER_SUITES } from '../../conductor/ipmi-native/crypto.js';
import { IpmiError } from '../../conductor/ipmi-native/errors.js';
import { decodePacket, PacketError } from '../../conductor/ipmi-native/packet.js';
import { IpmiSession, type IpmiTarget } from '../../conductor/ipmi-native/session.js';
import { startFakeBmc, type FakeBmc, type FakeBmcOptions } from '../fixtures/fake-ipmi-bmc.js';

const cleanup: (() => Promise<void>)[] = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

async function bmc(opts: Partial<FakeBmcOptions> = {}): Promise<FakeBmc> {
  const b = await startFakeBmc({ suite: 17, username: 'root', password: 'calvin-17', ...opts });
  cleanup.push(() => b.stop());
  return b;
}

function client(b: FakeBmc, t: Partial<IpmiTarget> = {}, callTimeoutMs = 4000): IpmiSession {
  const s = new IpmiSession({ host: '127.0.0.1', port: b.port, username: 'root', password: 'calvin-17', cipherSuite: 17, privLevel: 'ADMINISTRATOR', ...t },
    { callTimeoutMs, attemptTimeoutMs: 200, maxAttemptTimeoutMs: 400 });
  cleanup.push(() => s.close());
  return s;
}

test('cipher suite 17 (RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128) end to end, then Close Session', async () => {
  const b = await bmc();
  const s = client(b);
  assert.equal((await getDeviceId(s)).productId, 0x1234);
  await chassisControl(s, 'on');
  assert.equal(b.powerOn, true);
  assert.equal((await getChassisStatus(s)).powerOn, true);
  assert.equal(b.openSessions, 1);
  await s.close();
  assert.equal(b.openSessions, 0, 'Close Session reached the BMC');
  assert.equal(s.stats.sessionsOpened, 1);
});

test('cipher suite 17: wrong password and wrong user are authentication errors', async () => {
  const b = await bmc();
  await assert.rejects(getDeviceId(client(b, { password: 'nope' })), (e: unknown) =>
    e instanceof IpmiError && e.kind === 'auth' && /RAKP 2 HMAC is invalid/.test(e.message));
  await assert.rejects(getDeviceId(client(b, { username: 'admin' })), (e: unknown) =>
    e instanceof IpmiError && e.kind === 'auth' && /unauthorized name/.test(e.message));
  // a suite-3-only request to a suite-17 BMC: refused algorithm, reported as a cipher problem
  await assert.rejects(getDeviceId(client(b, { cipherSuite: 3 })), (e: unknown) => e instanceof IpmiError && e.kind === 'cipher');
});

test('boot flags on the wire: persistent and EFI bits, device selector, the 60 s timeout disabled first (ipmi_sim ignores them)', async () => {
  const b = await bmc();
  const s = client(b);
  await setBootFlags(s, { device: 'pxe', persistent: true, efi: true });
  assert.equal(b.bootOptions.get(5)?.toString('hex'), 'e004000000');
  assert.deepEqual(await getBootFlags(s), { device: 'pxe', persistent: true, efi: true, valid: true });
  await setBootFlags(s, { device: 'disk', persistent: false, efi: false, disableTimeout: true });
  assert.equal(b.bootOptions.get(3)?.toString('hex'), '08');
  assert.equal(b.bootOptions.get(5)?.toString('hex'), '8008000000');
  assert.deepEqual(await getBootFlags(s), { device: 'disk', persistent: false, efi: false, valid: true });

  const pool = new IpmiSessionPool({ callTimeoutMs: 4000 });
  cleanup.push(() => pool.close());
  const mgmt = new IpmiNativeManagement(pool);
  const node = (capabilities: string): DriverNode => ({
    uuid: 'fake-bmc-node', driver: 'ipmi', instance_info: {}, driver_internal_info: {}, ports: [], properties: { capabilities },
    driver_info: { ipmi_address: '127.0.0.1', ipmi_port: b.port, ipmi_username: 'root', ipmi_password: 'calvin-17', ipmi_cipher_suite: 17 },
  });
  await mgmt.setBootDevice(node('boot_mode:uefi'), 'cdrom', true);
  assert.equal(b.bootOptions.get(5)?.toString('hex'), 'e014000000');
  assert.deepEqual(await mgmt.getBootDevice(node('boot_mode:uefi')), { boot_device: 'cdrom', persistent: true });
  await mgmt.setBootDevice(node('boot_mode:bios'), 'bios', false);
  assert.equal(b.bootOptions.get(5)?.toString('hex'), '8018000000');
});

/** Datagrams that are not the answer: random, empty, header-only, truncated. */
function junk(answer: Buffer): Buffer[] {
  return [
    randomBytes(Math.floor(Math.random() * 80)), Buffer.alloc(0), Buffer.from([0x06, 0x00, 0xff, 0x07]),
    answer.subarray(0, Math.max(0, answer.length - 1 - Math.floor(Math.random() * answer.length))),
    Buffer.concat([answer.subarray(0, 16), Buffer.from([0xff, 0xff])]),
  ];
}

/** A copy of the answer with one bit flipped in [from, end): a forged or corrupted datagram. */
function forged(answer: Buffer, from: number): Buffer {
  const flipped = Buffer.from(answer);
  const i = from + Math.floor(Math.random() * (flipped.length - from));
  flipped[i] = (flipped[i] as number) ^ 0x40;
  return flipped;
}

test('garbage, truncated and forged datagrams around every real answer are dropped; the calls succeed', async () => {
  // Forged copies only where the client can tell: integrity-protected session packets and the RAKP 2 auth code
  // (a forged Open Session status, say, is indistinguishable from a real refusal).
  const fake = (answer: Buffer, stage: string): Buffer[] =>
    stage === 'ipmi' ? [forged(answer, 4)] : stage === 'rakp2' ? [forged(answer, answer.length - 32)] : [];
  const b = await bmc({ tamper: (answer, stage) => [...junk(answer), ...fake(answer, stage), answer, ...junk(answer), ...fake(answer, stage)] });
  const s = client(b);
  for (let i = 0; i < 10; i++) assert.equal((await getChassisStatus(s)).powerOn, false);
  assert.ok(s.stats.dropped > 50, `dropped ${s.stats.dropped}`);
  assert.equal(s.stats.sessionsOpened, 1);
});

test('a BMC that only sends garbage ends in a clear timeout, not a crash', async () => {
  for (const stage of ['capabilities', 'open', 'rakp2', 'rakp4', 'ipmi'] as const) {
    const b = await bmc({ tamper: (answer, st) => (st === stage ? junk(answer) : [answer]) });
    const s = client(b, {}, 1000);
    await assert.rejects(getDeviceId(s), (e: unknown) => {
      assert.ok(e instanceof IpmiError, `${stage}: ${String(e)}`);
      assert.equal(e.kind, 'unreachable', `${stage}: ${e.message}`);
      return true;
    });
    assert.ok(s.stats.dropped > 0, stage);
  }
});

test('duplicated and stale answers never satisfy another request', async () => {
  let previous: Buffer | undefined;
  const b = await bmc({
    tamper: (answer, stage) => {
      if (stage !== 'ipmi') return [answer];
      const out = previous ? [previous, answer, answer] : [answer, answer];
      previous = answer;
      return out;
    },
  });
  const s = client(b);
  for (let i = 0; i < 10; i++) {
    assert.equal((await getDeviceId(s)).productId, 0x1234);
    assert.equal((await getChassisStatus(s)).powerOn, false);
  }
  assert.ok(s.stats.dropped >= 20, `dropped ${s.stats.dropped}`);
});

test('decodePacket throws only PacketError, for random datagrams and for mutations of valid ones', () => {
  const keys = { suite: CIPHER_SUITES[17], k1: randomBytes(32), aesKey: randomBytes(16) };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, withKeys) => {
    try {
      decodePacket(Buffer.from(bytes), withKeys ? keys : undefined);
    } catch (e) {
      return e instanceof PacketError;
    }
    return true;
  }), { numRuns: 3000 });
  const header = fc.constantFrom(Buffer.from([0x06, 0x00, 0xff, 0x07, 0x06]), Buffer.from([0x06, 0x00, 0xff, 0x07, 0x00]));
  fc.assert(fc.property(header, fc.uint8Array({ maxLength: 120 }), fc.boolean(), (h, rest, withKeys) => {
    try {
      decodePacket(Buffer.concat([h, Buffer.from(rest)]), withKeys ? keys : undefined);
    } catch (e) {
      return e instanceof PacketError;
    }
    return true;
  }), { numRuns: 3000 });
});
