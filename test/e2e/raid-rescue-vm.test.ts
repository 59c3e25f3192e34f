/**
 * RAID and rescue through the agent in a QEMU node, end to end (issue 19), with the conductor and the `baremetal`
 * CLI. One VM behind ipmi_sim (iPXE, guestfwd, Serial-over-LAN) with two sparse virtio disks, `agent` RAID and
 * rescue interfaces, `ipmitool-socat` console; two ramdisk boots in all:
 *  1. `node set --target-raid-config` (software RAID1, MAX, root volume), then manual cleaning
 *     `raid.create_configuration`: the agent builds md RAID1 over both disks; raid_config records it.
 *  2. provide (no automated cleaning on this node) and `node deploy`: fast-track (the cleaning ramdisk is still
 *     up) writes the image onto the RAID root volume, as Ironic deploys onto software RAID; `active`.
 *  3. `node console enable` (SoL), `node rescue --rescue-password`: the ramdisk boots again, finalize_rescue sets
 *     the `rescue` user's password; on the serial console a wrong password is refused, the right one logs in and
 *     the shell shows the assembled RAID1 holding the deployed image. `node unrescue` → `active`.
 *  4. With QEMU stopped, the disk files themselves: an md 1.2 superblock (same array, RAID1) on a partition of each
 *     disk, and the image at the md data offset on both: the mirror is real.
 * Missing host tools skip (scripts/test.sh fails those under CI=true); anything else failing is a failure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { have, run } from '../../common/exec.js';
import { freePort, stripAnsi } from '../../lab/qemu.js';
import { ApiError, waitForProvisionState, type NodeJson } from '../../scripts/demo/api.js';
import { setUpLab, type Lab } from '../../scripts/demo/flow.js';
import { createLabNode, demoMac, type LabNode } from '../../scripts/demo/lab.js';
import { PhaseTimer } from '../../scripts/demo/progress.js';
import { Teardown } from '../../scripts/demo/teardown.js';
import { readAt } from '../fixtures/device-bytes.js';
import { diagnosticReporter, scenarioChain } from '../fixtures/e2e-scenarios.js';

const DISK_MIB = 512;
const IMAGE_BYTES = 4 * 1024 * 1024;
const RESCUE_PASSWORD = 'Rescue-Me-19';
const MD_MAGIC = 0xa92b4efc;
const RAID1 = { logical_disks: [{ size_gb: 'MAX', raid_level: '1', controller: 'software', is_root_volume: true }] };

async function missingTools(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (the ramdisk build makes device nodes)';
  const missing: string[] = [];
  for (const t of ['qemu-system-x86_64', 'ipmi_sim', 'ipmitool', 'socat', 'baremetal']) if (!(await have(t))) missing.push(t);
  return missing.length ? `missing tools: ${missing.join(', ')}` : undefined;
}

/** A raw "whole-disk image" of recognisable bytes (no OS: nothing boots it, the test reads it back). */
async function buildImage(file: string): Promise<{ md5: string; sha256: string }> {
  const data = Buffer.alloc(IMAGE_BYTES);
  for (let off = 0, i = 0; off < data.length; off += 32, i++) createHash('sha256').update(`bmts-raid-rescue-${i}`).digest().copy(data, off);
  // An MBR with one Linux partition, so the agent's partition probing sees a disk image, not noise.
  data.fill(0, 446, 512);
  data[446 + 4] = 0x83;
  data.writeUInt32LE(2048, 446 + 8);
  data.writeUInt32LE(IMAGE_BYTES / 512 - 2048, 446 + 12);
  data[510] = 0x55;
  data[511] = 0xaa;
  await writeFile(file, data);
  return { md5: createHash('md5').update(data).digest('hex'), sha256: createHash('sha256').update(data).digest('hex') };
}


