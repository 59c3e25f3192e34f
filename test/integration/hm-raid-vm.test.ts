/**
 * Software RAID for real, in the deploy ramdisk: a QEMU VM (TCG) boots build/ramdisk with two sparse virtio disks,
 * and the host drives its agent through the command API only:
 *  1. clean.execute_clean_step create_configuration (RAID1, size MAX, root volume): md0 is raid1 over vda1+vdb1
 *     and poll.get_hardware_info lists it;
 *  2. deploy.execute_deploy_step write_image puts a whole-disk image on the RAID root volume (md0), which reads it
 *     back;
 *  3. one member is failed, removed and its data area zeroed: md0 still reads back the image, and so does the
 *     surviving member at its md data offset;
 *  4. delete_configuration stops the degraded array, zeroes both superblocks (the removed member's by probing)
 *     and wipes the disks;
 *  5. apply_configuration (deploy step) builds two named volumes: RAID0 1 GiB and RAID1 MAX as root volume;
 *  6. the VM reboots (new QEMU, same disks): the agent assembles both arrays at start-up and write_image finds
 *     the root volume by its name although it now is /dev/md12x;
 *  7. delete_configuration with the RAID0 volume in the skip list deletes only the root volume and keeps the
 *     partition tables; without the skip list it deletes everything; after QEMU is killed the host checks the disk
 *     files themselves (no md magic where any member was, no GPT).
 * The md state, checksums and the member failure come from a test-only hardware manager
 * (test/fixtures/raid-vm-plugin) appended to this VM's initramfs as a second cpio archive.
 * BMTS_KEEP_LOGS=1 keeps the serial logs (agent log included) of passing runs too.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../common/exec.js';
import { REPO_ROOT } from '../../ramdisk-build/build.js';
import { httpCall } from '../fixtures/agent-http.js';
import { startConductorStub, type ConductorStub } from '../fixtures/conductor-stub.js';
import { buildRawDiskImage, serveImages, type ImageServer } from '../fixtures/images.js';
import { GUEST_HOST_ADDR } from '../../lab/qemu.js';
import { bootRamdiskVm, ensureRamdisk, type AgentVm, type RamdiskFiles } from '../fixtures/ramdisk.js';
import { readAt } from '../fixtures/device-bytes.js';

const MiB = 1024 * 1024;
const MAC = '52:54:00:b3:7a:5d';
/** Room for a 1 GiB RAID0 (512 MiB per member) plus a small RAID1, sparse on the host. */
const DISK_MIB = 600;
const IMAGE_MIB = 24;
const PLUGIN_DIR_IN_VM = '/usr/lib/bmts-raid-vm-test';
const MD_MAGIC = 0xa92b4efc;

const RAID1 = { logical_disks: [{ size_gb: 'MAX', raid_level: '1', controller: 'software', is_root_volume: true }] };
const TWO_VOLUMES = {
  logical_disks: [
    { size_gb: 1, raid_level: '0', controller: 'software', volume_name: 'scratch' },
    { size_gb: 'MAX', raid_level: '1', controller: 'software', is_root_volume: true, volume_name: 'root' },
  ],
};

interface MdArray {
  md: string;
  level: string | null;
  array_state: string | null;
  raid_disks: number;
  degraded: number;
  sync_action: string | null;
  metadata_version: string | null;
  name?: string | null;
  size_bytes: number;
  slaves: string[];
  members: Record<string, { state: string | null; slot: string | null }>;
}
interface Status {
  mdstat: string | null;
  arrays: MdArray[];
  detail: Record<string, string>;
  superblocks: Record<string, boolean>;
  partitions: Record<string, { start_bytes: number; size_bytes: number }>;
  personalities: string | null;
}
interface CommandRecord {
  command_status?: string;
  command_result?: Record<string, unknown> | null;
  command_error?: unknown;
}

/** The test plugin as a newc cpio archive to append to the initramfs (the kernel unpacks concatenated archives). */
async function pluginArchive(dir: string): Promise<string> {
  const stage = join(dir, 'plugin-stage');
  const inVm = join(stage, PLUGIN_DIR_IN_VM.slice(1));
  await mkdir(inVm, { recursive: true });
  await copyFile(join(REPO_ROOT, 'test/fixtures/raid-vm-plugin/raid-vm-test-manager.mjs'), join(inVm, 'raid-vm-test-manager.mjs'));
  const entries = ['usr', 'usr/lib', PLUGIN_DIR_IN_VM.slice(1), `${PLUGIN_DIR_IN_VM.slice(1)}/raid-vm-test-manager.mjs`];
  const out = join(dir, 'plugin.cpio');
  await run('cpio', ['-o', '-H', 'newc', '-R', '0:0', '--quiet', '-F', out], { cwd: stage, input: `${entries.join('\n')}\n`, timeoutMs: 30_000 });
  return out;
}

