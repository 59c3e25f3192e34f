/**
 * Software RAID on loop devices: apply_configuration (deploy step) builds a RAID1 over two loop devices, the md
 * device becomes the root device, data survives failing and removing one member, delete_configuration (clean
 * step) stops the array and zeroes the superblocks. Needs md in the running kernel (/proc/mdstat).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { commands as clean } from '../../agent/extensions/clean.js';
import { commands as deploy } from '../../agent/extensions/deploy.js';
import { have, run } from '../../common/exec.js';
import { setHardwareContext } from '../../hardware-managers/context.js';
import { dispatchToManagers, loadManagers, resetManagers } from '../../hardware-managers/dispatch.js';
import { mdAvailable, partitionPath } from '../../hardware-managers/generic/raid.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';

const MD = '/dev/md0';
const why = (): string | false => {
  if (process.getuid?.() !== 0) return 'needs root for loop devices';
  if (!mdAvailable()) return 'the running kernel has no md (software RAID) support: /proc/mdstat is missing';
  if (existsSync(MD)) return `${MD} already exists on this machine; not touching it`;
  return false;
};
const skip = why();
let loops: LoopSet | undefined;

before(async () => {
  if (skip) return;
  if (!(await have('mdadm'))) throw new Error('mdadm is not installed (scripts/setup-system.sh installs it)');
  loops = await createLoopDevices(2, 64);
  setHardwareContext({ deviceAllowlist: loops.devices.map((d) => d.path), inRamdisk: false, minRootDeviceBytes: 16 * 1024 * 1024 });
  resetManagers();
  await loadManagers();
});

after(async () => {
  if (!skip && existsSync(MD)) await run('mdadm', ['--stop', MD], { okCodes: [0, 1] });
  setHardwareContext({ deviceAllowlist: null, node: null, minRootDeviceBytes: 4 * 1024 ** 3 });
  resetManagers();
  await loops?.dispose();
});

const call = (cmds: typeof clean, name: string, params: unknown): Promise<unknown> => {
  const c = cmds[name];
  assert.ok(c);
  const ctx = { progress: () => undefined, signal: new AbortController().signal };
  return (c.run as (p: unknown, x: unknown) => Promise<unknown>)(c.params ? c.params.parse(params) : params, ctx);
};

async function readAt(dev: string, len: number): Promise<Buffer> {
  const fh = await open(dev, 'r');
  try {
    const b = Buffer.alloc(len);
    await fh.read(b, 0, len, 0);
    return b;
  } finally {
    await fh.close();
  }
}

const RAID1 = { logical_disks: [{ size_gb: 'MAX', raid_level: '1', controller: 'software', is_root_volume: true }] };

test('RAID1 over two loop devices survives losing a member; delete_configuration removes it', { skip }, async () => {
  const [a, b] = (loops?.devices ?? []).map((d) => d.path);
  assert.ok(a && b);
  const applied = (await call(deploy, 'execute_deploy_step', {
    step: { step: 'apply_configuration', priority: 0, interface: 'raid', args: { raid_config: RAID1, delete_existing: true } },
    node: {}, ports: [],
  })) as { deploy_result: unknown };
  assert.deepEqual(applied.deploy_result, { logical_disks: RAID1.logical_disks });
  assert.ok(existsSync(MD));
  assert.equal(await dispatchToManagers('getOsInstallDevice', { target_raid_config: RAID1 }), MD);

  await run('mdadm', ['--wait', MD], { okCodes: [0, 1], timeoutMs: 120_000 });
  const data = randomBytes(1024 * 1024);
  const fh = await open(MD, 'r+');
  await fh.write(data, 0, data.length, 0);
  await fh.datasync();
  await fh.close();

  const gone = partitionPath(b, 1);
  await run('mdadm', [MD, '--fail', gone]);
  await run('mdadm', [MD, '--remove', gone]);
  assert.match((await run('mdadm', ['--detail', MD])).stdout, /degraded/i);
  await run('blockdev', ['--flushbufs', MD]);
  assert.deepEqual(await readAt(MD, data.length), data);

  const deleted = (await call(clean, 'execute_clean_step', {
    step: { step: 'delete_configuration', priority: 0, interface: 'raid' }, node: {}, ports: [],
  })) as { clean_result: { deleted_arrays: string[] } };
  assert.deepEqual(deleted.clean_result.deleted_arrays, [MD]);
  assert.equal(existsSync(MD), false);
  for (const p of [partitionPath(a, 1), gone]) {
    const ex = await run('mdadm', ['--examine', p], { okCodes: [0, 1, 2] });
    assert.notEqual(ex.exitCode, 0, `${p} still has an md superblock`);
  }
});
