/**
 * The ramdisk build's artifacts, checked without booting: the manifest matches the files, the initramfs is a
 * zstd cpio holding /init, the marker, busybox, modules.dep and the tools, every ELF inside finds its shared
 * libraries (checked in a chroot of the unpacked archive, so nothing leaks in from the host), the agent
 * executable runs without node_modules and imports a vendor plugin from a directory, and --add-manager copies
 * plugin directories (refusing name clashes).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, lstat, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run, spawnLong } from '../../common/exec.js';
import { addManagers, RAMDISK_MANAGER_DIR } from '../../ramdisk-build/rootfs.js';
import { freePort } from '../../lab/qemu.js';
import { ensureRamdisk, type RamdiskFiles } from '../fixtures/ramdisk.js';

const REQUIRED_TOOLS = ['lsblk', 'blkid', 'wipefs', 'sgdisk', 'parted', 'mkfs.vfat', 'mkfs.ext4', 'mdadm',
  'ip', 'efibootmgr', 'zstd', 'xz', 'gzip', 'blockdev', 'blkdiscard', 'hdparm', 'nvme', 'kmod', 'mdir',
  // built with the ramdisk: the lldp collector's listener and the in-band BMC address reader (ramdisk-build/*.c)
  'lldp-listen', 'ipmi-lan-param'];

const PLUGIN = `
export default {
  name: 'RamdiskTestHardwareManager',
  versionName: 'ramdisk_test_hardware_manager',
  version: '1.0',
  evaluateHardwareSupport() { return 3; },
  getCleanSteps() {
    return [{ step: 'ramdisk_test_step', priority: 0, interface: 'deploy', reboot_requested: false, abortable: true }];
  },
  async ramdisk_test_step() { return { ok: true }; },
};
`;

let files: RamdiskFiles | null = null;
let skipReason = '';
const ready = (async () => {
  const r = await ensureRamdisk();
  if (r.ok) files = r;
  else skipReason = r.reason;
})();

async function sha256(file: string): Promise<string> {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

test('manifest describes the kernel and initramfs that were written', async (t) => {
  await ready;
  if (!files) return t.skip(skipReason);
  const m = files.manifest;
  assert.equal((await stat(files.kernel)).size, m.kernel.bytes);
  assert.equal((await stat(files.initramfs)).size, m.initramfs.bytes);
  assert.equal(await sha256(files.initramfs), m.initramfs.sha256);
  assert.equal(await sha256(files.kernel), m.kernel.sha256);
  assert.match(m.agent.version_output, /^baremetal-agent \d+\.\d+\.\d+$/);
  assert.ok(m.sizes.within_goal, `kernel + initramfs = ${m.sizes.total_mib} MiB, goal ${m.sizes.goal_mib} MiB`);
  const paths = new Set(m.contents.map((c) => c.path));
  for (const p of ['/init', '/etc/baremetal-ts-ramdisk', '/usr/bin/baremetal-agent', '/bin/busybox', '/etc/inittab',
    '/usr/libexec/baremetal-agent-supervise', '/usr/share/udhcpc/default.script', `/lib/modules/${m.kernel.version}/modules.dep`]) {
    assert.ok(paths.has(p), `${p} in the initramfs`);
  }
  // install_bootloader's syslinux path (hardware-managers/deploy/syslinux.ts) writes these to the disk.
  for (const p of ['/usr/lib/syslinux/mbr/mbr.bin', '/usr/lib/syslinux/mbr/gptmbr.bin']) assert.ok(paths.has(p), `${p} in the initramfs`);
  const tools = new Set(m.tools.map((x) => x.name));
  for (const name of REQUIRED_TOOLS) assert.ok(tools.has(name), `tool ${name} in the ramdisk (missing: ${m.tools_missing.join(' ')})`);
  for (const mod of ['virtio_net', 'virtio_blk', 'ahci', 'nvme', 'sd_mod', 'e1000e', 'raid1', 'loop', 'ext4']) {
    assert.ok(m.kernel_modules.requested.includes(mod), `module ${mod}`);
  }
});

test('initramfs unpacks; every program inside finds its libraries; the agent runs without node_modules', async (t) => {
  await ready;
  if (!files) return t.skip(skipReason);
  const dir = await mkdtemp(join(tmpdir(), 'bmts-ramdisk-unpack-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const cpio = join(dir, 'initramfs.cpio');
  // The file ends in zero padding to a 4-byte multiple (ramdisk-build/initramfs.ts), which zstd -d calls junk.
  // The frame itself may end in a zero byte, so try the possible padding lengths, longest first: one decodes.
  const packed = readFileSync(files.initramfs);
  assert.equal(packed.length % 4, 0, 'initramfs padded to a multiple of 4 bytes (the EFI stub appends initrds unaligned)');
  let zeros = 0;
  while (zeros < 3 && packed[packed.length - 1 - zeros] === 0) zeros++;
  let decoded = false;
  for (let k = zeros; k >= 0 && !decoded; k--) {
    const r = await run('zstd', ['-d', '-q', '-f', '-o', cpio], { input: packed.subarray(0, packed.length - k), okCodes: [0, 1], quiet: true });
    decoded = r.exitCode === 0;
  }
  assert.ok(decoded, 'zstd decodes the initramfs once its padding is off');
  const root = join(dir, 'root');
  await mkdir(root);
  // The initramfs is several newc cpio archives back to back (the kernel unpacks them in turn, skipping the zero
  // padding between them). Walk the headers to find where each archive ends, and extract each one with cpio.
  const whole = readFileSync(cpio);
  const archiveEnd = (start: number): number => {
    let p = start;
    for (;;) {
      assert.equal(whole.toString('latin1', p, p + 6), '070701', `newc header at offset ${p}`);
      const field = (i: number): number => parseInt(whole.toString('latin1', p + 6 + i * 8, p + 14 + i * 8), 16);
      const fileSize = field(6);
      const nameSize = field(11);
      const name = whole.toString('latin1', p + 110, p + 110 + nameSize - 1);
      p = (p + 110 + nameSize + 3) & ~3;
      p = (p + fileSize + 3) & ~3;
      if (name === 'TRAILER!!!') return p;
    }
  };
  let offset = 0;
  let archives = 0;
  while (offset < whole.length) {
    const end = archiveEnd(offset);
    // A Buffer, not a file stream: the child would read a stream's fd from offset 0 whatever `start` says.
    const r = await run('cpio', ['-i', '-d', '-m', '--no-absolute-filenames'], { cwd: root, input: whole.subarray(offset, end) });
    assert.ok(/\d+ blocks?/.test(r.stderr), `cpio read the archive at offset ${offset}: ${r.stderr}`);
    archives++;
    offset = end;
    while (offset < whole.length && whole[offset] === 0) offset++;
  }
  await rm(cpio);
  assert.ok(archives >= 1);
  assert.ok(existsSync(join(root, 'init')));
  assert.match(readFileSync(join(root, 'etc/baremetal-ts-ramdisk'), 'utf8'), /baremetal-ts/);

  // Resolve each ELF's libraries with the ramdisk's own loader inside a chroot: a lib missing from the
  // archive shows as "not found" even when the host has it.
  const elfs: string[] = [];
  for (const d of ['usr/bin', 'usr/sbin', 'bin', 'sbin']) {
    for (const f of await readdir(join(root, d)).catch(() => [] as string[])) {
      const p = join(root, d, f);
      const s = await lstat(p).catch(() => null); // null: absent / not reachable (checked by the caller)
      if (!s?.isFile()) continue;
      const head = readFileSync(p).subarray(0, 4096).toString('latin1');
      // Dynamically linked ELFs only (busybox is static; the loader segfaults listing a static binary).
      if (head.startsWith('\x7fELF') && head.includes('/lib64/ld-linux-x86-64.so.2')) elfs.push(`/${d}/${f}`);
    }
  }
  assert.ok(elfs.length > 15, `ELF programs found: ${elfs.length}`);
  const broken: string[] = [];
  for (const e of elfs) {
    const r = await run('chroot', [root, '/lib64/ld-linux-x86-64.so.2', '--list', e], { okCodes: [0, 1, 127], quiet: true });
    if (/not found/.test(r.stdout + r.stderr)) broken.push(`${e}: ${(r.stdout + r.stderr).split('\n').filter((l) => /not found/.test(l)).join('; ')}`);
  }
  assert.deepEqual(broken, [], 'every program in the ramdisk resolves its shared libraries');

  const v = await run('chroot', [root, '/usr/bin/baremetal-agent', '--version'], { timeoutMs: 60_000 });
  assert.equal(v.stdout.trim(), files.manifest.agent.version_output);
  // (busybox sh prefers its own applets over PATH, so the real tools are named by path, as /init does.)
  const tools = await run('chroot', [root, '/bin/sh', '-c', '/usr/sbin/modprobe --version; /usr/bin/lsblk --version; /usr/sbin/sgdisk --version | head -1'], { timeoutMs: 30_000 });
  assert.match(tools.stdout, /kmod version/);
  assert.match(tools.stdout, /util-linux/);
  assert.match(tools.stdout, /sgdisk/);
  // The listener runs on the ramdisk's own glibc (no arguments: its usage, exit 2).
  const listen = await run('chroot', [root, '/usr/sbin/lldp-listen'], { okCodes: [2], timeoutMs: 30_000 });
  assert.match(listen.stderr, /usage: lldp-listen IFACE SECONDS/);
  const lan = await run('chroot', [root, '/usr/sbin/ipmi-lan-param', '1', '3'], { okCodes: [1], timeoutMs: 30_000 });
  assert.match(lan.stderr, /no IPMI device/, 'the BMC reader runs in the ramdisk root (this host has no /dev/ipmi0)');
  // Log collection (agent/extensions/log.ts) runs `tar -czf X -C DIR .`: with GNU tar left out, busybox's applet.
  const tar = await run('chroot', [root, '/bin/sh', '-c', 'tar -czf /tmp/logs.tar.gz -C /etc . && tar -tzf /tmp/logs.tar.gz'], { timeoutMs: 30_000 });
  assert.match(tar.stdout, /os-release/);
});

test('the agent executable imports a vendor plugin from --ipa-hardware-manager-dir', async (t) => {
  await ready;
  if (!files) return t.skip(skipReason);
  const dir = await mkdtemp(join(tmpdir(), 'bmts-sea-plugin-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const exe = join(dir, 'baremetal-agent');
  await copyFile(join(dirname(files.kernel), 'baremetal-agent'), exe);
  await run('chmod', ['755', exe]);
  const plugins = join(dir, 'managers');
  await mkdir(plugins);
  await writeFile(join(plugins, 'ramdisk-test.mjs'), PLUGIN);
  const port = await freePort();
  const logFile = join(dir, 'agent.log');
  // Standalone on loopback, no conductor, an allow-list no real disk matches: nothing on the host is touched.
  const child = spawnLong(exe, [
    '--ipa-standalone=1', '--ipa-listen-host=127.0.0.1', `--ipa-listen-port=${port}`, `--ipa-hardware-manager-dir=${plugins}`,
    '--ipa-device-allowlist=/dev/bmts-no-such-disk', `--ipa-log-file=${logFile}`,
  ], { cwd: dir, env: { NO_COLOR: '1' } });
  child.stdout?.resume();
  child.stderr?.resume();
  let exitCode: number | undefined | null = null;
  const exited = child.then((r) => {
    exitCode = r.exitCode;
  });
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ok = await fetch(`${url}/v1/status`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
    if (ok) break;
    if (exitCode !== null || Date.now() > deadline) {
      assert.fail(`agent did not serve (exit ${String(exitCode)}); log: ${existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-2000) : 'none'}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const res = await fetch(`${url}/v1/commands/?wait=true`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'clean.get_clean_steps', params: { node: {}, ports: [] } }),
    signal: AbortSignal.timeout(60_000),
  });
  const body = (await res.json()) as { command_status?: string; command_result?: { clean_steps?: Record<string, Array<{ step: string }>> } };
  assert.equal(body.command_status, 'SUCCEEDED', JSON.stringify(body));
  const steps = body.command_result?.clean_steps?.RamdiskTestHardwareManager ?? [];
  assert.ok(steps.some((s) => s.step === 'ramdisk_test_step'), `plugin's step reported: ${JSON.stringify(body.command_result)}`);
});

test('--add-manager copies plugin directories into the ramdisk manager dir and refuses clashes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-add-manager-'));
  try {
    const a = join(dir, 'vendor-a');
    const b = join(dir, 'vendor-b');
    const empty = join(dir, 'empty');
    await mkdir(a);
    await mkdir(b);
    await mkdir(empty);
    await writeFile(join(a, 'a.mjs'), PLUGIN);
    await writeFile(join(b, 'a.mjs'), PLUGIN);
    const stage = join(dir, 'stage');
    const added = await addManagers(stage, [a]);
    assert.deepEqual(added, [`${RAMDISK_MANAGER_DIR}/a.mjs`]);
    assert.equal(readFileSync(join(stage, RAMDISK_MANAGER_DIR, 'a.mjs'), 'utf8'), PLUGIN);
    await assert.rejects(addManagers(join(dir, 'stage2'), [a, b]), /already added/);
    await assert.rejects(addManagers(join(dir, 'stage3'), [empty]), /no \.mjs/);
    await assert.rejects(addManagers(join(dir, 'stage4'), [join(dir, 'nope')]), /not a directory/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