/** Copy of the ramdisk's initramfs with the plugin archive appended (zero padding to 512 bytes is skipped). */
async function initramfsWithPlugin(initramfs: string, dir: string): Promise<string> {
  const combined = join(dir, 'initramfs+plugin');
  await copyFile(initramfs, combined);
  const size = (await stat(combined)).size;
  const pad = (512 - (size % 512)) % 512;
  await appendFile(combined, Buffer.alloc(pad));
  await appendFile(combined, await readFile(await pluginArchive(dir)));
  return combined;
}


const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** One boot of the VM: its own conductor stub (a stub hands the token out once), its agent reachable from here. */
interface Session {
  avm: AgentVm;
  stub: ConductorStub;
  command(name: string, params: Record<string, unknown>, timeoutMs?: number): Promise<Record<string, unknown>>;
  dispose(keepLogs: boolean): Promise<void>;
}

async function bootSession(files: RamdiskFiles, disks: string[], imagePort: number): Promise<Session> {
  const stub = await startConductorStub({ heartbeatTimeout: 60 });
  let avm: AgentVm;
  try {
    avm = await bootRamdiskVm({
      files,
      conductorPort: stub.port,
      mac: MAC,
      diskMiB: 0,
      memoryMiB: 768,
      append: ['ipa-lookup-interval=1', `ipa-hardware-manager-dir=${PLUGIN_DIR_IN_VM}`],
      extraGuestPorts: [imagePort],
      vm: { disks },
    });
  } catch (e) {
    await stub.close();
    throw e;
  }
  const session: Session = {
    avm,
    stub,
    async command(name, params, timeoutMs = 180_000) {
      const r = await httpCall(`${avm.agentUrl}/v1/commands/?wait=true&agent_token=${encodeURIComponent(stub.token)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: { name, params },
        timeoutMs,
      });
      const rec = r.json as CommandRecord | undefined;
      assert.equal(r.status, 200, `${name}: HTTP ${r.status} ${r.text}`);
      assert.equal(rec?.command_status, 'SUCCEEDED', `${name} ${JSON.stringify(params).slice(0, 300)}: ${JSON.stringify(rec?.command_error)}`);
      return rec?.command_result ?? {};
    },
    async dispose(keepLogs) {
      await avm.dispose(keepLogs);
      await stub.close();
    },
  };
  const deadline = Date.now() + 240_000;
  try {
    while (!stub.heartbeats[0]) {
      if (!avm.vm.running()) throw new Error(`QEMU exited before the first heartbeat (serial log: ${avm.vm.serialLog})`);
      if (Date.now() > deadline) throw new Error(`no heartbeat within 240 s (serial log: ${avm.vm.serialLog})`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } catch (e) {
    await session.dispose(true);
    throw e;
  }
  return session;
}

test('software RAID in the ramdisk VM: create, write, degrade, read back, apply two volumes, delete', { timeout: 20 * 60_000 }, async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root (the ramdisk build makes device nodes)');
    return;
  }
  if (!existsSync(join(REPO_ROOT, 'agent/main.ts'))) {
    t.skip('agent/main.ts does not exist: the ramdisk would run the stand-in agent');
    return;
  }
  const built = await ensureRamdisk();
  if (!built.ok) {
    t.skip(built.reason);
    return;
  }
  const mods = built.manifest.kernel_modules as { requested?: string[]; missing?: string[] } | undefined;
  for (const m of ['md_mod', 'raid0', 'raid1', 'raid10', 'raid456']) {
    assert.ok(mods?.requested?.includes(m) && !mods.missing?.includes(m), `ramdisk carries kernel module ${m}`);
  }

  const dir = await mkdtemp(join(tmpdir(), 'bmts-raid-vm-'));
  const disks = [join(dir, 'disk-a.img'), join(dir, 'disk-b.img')];
  let images: ImageServer | null = null;
  const sessions: Session[] = [];
  let failed = true;
  const timings: Record<string, number> = {};
  let mark = Date.now();
  const lap = (what: string): void => {
    const now = Date.now();
    timings[what] = (now - mark) / 1000;
    mark = now;
  };

  try {
    for (const d of disks) {
      await writeFile(d, '');
      await truncate(d, DISK_MIB * MiB);
    }
    const image = await buildRawDiskImage(dir, { sizeMiB: IMAGE_MIB, label: 'gpt', fs: 'ext4', name: 'image.raw' });
    const imageBytes = await readFile(image.path);
    // The partition area is what must survive: write_image rewrites the GPT headers (backup moved to the disk end).
    const partRange = { offset: image.partitionOffset, length: (IMAGE_MIB - 2) * MiB };
    const partSha = sha256(imageBytes.subarray(partRange.offset, partRange.offset + partRange.length));
    images = await serveImages(dir);
    const imagePort = Number(new URL(images.url('x')).port);
    const imageInfo = {
      id: 'raid-vm-image',
      urls: [`http://${GUEST_HOST_ADDR}:${imagePort}/image.raw`],
      disk_format: 'raw',
      container_format: 'bare',
      image_type: 'whole-disk',
      os_hash_algo: 'sha256',
      os_hash_value: sha256(imageBytes),
    };
    const initramfs = await initramfsWithPlugin(built.initramfs, dir);
    lap('prepare');
    const bootVm = async (): Promise<Session> => {
      const s = await bootSession({ ...built, initramfs }, disks, imagePort);
      sessions.push(s);
      return s;
    };

    let vm = await bootVm();
    lap('boot_to_heartbeat');
    const command = (name: string, params: Record<string, unknown>, timeoutMs?: number): Promise<Record<string, unknown>> =>
      vm.command(name, params, timeoutMs);
    const node = (raid: unknown): Record<string, unknown> => ({
      uuid: vm.stub.nodeUuid, properties: {}, instance_info: {}, driver_internal_info: {}, target_raid_config: raid,
    });
    const cleanStep = (step: string, raid: unknown, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> =>
      command('clean.execute_clean_step', {
        step: { step, interface: step.startsWith('raid_vm_test') ? 'deploy' : 'raid', priority: 0, args },
        node: node(raid), ports: [], clean_version: {},
      });
    const deployStep = (step: string, iface: string, raid: unknown, args: Record<string, unknown>): Promise<Record<string, unknown>> =>
      command('deploy.execute_deploy_step', {
        step: { step, interface: iface, priority: 0, args }, node: node(raid), ports: [], deploy_version: {},
      }, 300_000);
    const status = async (): Promise<Status> => (await cleanStep('raid_vm_test_status', {})).clean_result as Status;
    const devSha = async (args: Record<string, unknown>): Promise<{ sha256: string; offset: number; length: number; data_offset: number }> =>
      (await cleanStep('raid_vm_test_sha256', {}, args)).clean_result as { sha256: string; offset: number; length: number; data_offset: number };

    // 0. Nothing there yet; the test manager is loaded (its step answers).
    const before = await status();
    assert.deepEqual(before.arrays, [], `no md arrays at boot: ${before.mdstat}`);
    assert.ok(before.mdstat !== null, 'md_mod is loaded in the ramdisk (/proc/mdstat exists)');
    assert.ok(Object.values(before.superblocks).every((x) => !x), JSON.stringify(before.superblocks));

    // 1. create_configuration, RAID1 over both disks.
    const created = await cleanStep('create_configuration', RAID1);
    assert.deepEqual(created.clean_result, { logical_disks: RAID1.logical_disks });
    lap('create_raid1');
    const s1 = await status();
    assert.equal(s1.arrays.length, 1, s1.mdstat ?? '');
    const md0 = s1.arrays[0];
    assert.ok(md0);
    assert.equal(md0.md, '/dev/md0');
    assert.equal(md0.level, 'raid1');
    assert.equal(md0.raid_disks, 2);
    assert.deepEqual(md0.slaves, ['/dev/vda1', '/dev/vdb1']);
    assert.equal(md0.degraded, 0);
    assert.equal(md0.metadata_version, '1.2');
    assert.match(s1.personalities ?? '', /\[raid1\]/, 'raid1 personality loaded on demand');
    assert.ok(md0.size_bytes > (DISK_MIB - 8) * MiB && md0.size_bytes < DISK_MIB * MiB, `md0 size ${md0.size_bytes}`);
    assert.equal(s1.superblocks['/dev/vda1'], true);
    assert.equal(s1.superblocks['/dev/vdb1'], true);
    const memberParts: Record<string, { start_bytes: number; size_bytes: number }> = { ...s1.partitions };
    const inv = await command('poll.get_hardware_info', {});
    const invDisks = (inv.disks ?? []) as Array<{ name?: string; size?: number }>;
    const invMd = invDisks.find((d) => d.name === '/dev/md0');
    assert.ok(invMd, `poll.get_hardware_info lists /dev/md0: ${JSON.stringify(invDisks.map((d) => d.name))}`);
    assert.equal(invMd.size, md0.size_bytes);

    // 2. The RAID root volume receives the image and reads it back.
    const written = await deployStep('write_image', 'deploy', RAID1, { image_info: imageInfo });
    assert.equal((written.deploy_result as { device?: string }).device, '/dev/md0', `write_image chose the RAID root volume: ${JSON.stringify(written)}`);
    lap('write_image_md0');
    assert.equal((await devSha({ device: '/dev/md0', ...partRange })).sha256, partSha, 'md0 reads back the image');

    // 3. Lose a member: md0 still reads back the image, from the member that is left.
    const degraded = (await cleanStep('raid_vm_test_degrade', {}, {
      md: '/dev/md0', member: '/dev/vdb1', length: partRange.offset + partRange.length,
    })).clean_result as { arrays: MdArray[]; zeroed_bytes: number; data_offset: number };
    const dmd0 = degraded.arrays.find((x) => x.md === '/dev/md0');
    assert.ok(dmd0);
    assert.equal(dmd0.degraded, 1, 'md0 is degraded');
    assert.deepEqual(dmd0.slaves, ['/dev/vda1']);
    assert.ok(degraded.zeroed_bytes >= partRange.offset + partRange.length, `zeroed ${degraded.zeroed_bytes}`);
    assert.equal((await devSha({ device: '/dev/md0', ...partRange })).sha256, partSha, 'degraded md0 still reads back the image');
    const onA = await devSha({ device: '/dev/vda1', member: true, ...partRange });
    assert.equal(onA.sha256, partSha, 'the surviving member holds the image at its md data offset');
    const onB = await devSha({ device: '/dev/vdb1', member: true, ...partRange });
    assert.notEqual(onB.sha256, partSha, 'the removed member no longer holds it (so md0 read it from vda1)');
    assert.equal((await status()).superblocks['/dev/vdb1'], true, 'the removed member keeps its (stale) superblock');
    lap('degrade_and_verify');

    // 4. delete_configuration: the degraded array stops, both superblocks go (vdb1's found by probing), disks wiped.
    const del1 = (await cleanStep('delete_configuration', RAID1)).clean_result as { deleted_arrays?: string[]; wiped_disks?: string[] };
    assert.deepEqual(del1, { deleted_arrays: ['/dev/md0'], wiped_disks: ['/dev/vda', '/dev/vdb'] });
    const s4 = await status();
    assert.deepEqual(s4.arrays, [], s4.mdstat ?? '');
    assert.deepEqual(Object.keys(s4.superblocks).sort(), ['/dev/vda', '/dev/vdb'], 'no partitions left');
    assert.ok(Object.values(s4.superblocks).every((x) => !x), JSON.stringify(s4.superblocks));
    lap('delete_raid1');

    // 5. apply_configuration (deploy step): two named volumes, RAID0 1 GiB and RAID1 MAX as root volume.
    const applied = await deployStep('apply_configuration', 'raid', TWO_VOLUMES, { raid_config: TWO_VOLUMES, delete_existing: true });
    assert.deepEqual(applied.deploy_result, { logical_disks: TWO_VOLUMES.logical_disks });
    const s5 = await status();
    assert.deepEqual(s5.arrays.map((x) => [x.md, x.level, x.raid_disks, x.slaves.join(' ')]), [
      ['/dev/md0', 'raid0', 2, '/dev/vda1 /dev/vdb1'],
      ['/dev/md1', 'raid1', 2, '/dev/vda2 /dev/vdb2'],
    ]);
    assert.deepEqual(s5.arrays.map((x) => x.name?.replace(/^[^:]*:/, '')), ['scratch', 'root'], 'volume_name is the md name');
    const [v0, v1] = s5.arrays;
    assert.ok(v0 && v1);
    assert.ok(Math.abs(v0.size_bytes - 1024 * MiB) <= 4 * MiB, `RAID0 volume is 1 GiB: ${v0.size_bytes}`);
    assert.ok(v1.size_bytes > 40 * MiB, `RAID1 MAX volume takes the rest: ${v1.size_bytes}`);
    for (const p of ['/dev/vda1', '/dev/vda2', '/dev/vdb1', '/dev/vdb2']) {
      const part = s5.partitions[p];
      assert.ok(part, `${p} exists`);
      memberParts[`${p} (two volumes)`] = part;
    }
    lap('apply_two_volumes');

    // 6. Reboot (a new QEMU on the same disks, as when the node comes back to the ramdisk to deploy): the agent's
    // start-up assembles both arrays from their superblocks, and write_image finds the root volume by its name
    // (mdadm assembles named arrays as /dev/md127 and down, not as the md1 they were built as).
    await vm.dispose(process.env.BMTS_KEEP_LOGS === '1');
    vm = await bootVm();
    lap('reboot_to_heartbeat');
    const s6 = await status();
    const byName = new Map(s6.arrays.map((x) => [x.name?.replace(/^[^:]*:/, ''), x]));
    assert.deepEqual([...byName.keys()].sort(), ['root', 'scratch'], `both arrays assembled after the reboot: ${s6.mdstat}`);
    const rootMd = byName.get('root');
    assert.ok(rootMd);
    assert.equal(rootMd.level, 'raid1');
    assert.deepEqual(rootMd.slaves, ['/dev/vda2', '/dev/vdb2']);
    assert.equal(byName.get('scratch')?.level, 'raid0');
    const written2 = await deployStep('write_image', 'deploy', TWO_VOLUMES, { image_info: { ...imageInfo, id: 'raid-vm-image-2' } });
    assert.equal((written2.deploy_result as { device?: string }).device, rootMd.md, 'the is_root_volume volume is the root device');
    assert.equal((await devSha({ device: rootMd.md, ...partRange })).sha256, partSha, 'the root volume reads back the image');
    lap('write_image_root_volume');

    // 7. delete_configuration with the scratch volume in the skip list: only the root volume goes, the disks keep
    // their partition tables; then without the skip list: everything goes.
    const keepScratch = { ...node(TWO_VOLUMES), properties: { skip_block_devices: [{ volume_name: 'scratch' }] } };
    const del2 = await command('clean.execute_clean_step', {
      step: { step: 'delete_configuration', interface: 'raid', priority: 0, args: {} }, node: keepScratch, ports: [], clean_version: {},
    });
    assert.deepEqual(del2.clean_result, { deleted_arrays: [rootMd.md], wiped_disks: [] });
    const s7 = await status();
    assert.deepEqual(s7.arrays.map((x) => x.name?.replace(/^[^:]*:/, '')), ['scratch']);
    assert.deepEqual([s7.superblocks['/dev/vda1'], s7.superblocks['/dev/vdb1'], s7.superblocks['/dev/vda2'], s7.superblocks['/dev/vdb2']],
      [true, true, false, false], JSON.stringify(s7.superblocks));
    const del3 = (await cleanStep('delete_configuration', TWO_VOLUMES)).clean_result as { deleted_arrays?: string[]; wiped_disks?: string[] };
    assert.deepEqual(del3, { deleted_arrays: [byName.get('scratch')?.md], wiped_disks: ['/dev/vda', '/dev/vdb'] });
    const s8 = await status();
    assert.deepEqual(s8.arrays, [], s8.mdstat ?? '');
    assert.deepEqual(Object.keys(s8.superblocks).sort(), ['/dev/vda', '/dev/vdb'], 'no partitions left');
    assert.ok(Object.values(s8.superblocks).every((x) => !x), JSON.stringify(s8.superblocks));
    lap('delete_two_volumes');

    // The disk files themselves, with QEMU gone: no md magic where any member started, no GPT.
    await vm.avm.vm.stop();
    for (const [p, part] of Object.entries(memberParts)) {
      const file = p.startsWith('/dev/vda') ? disks[0] : p.startsWith('/dev/vdb') ? disks[1] : null;
      if (!file) continue;
      const magic = await readAt(file, part.start_bytes + 4096, 4);
      assert.notEqual(magic.readUInt32LE(0), MD_MAGIC, `no md superblock left at ${p} (offset ${part.start_bytes + 4096})`);
    }
    for (const file of disks) {
      assert.notEqual((await readAt(file, 512, 8)).toString('latin1'), 'EFI PART', `${file}: GPT zapped`);
    }
    t.diagnostic(`timings (s): ${JSON.stringify(timings)}`);
    failed = false;
  } finally {
    for (const s of sessions) {
      if (failed) {
        t.diagnostic(`serial log kept: ${s.avm.vm.serialLog}`);
        console.error(`hm-raid-vm: serial log kept at ${s.avm.vm.serialLog}`);
        console.error(s.avm.vm.readSerial().split('\n').slice(-60).join('\n'));
      }
      await s.dispose(failed || process.env.BMTS_KEEP_LOGS === '1');
    }
    await images?.close();
    await rm(dir, { recursive: true, force: true });
  }
});
