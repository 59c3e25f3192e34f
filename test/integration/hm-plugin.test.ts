/**
 * The example vendor plugin (hardware-managers/examples/acme-manager.mjs) loaded from its directory, next to broken
 * plugins that must be skipped: precedence over the generic manager, its own clean step, fall-through, and a
 * firmware update through its fake flasher with the image served over HTTP on 127.0.0.1.
 */
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HardwareManagerMethodNotFound, ImageChecksumError } from '../../protocol/agent-api.js';
import { commands } from '../../agent/extensions/clean.js';
import { run } from '../../common/exec.js';
import { setHardwareContext } from '../../hardware-managers/context.js';
import { dispatchToManagers, getManagers, loadManagers, resetManagers } from '../../hardware-managers/dispatch.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';

const here = dirname(fileURLToPath(import.meta.url));
const EXAMPLES = resolve(here, '../../hardware-managers/examples');
const isRoot = process.getuid?.() === 0;
const MiB = 1024 * 1024;

let work = '';
let brokenDir = '';
let server: http.Server | undefined;
let base = '';
let loops: LoopSet | undefined;
const BIOS = Buffer.from('ACME BIOS v2.1\n'.repeat(4096));
const BMC = Buffer.from('ACME BMC firmware 7.0\n'.repeat(1000));
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const sha512 = (b: Buffer): string => createHash('sha512').update(b).digest('hex');

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'bmts-hm-plugin-'));
  brokenDir = join(work, 'more-plugins');
  await run('mkdir', ['-p', brokenDir]);
  await writeFile(join(brokenDir, 'a-syntax-error.mjs'), 'export default {;\n');
  await writeFile(join(brokenDir, 'b-throws-on-import.mjs'), "throw new Error('vendor module exploded');\n");
  await writeFile(join(brokenDir, 'c-not-a-manager.mjs'), 'export const something = 1;\n');
  await writeFile(join(brokenDir, 'd-evaluate-throws.mjs'),
    "export default { name: 'Exploding', evaluateHardwareSupport() { throw new Error('no DMI'); } };\n");
  await writeFile(join(brokenDir, 'e-cjs-manager.cjs'),
    "module.exports = { manager: { name: 'CjsManager', evaluateHardwareSupport: () => 1, cjs_hello: () => 'hi from cjs' } };\n");
  await writeFile(join(brokenDir, 'notes.txt'), 'not a module');
  server = http.createServer((req, res) => {
    const body = req.url === '/bios.bin' ? BIOS : req.url === '/bmc.bin' ? BMC : null;
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    // Connection: close is what trips undici on Node 20; the firmware downloader must cope.
    res.writeHead(200, { 'content-length': body.length, connection: 'close' }).end(body);
  });
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  process.env.ACME_STATE_DIR = join(work, 'acme');
});

afterEach(() => {
  resetManagers();
  delete process.env.ACME_HW;
});

after(async () => {
  setHardwareContext({ deviceAllowlist: null, node: null });
  delete process.env.ACME_STATE_DIR;
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  await loops?.dispose();
  await rm(work, { recursive: true, force: true });
});

async function loadAcme(): Promise<string[]> {
  process.env.ACME_HW = '1';
  await loadManagers({ pluginDirs: [EXAMPLES, brokenDir] });
  return (await getManagers()).map((m) => m.name);
}

const runCmd = (name: string, params: unknown): Promise<unknown> => {
  const cmd = commands[name];
  assert.ok(cmd);
  const ctx = { progress: () => undefined, signal: new AbortController().signal };
  return (cmd.run as (p: unknown, c: unknown) => Promise<unknown>)(cmd.params ? cmd.params.parse(params) : params, ctx);
};

test('on ACME hardware the plugin outranks the generic manager; broken plugins are skipped', async () => {
  assert.deepEqual(await loadAcme(), ['AcmeHardwareManager', 'GenericHardwareManager', 'CjsManager']);
  assert.equal(await dispatchToManagers('cjs_hello'), 'hi from cjs');
});

test('elsewhere the plugin reports NONE and only the built-ins remain', async () => {
  await loadManagers({ pluginDirs: [EXAMPLES] });
  assert.deepEqual((await getManagers()).map((m) => m.name), ['GenericHardwareManager']);
});

test('get_clean_steps: the plugin step appears, the overridden step is the plugin one, versions of both', async () => {
  await loadAcme();
  const r = (await runCmd('get_clean_steps', { node: {}, ports: [] })) as {
    clean_steps: Record<string, { step: string; priority: number }[]>;
    hardware_manager_version: Record<string, string>;
  };
  const acme = r.clean_steps.AcmeHardwareManager?.map((s) => `${s.step}:${s.priority}`);
  const generic = r.clean_steps.GenericHardwareManager?.map((s) => s.step) ?? [];
  assert.deepEqual(acme, ['erase_devices:10', 'acme_apply_bios_profile:45', 'update_firmware:0']);
  assert.ok(!generic.includes('erase_devices'));
  assert.ok(generic.includes('erase_devices_metadata'));
  assert.deepEqual(r.hardware_manager_version, {
    acme_hardware_manager: '1.0', generic_hardware_manager: '1.2', CjsManager: '1.0',
  });
});

