/**
 * The erase clean steps, run through the clean extension's execute_clean_step on loop devices the test created
 * (and only those: the allow-list is exactly them).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { existsSync } from 'node:fs';
import { BlockDeviceEraseError } from '../../protocol/agent-api.js';
import { commands } from '../../agent/extensions/clean.js';
import { run } from '../../common/exec.js';
import { setHardwareContext } from '../../hardware-managers/context.js';
import { loadManagers, resetManagers } from '../../hardware-managers/dispatch.js';
import { refreshPartitions } from '../../block/devices.js';
import type { NodeInfo } from '../../hardware-managers/types.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';
import { withMount } from '../../block/mount.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const isRoot = process.getuid?.() === 0;
const skip = !isRoot && 'needs root for loop devices';
let loops: LoopSet | undefined;
let dir = '';

const paths = (): string[] => loops?.devices.map((d) => d.path) ?? [];
const dev = (i: number): string => paths()[i] ?? assert.fail(`no loop ${i}`);

before(async () => {
  if (!isRoot) return;
  loops = await createLoopDevices(3, 64);
  dir = await mkdtemp(join(tmpdir(), 'bmts-hm-erase-'));
  setHardwareContext({ deviceAllowlist: paths(), inRamdisk: false });
  resetManagers();
  await loadManagers();
});

after(async () => {
  setHardwareContext({ deviceAllowlist: null, node: null });
  resetManagers();
  if (dir) await rm(dir, { recursive: true, force: true });
  await loops?.dispose();
});

interface Progress { updates: Record<string, unknown>[] }
async function cleanStep(step: string, node: NodeInfo = {}, p: Progress = { updates: [] }): Promise<Record<string, string>> {
  const cmd = commands.execute_clean_step;
  assert.ok(cmd);
  const params = cmd.params?.parse({ step: { step, priority: 10, interface: 'deploy' }, node, ports: [] });
  const ctx = { progress: (u: Record<string, unknown>) => void p.updates.push(u), signal: new AbortController().signal };
  const r = (await (cmd.run as (a: unknown, c: unknown) => Promise<unknown>)(params, ctx)) as Record<string, unknown>;
  assert.deepEqual(r.clean_step, { step, priority: 10, interface: 'deploy' });
  return r.clean_result as Record<string, string>;
}

async function fillRandom(d: string): Promise<void> {
  await run('dd', ['if=/dev/urandom', `of=${d}`, 'bs=1M', `count=${SIZE / MiB}`, 'oflag=direct', 'status=none']);
}

async function readRange(d: string, offset: number, len: number): Promise<Buffer> {
  const fh = await open(d, 'r');
  try {
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, offset);
    return buf;
  } finally {
    await fh.close();
  }
}
const isZero = (b: Buffer): boolean => b.every((x) => x === 0);

async function partitioned(d: string, label?: string): Promise<void> {
  await run('sgdisk', ['--zap-all', d], { okCodes: [0, 2] });
  await run('sgdisk', ['--new=1:0:+8M', ...(label ? [`--change-name=1:${label}`] : []), '--new=2:0:0', d]);
  await refreshPartitions(d);
  await run('mkfs.ext4', ['-q', '-F', `${d}p2`]);
}

const partitionsOf = (d: string): string[] => {
  const k = basename(d);
  return ['1', '2'].filter((n) => existsSync(`/sys/class/block/${k}p${n}`));
};

test('get_clean_steps lists the generic erase steps with IPA priorities', { skip }, async () => {
  const get = commands.get_clean_steps;
  assert.ok(get);
  const r = (await (get.run as (a: unknown, c: unknown) => Promise<unknown>)({ node: {}, ports: [] }, {})) as {
    clean_steps: Record<string, { step: string; priority: number }[]>;
    hardware_manager_version: Record<string, string>;
  };
  const byName = Object.fromEntries((r.clean_steps.GenericHardwareManager ?? []).map((s) => [s.step, s.priority]));
  assert.equal(byName.erase_devices_metadata, 99);
  assert.equal(byName.erase_devices, 10);
  assert.equal(byName.erase_devices_express, 0);
  assert.deepEqual(r.hardware_manager_version, { generic_hardware_manager: '1.2' });
});

test('erase_devices_metadata wipes tables and signatures at both ends, keeps the middle', { skip }, async () => {
  for (const d of paths()) await fillRandom(d);
  await partitioned(dev(0));
  const middle = await readRange(dev(0), 32 * MiB, 4096);
  assert.equal((await run('blkid', ['-p', '-o', 'value', '-s', 'PTTYPE', dev(0)], { okCodes: [0, 2] })).stdout.trim(), 'gpt');
  assert.deepEqual(partitionsOf(dev(0)), ['1', '2']);

  const res = await cleanStep('erase_devices_metadata');
  assert.deepEqual(Object.keys(res).sort(), [...paths()].sort());
  assert.ok(Object.values(res).every((v) => v === 'metadata erased'));
  const probe = await run('blkid', ['-p', dev(0)], { okCodes: [0, 2] });
  assert.equal(probe.exitCode, 2, `signatures left: ${probe.stdout}`);
  assert.deepEqual(partitionsOf(dev(0)), []);
  assert.ok(isZero(await readRange(dev(0), 0, MiB)));
  assert.ok(isZero(await readRange(dev(0), SIZE - MiB, MiB)));
  assert.deepEqual(await readRange(dev(0), 32 * MiB, 4096), middle);
});

test('erase_devices zeroes every allowed disk (zero-out offload where the kernel has it)', { skip }, async () => {
  for (const d of paths()) await fillRandom(d);
  const res = await cleanStep('erase_devices');
  for (const d of paths()) {
    assert.match(res[d] ?? '', /^(blkdiscard --zeroout|overwrite zero)$/);
    assert.ok(isZero(await readRange(d, 0, SIZE)), `${d} not zero`);
  }
});

test('erase_devices with agent_erase_devices_iterations overwrites with random passes then zeros, reporting progress', { skip }, async () => {
  await fillRandom(dev(1));
  const p: Progress = { updates: [] };
  const node = {
    driver_internal_info: { agent_erase_devices_iterations: 1, agent_erase_devices_zeroize: true },
    properties: { skip_block_devices: [{ name: dev(0) }, { name: dev(2) }] },
  };
  const res = await cleanStep('erase_devices', node, p);
  assert.deepEqual(res, { [dev(1)]: 'overwrite random+zero' });
  assert.ok(isZero(await readRange(dev(1), 0, SIZE)));
  const last = p.updates.filter((u) => u.device === dev(1)).at(-1);
  assert.equal(last?.bytes_total, 2 * SIZE);
  assert.equal(last?.bytes_done, 2 * SIZE);
  assert.equal(last?.percent, 100);
  assert.ok(p.updates.some((u) => u.pass_kind === 'random'));
});

test('skip-listed and protected disks are left alone', { skip }, async () => {
  for (const d of paths()) await fillRandom(d);
  await partitioned(dev(2), 'bmts-protected');
  const kept0 = await readRange(dev(0), 0, MiB);
  const kept2 = await readRange(dev(2), 20 * MiB, MiB);
  const res = await cleanStep('erase_devices', { properties: { skip_block_devices: [{ name: dev(0) }] } });
  assert.equal(res[dev(0)], undefined);
  assert.match(res[dev(2)] ?? '', /^skipped: label bmts-protected/);
  assert.ok(isZero(await readRange(dev(1), 0, SIZE)));
  assert.deepEqual(await readRange(dev(0), 0, MiB), kept0);
  assert.deepEqual(await readRange(dev(2), 20 * MiB, MiB), kept2);
  await run('wipefs', ['--force', '--all', `${dev(2)}p2`]);
  await run('sgdisk', ['--zap-all', dev(2)], { okCodes: [0, 2] });
  await refreshPartitions(dev(2));
});

test('a mounted disk fails the step with BlockDeviceEraseError, the others are still erased', { skip }, async () => {
  for (const d of paths()) await fillRandom(d);
  await run('mkfs.ext4', ['-q', '-F', dev(0)]);
  await withMount(dev(0), () =>
    assert.rejects(cleanStep('erase_devices_metadata'), (e: unknown) => {
      assert.ok(e instanceof BlockDeviceEraseError);
      assert.match(e.details, new RegExp(`${dev(0)}: Refusing to write to ${dev(0)}: ${dev(0)} is mounted`));
      assert.doesNotMatch(e.details, new RegExp(`${dev(1)}:`));
      return true;
    }), { parent: dir });
  assert.ok(isZero(await readRange(dev(1), 0, MiB)));
  assert.ok(!isZero(await readRange(dev(0), 0, 2 * MiB)), 'mounted device must be untouched');
});

test('erase_devices_express discards and wipes metadata', { skip }, async () => {
  await partitioned(dev(1));
  const res = await cleanStep('erase_devices_express');
  for (const d of paths()) assert.match(res[d] ?? '', /metadata erased$/);
  assert.equal((await run('blkid', ['-p', dev(1)], { okCodes: [0, 2] })).exitCode, 2);
  assert.deepEqual(partitionsOf(dev(1)), []);
});