/** Start offsets (bytes) of the partitions in a disk file: GPT entries, else the MBR's four. */
async function partitionStarts(file: string): Promise<number[]> {
  const lba1 = await readAt(file, 512, 512);
  if (lba1.subarray(0, 8).toString('latin1') === 'EFI PART') {
    const entriesLba = Number(lba1.readBigUInt64LE(72));
    const count = lba1.readUInt32LE(80);
    const size = lba1.readUInt32LE(84);
    const table = await readAt(file, entriesLba * 512, count * size);
    const starts: number[] = [];
    for (let i = 0; i < count; i++) {
      const e = table.subarray(i * size, (i + 1) * size);
      if (e.subarray(0, 16).some((b) => b !== 0)) starts.push(Number(e.readBigUInt64LE(32)) * 512);
    }
    return starts;
  }
  const mbr = await readAt(file, 0, 512);
  const starts: number[] = [];
  for (let i = 0; i < 4; i++) {
    const e = mbr.subarray(446 + i * 16, 462 + i * 16);
    if (e[4] !== 0) starts.push(e.readUInt32LE(8) * 512);
  }
  return starts;
}

interface MdMember {
  partitionStart: number;
  setUuid: string;
  level: number;
  raidDisks: number;
  dataOffsetBytes: number;
}

/** md metadata 1.2: the superblock sits 4 KiB into the member; data_offset (sectors) says where the data starts. */
async function mdMembers(file: string): Promise<MdMember[]> {
  const out: MdMember[] = [];
  for (const start of await partitionStarts(file)) {
    const sb = await readAt(file, start + 4096, 256);
    if (sb.length < 256 || sb.readUInt32LE(0) !== MD_MAGIC || sb.readUInt32LE(4) !== 1) continue;
    out.push({ partitionStart: start, setUuid: sb.subarray(16, 32).toString('hex'), level: sb.readInt32LE(72),
      raidDisks: sb.readUInt32LE(92), dataOffsetBytes: Number(sb.readBigUInt64LE(128)) * 512 });
  }
  return out;
}

/** A TCP console: everything read so far (ANSI stripped) and waits for a pattern after a given offset. */
function consoleReader(sock: Socket): { text(): string; mark(): number; wait(re: RegExp, from: number, ms: number): Promise<string> } {
  let raw = '';
  sock.on('data', (d: Buffer) => { raw += d.toString('latin1'); });
  const text = (): string => stripAnsi(raw);
  return {
    text,
    mark: () => text().length,
    async wait(re, from, ms) {
      const deadline = Date.now() + ms;
      for (;;) {
        const since = text().slice(from);
        if (re.test(since)) return since;
        if (sock.destroyed) throw new Error(`console closed while waiting for ${re}; last output: ${since.slice(-400)}`);
        if (Date.now() > deadline) throw new Error(`no ${re} on the console within ${ms / 1000} s; last output: ${since.slice(-600)}`);
        await sleep(200);
      }
    },
  };
}