test('the plugin clean step runs with its args', async () => {
  await loadAcme();
  const r = await runCmd('execute_clean_step', {
    step: { step: 'acme_apply_bios_profile', priority: 45, interface: 'deploy', args: { profile: 'quiet' } },
    node: {}, ports: [],
  });
  assert.deepEqual(r, {
    clean_result: { profile: 'quiet' },
    clean_step: { step: 'acme_apply_bios_profile', priority: 45, interface: 'deploy', args: { profile: 'quiet' } },
  });
  assert.equal(await readFile(join(process.env.ACME_STATE_DIR ?? '', 'bios-profile'), 'utf8'), 'quiet\n');
});

test('erase_devices goes to the plugin, erase_devices_metadata falls through to generic (loop devices)',
  { skip: !isRoot && 'needs root for loop devices' }, async () => {
    loops ??= await createLoopDevices(2, 32);
    setHardwareContext({ deviceAllowlist: loops.devices.map((d) => d.path), inRamdisk: false });
    await loadAcme();
    for (const d of loops.devices) await run('dd', ['if=/dev/urandom', `of=${d.path}`, 'bs=1M', 'count=32', 'status=none']);
    const step = (name: string) => ({ step: { step: name, priority: 10, interface: 'deploy' }, node: {}, ports: [] });
    const erased = (await runCmd('execute_clean_step', step('erase_devices'))) as { clean_result: Record<string, string> };
    assert.deepEqual(erased.clean_result, Object.fromEntries(loops.devices.map((d) => [d.path, 'acme controller erase'])));
    const fh = await open(loops.devices[0]?.path ?? '', 'r');
    const buf = Buffer.alloc(32 * MiB);
    await fh.read(buf, 0, buf.length, 0);
    await fh.close();
    assert.ok(buf.every((b) => b === 0));
    const meta = (await runCmd('execute_clean_step', step('erase_devices_metadata'))) as { clean_result: Record<string, string> };
    assert.deepEqual(Object.values(meta.clean_result), ['metadata erased', 'metadata erased']);
    assert.equal(await dispatchToManagers('getOsInstallDevice', { properties: { root_device: { name: loops.devices[1]?.path } } }),
      loops.devices[1]?.path);
  });

test('update_firmware: download over HTTP, checksum verified, the plugin flasher writes the image', async () => {
  await loadAcme();
  const target = join(work, 'flash-ok');
  const r = (await runCmd('execute_clean_step', {
    step: {
      step: 'update_firmware', priority: 0, interface: 'deploy',
      args: {
        components: [
          { component: 'bios', url: `${base}/bios.bin`, checksum: `sha256:${sha256(BIOS)}` },
          { component: 'bmc', url: `${base}/bmc.bin`, checksum: sha512(BMC) },
        ],
        target_dir: target,
      },
    },
    node: {}, ports: [],
  })) as { clean_result: { components: { component: string; checksum: string; result: { bytes: number } }[] } };
  assert.deepEqual(r.clean_result.components.map((c) => [c.component, c.result.bytes]), [['bios', BIOS.length], ['bmc', BMC.length]]);
  assert.equal(r.clean_result.components[0]?.checksum, `sha256:${sha256(BIOS)}`);
  assert.deepEqual(await readFile(join(target, 'bios.rom')), BIOS);
  assert.deepEqual(await readFile(join(target, 'bmc.rom')), BMC);
});

test('update_firmware: a wrong checksum flashes nothing; a component without flasher is MethodNotFound', async () => {
  await loadAcme();
  const target = join(work, 'flash-bad');
  const args = (component: string, url: string, checksum: string) => ({
    step: { step: 'update_firmware', args: { components: [{ component, url, checksum }], target_dir: target } }, node: {}, ports: [],
  });
  await assert.rejects(runCmd('execute_clean_step', args('bios', `${base}/bios.bin`, `sha256:${sha256(BMC)}`)), ImageChecksumError);
  assert.equal(existsSync(join(target, 'bios.rom')), false);
  await assert.rejects(runCmd('execute_clean_step', args('nic', `${base}/bmc.bin`, `sha256:${sha256(BMC)}`)), (e: unknown) =>
    e instanceof HardwareManagerMethodNotFound && /flash_firmware_nic/.test(e.details));
  await assert.rejects(runCmd('execute_clean_step', args('bios', `${base}/missing.bin`, `sha256:${sha256(BMC)}`)), /HTTP 404/);
});

test('without the plugin, the generic manager has no flasher', async () => {
  await loadManagers({ pluginDirs: [] });
  await assert.rejects(
    dispatchToManagers('update_firmware', { node: {}, ports: [], args: { components: [{ component: 'bios', url: `${base}/bios.bin`, checksum: sha256(BIOS) }] } }),
    HardwareManagerMethodNotFound,
  );
});