test('RAID1 over two virtio disks in manual cleaning, deploy onto it, rescue login on the serial console', { timeout: 20 * 60_000 }, async (t) => {
  const why = await missingTools();
  if (why) {
    t.skip(why);
    return;
  }
  const workDir = await mkdtemp(join(tmpdir(), 'bmts-raid-rescue-'));
  const imageDir = join(workDir, 'images');
  await mkdir(imageDir);
  const teardown = new Teardown();
  const reporter = diagnosticReporter(t);
  const timer = new PhaseTimer();
  const { scenario, broken } = scenarioChain(t);
  let finished = false;
  let lab: Lab | undefined;
  let hw: LabNode | undefined;
  t.after(async () => {
    for (const f of await teardown.run()) t.diagnostic(`teardown: ${f}`);
    if (finished && !broken() && !process.env.BMTS_KEEP_LOGS) await rm(workDir, { recursive: true, force: true });
    else t.diagnostic(`kept for inspection: ${workDir} (serial: ${hw?.serialLog ?? 'n/a'}, conductor log: ${lab?.conductor.logFile ?? 'n/a'})`);
  });

  const image = await buildImage(join(imageDir, 'raid-root.img'));
  lab = await setUpLab({ workDir, imageDir, teardown, say: (l) => reporter.line(l), apiPort: await freePort() });
  const l = lab;
  hw = await createLabNode({ dir: workDir, name: 'raid-node', mac: demoMac(19), diskMiB: DISK_MIB, disks: 2, sol: true,
    guestPorts: [l.apiPort, l.bootPort, l.images.port], tftpRoot: l.tftpRoot, bootfile: 'boot.ipxe' });
  const node = hw;
  teardown.add('node raid-node (VM + BMC)', () => node.stop());
  const created = await l.api.createNode({
    name: 'raid-node', driver: 'ipmi', boot_interface: 'ipxe', deploy_interface: 'direct',
    power_interface: 'ipmi-native', management_interface: 'ipmi-native',
    raid_interface: 'agent', rescue_interface: 'agent', console_interface: 'ipmitool-socat',
    // Manual cleaning's RAID is what provide keeps: no automated cleaning (it would only wipe metadata here).
    automated_clean: false,
    driver_info: {
      ...node.bmc.driverInfo(),
      deploy_kernel: l.ramdisk.kernel,
      deploy_ramdisk: l.ramdisk.initramfs,
      // The cleaning ramdisk stays up and does the deploy: one boot fewer (Ironic's fast_track, per node).
      fast_track: 'true',
      kernel_append_params: `nofb nomodeset vga=normal console=ttyS0 quiet ipa-advertise-host=127.0.0.1 ipa-advertise-port=${node.agentPort}`,
    },
    properties: { cpu_arch: 'x86_64', cpus: 1, memory_mb: 1024, local_gb: 0, capabilities: 'boot_mode:bios' },
  });
  const uuid = created.uuid;
  await l.api.createPort(uuid, node.mac);
  await l.api.provision(uuid, 'manage');
  await waitForProvisionState(l.api, uuid, { until: ['manageable'], failOn: ['enroll'], timeoutMs: 60_000 }).catch(async (e: unknown) => {
    if ((await l.api.getNode(uuid)).provision_state === 'manageable') return;
    throw e;
  });

  const access = l.api.credentials();
  assert.ok(access?.caFile, 'the lab conductor wrote its credentials and CA');
  const cli = async (args: string[]): Promise<string> => {
    const r = await run('baremetal', ['--os-auth-type', 'http_basic', '--os-username', access.username,
      `--os-password=${access.password}`, '--os-endpoint', l.api.endpoint, '--os-cacert', access.caFile as string, ...args], {
      okCodes: Array.from({ length: 256 }, (_, i) => i), timeoutMs: 120_000, quiet: true, env: { OS_CLOUD: '' } });
    assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const waitFor = (until: string, failOn: string[], timeoutMs: number): Promise<NodeJson> =>
    waitForProvisionState(l.api, uuid, { until: [until], failOn, timeoutMs, onPoll: (n) => reporter.node(n) });
  // The node's console_enabled, not GET .../states/console: that one asks the driver, which answers 500 while the
  // bridge is being started or stopped.
  const consoleEnabled = async (): Promise<boolean> =>
    (await l.api.call<{ console_enabled: boolean }>('GET', `/v1/nodes/${uuid}`)).console_enabled;
  /** Console changes are asynchronous (202): wait for the flag, and when enabling for the driver's console info. */
  const waitConsole = async (on: boolean): Promise<void> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ready = (await consoleEnabled()) === on && (!on || await l.api.call('GET', `/v1/nodes/${uuid}/states/console`)
        .then(() => true, () => false));
      if (ready) return;
      assert.ok(Date.now() < deadline, `console_enabled did not become ${on}`);
      await sleep(250);
    }
  };
  // Before the VM, BMC and conductor go (teardown runs backwards): a console left on by a failure is closed.
  teardown.add('console off', async () => {
    if (!(await consoleEnabled().catch(() => false))) return;
    await l.api.call('PUT', `/v1/nodes/${uuid}/states/console`, { enabled: false });
    await waitConsole(false);
  });
  /** A power or provision request right after a state change may meet the node still locked: retry on 409. */
  const retryLocked = async (fn: () => Promise<void>): Promise<void> => {
    for (let i = 0; ; i++) {
      try {
        return await fn();
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 409 || i >= 60) throw e;
        await sleep(500);
      }
    }
  };
  const ramdiskBoots = (): number => (node.readSerial().match(/bmts-init: start /g) ?? []).length;


  await scenario('manual cleaning raid.create_configuration: RAID1 over both virtio disks, raid_config recorded', async () => {
    await cli(['node', 'set', uuid, '--target-raid-config', JSON.stringify(RAID1)]);
    assert.deepEqual((await l.api.getNode(uuid)).target_raid_config, RAID1);
    timer.start('cleaning (boot + RAID)');
    await cli(['node', 'clean', uuid, '--clean-steps', JSON.stringify([{ interface: 'raid', step: 'create_configuration' }])]);
    const n = await waitFor('manageable', ['clean failed'], 600_000);
    timer.end('cleaning (boot + RAID)');
    assert.equal(n.last_error, null);
    const raid = n.raid_config as { logical_disks?: Array<Record<string, unknown>>; last_updated?: string };
    assert.equal(raid.logical_disks?.length, 1, JSON.stringify(raid));
    assert.equal(raid.logical_disks?.[0]?.raid_level, '1');
    assert.equal(typeof raid.last_updated, 'string');
    assert.match(String((n.properties as Record<string, unknown>).capabilities), /raid_level:1/);
    assert.equal(ramdiskBoots(), 1);
  });

  await scenario('deploy onto the RAID root volume (fast-track: the cleaning ramdisk writes it)', async () => {
    await retryLocked(() => l.api.provision(uuid, 'provide'));
    await waitFor('available', ['clean failed'], 120_000);
    await l.api.patchNode(uuid, { instance_info: { image_source: `${l.images.localUrl}/raid-root.img`, image_checksum: image.md5,
      image_os_hash_algo: 'sha256', image_os_hash_value: image.sha256, image_disk_format: 'raw' } });
    timer.start('deploy');
    await cli(['node', 'deploy', uuid]);
    const n = await waitFor('active', ['deploy failed'], 600_000);
    timer.end('deploy');
    assert.equal(n.last_error, null);
    t.diagnostic(`ramdisk boots so far: ${ramdiskBoots()} (1 = the deploy used the cleaning ramdisk)`);
  });

  await scenario('rescue: finalize_rescue sets the password; a wrong one is refused on the serial console, the right one logs in', async () => {
    await cli(['node', 'console', 'enable', uuid]);
    await waitConsole(true);
    const info = JSON.parse(await cli(['node', 'console', 'show', uuid, '-f', 'json'])) as { console_enabled: boolean; console_info: { type: string; url: string } | null };
    assert.equal(info.console_enabled, true);
    const m = /^tcp:\/\/127\.0\.0\.1:(\d+)$/.exec(info.console_info?.url ?? '');
    assert.ok(m, `socat console URL: ${info.console_info?.url}`);
    let sock: Socket | undefined;
    for (let i = 0; i < 50 && !sock; i++) {
      const s = connect({ host: '127.0.0.1', port: Number(m[1]) });
      const ok = await new Promise<boolean>((res) => { s.once('connect', () => res(true)); s.once('error', () => res(false)); });
      if (ok) sock = s;
      else await sleep(200);
    }
    assert.ok(sock, 'connected to the socat console');
    const con = consoleReader(sock);
    teardown.add('console socket', () => { sock?.destroy(); });
    await con.wait(/SOL Session operational/, 0, 30_000);
    const type = (s: string): void => { sock?.write(s); };

    const bootsBefore = ramdiskBoots();
    timer.start('rescue (boot + finalize)');
    await cli(['node', 'rescue', uuid, '--rescue-password', RESCUE_PASSWORD]);
    const n = await waitFor('rescue', ['rescue failed'], 600_000);
    timer.end('rescue (boot + finalize)');
    assert.equal(n.last_error, null);
    assert.equal((n.instance_info as Record<string, unknown>).hashed_rescue_password, undefined, 'the hash left the node');
    assert.ok(ramdiskBoots() > bootsBefore, 'the rescue booted the ramdisk');
    // The ramdisk's boot (and its getty's login prompt) went over SoL while we were connected.
    assert.match(con.text(), /bmts-init: start /);

    timer.start('console login');
    // An empty line makes getty prompt again, after whatever the agent logged.
    let at = con.mark();
    type('\r');
    await con.wait(/login: /, at, 30_000);
    at = con.mark();
    type('rescue\r');
    await con.wait(/Password: /, at, 30_000);
    at = con.mark();
    type(`not-${RESCUE_PASSWORD}\r`);
    await con.wait(/Login incorrect[\s\S]*login: /, at, 30_000);
    at = con.mark();
    type('rescue\r');
    await con.wait(/Password: /, at, 30_000);
    at = con.mark();
    type(`${RESCUE_PASSWORD}\r`);
    await con.wait(/built-in shell[\s\S]*# /, at, 30_000);
    at = con.mark();
    // The printed line differs from the typed one ($((...)) expands), so the match is the shell's answer.
    type(`md=$(awk '/^md/{print $1; exit}' /proc/mdstat); echo "RESCUE-$((6*7)) $(id -u) $md $(cat /sys/block/$md/md/level) $(head -c ${IMAGE_BYTES} /dev/$md | sha256sum)"\r`);
    const out = await con.wait(/RESCUE-42 .*-/, at, 60_000);
    timer.end('console login');
    const answer = /RESCUE-42 (\d+) (md\d+) (\S+) ([0-9a-f]{64})/.exec(out);
    assert.ok(answer, `the rescue shell's answer: ${out.slice(-400)}`);
    assert.equal(answer[1], '0', 'the rescue user is root in the ramdisk');
    assert.equal(answer[3], 'raid1', `${answer[2]} is RAID1`);
    assert.equal(answer[4], image.sha256, 'the deployed image is on the RAID root volume');
    type('exit\r');

    await cli(['node', 'unrescue', uuid]);
    const back = await waitFor('active', ['unrescue failed', 'rescue failed'], 180_000);
    assert.equal(back.last_error, null);
    // Not waited for: in the last run console_enabled stayed true for over 30 s after the disable (to be looked into);
    // the power-off below retries while the disable holds the node's lock.
    await cli(['node', 'console', 'disable', uuid]);
  });

  await scenario('the disk files: one md RAID1 superblock on each disk, the image mirrored at the data offset of both', async () => {
    await retryLocked(() => l.api.power(uuid, 'power off'));
    const deadline = Date.now() + 90_000;
    while ((await l.api.getNode(uuid)).power_state !== 'power off' || node.bmc.isOn()) {
      assert.ok(Date.now() < deadline, 'the node powered off');
      await sleep(500);
    }
    const members = await Promise.all(node.disks.map((d) => mdMembers(d)));
    for (const [i, ms] of members.entries()) assert.equal(ms.length, 1, `one md member on ${node.disks[i]}: ${JSON.stringify(ms)}`);
    const [a, b] = members.map((ms) => ms[0] as MdMember);
    assert.ok(a && b);
    assert.equal(a.setUuid, b.setUuid, 'both members belong to the same array');
    assert.equal(a.level, 1);
    assert.equal(a.raidDisks, 2);
    for (const [i, mem] of [a, b].entries()) {
      const data = await readAt(node.disks[i] as string, mem.partitionStart + mem.dataOffsetBytes, IMAGE_BYTES);
      assert.equal(createHash('sha256').update(data).digest('hex'), image.sha256, `the image on member ${i + 1}`);
    }
  });

  for (const line of ['phase timings:', ...timer.table().split('\n')]) t.diagnostic(line);
  finished = true;
});
