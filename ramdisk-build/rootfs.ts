/**
 * Step 3a: the initramfs tree, staged in a directory: busybox (static) with its applet links, the agent
 * executable, the real tools the agent and managers call with the shared libraries ldd finds, the kernel modules
 * (with modules.dep from depmod), grub's platform files, the /init + supervisor + udhcpc hook, and vendor
 * hardware-manager plugins.
 */
import { existsSync, lstatSync, realpathSync, statSync } from 'node:fs';
import { chmod, copyFile, cp, mkdir, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../common/exec.js';
import { RAMDISK_MARKER } from '../common/ramdisk.js';
import { getLogger } from '../common/logger.js';
import { copyModules, type ModulesResult } from './modules.js';

const log = getLogger('ramdisk-rootfs');
const here = dirname(fileURLToPath(import.meta.url));

/** Where the agent looks for vendor plugins inside the ramdisk (IPA_HARDWARE_MANAGER_DIR set by the supervisor). */
export const RAMDISK_MANAGER_DIR = '/usr/lib/baremetal-agent/managers';
export const RAMDISK_AGENT_PATH = '/usr/bin/baremetal-agent';
export const RAMDISK_AGENT_LOG = '/var/log/baremetal-agent.log';

/**
 * External programs the agent and the hardware managers run (common/exec callers), plus the diagnostics IPA users
 * expect on a ramdisk (sfdisk, lspci, ethtool, lshw, smartctl). Left out because nothing runs them (busybox
 * applets cover the shell's needs): e2fsck, resize2fs, tune2fs, losetup, findmnt, dmsetup, sha*sum, and (issue 17,
 * ramdisk <= 48 MiB) qemu-img (the agent converts qcow2 itself, image/qcow2.ts; it and its glib/gnutls closure
 * were 3.4 MiB compressed), GNU tar (log collection's `tar -czf` is busybox's applet), shred (wipe.ts writes
 * its own passes) and tcpdump with libpcap (the lldp collector listens with lldp-listen, built below).
 */
export const TOOLS = [
  'lsblk', 'blkid', 'wipefs', 'sgdisk', 'sfdisk', 'parted', 'partprobe', 'mkfs.vfat', 'mkfs.fat', 'mkfs.ext4',
  'mke2fs', 'mkfs.xfs', 'mdadm', 'ip', 'efibootmgr',
  'zstd', 'xz', 'gzip', 'blockdev', 'blkdiscard', 'hdparm', 'nvme', 'sync', 'kmod', 'modprobe', 'insmod',
  'rmmod', 'lsmod', 'modinfo', 'mount', 'umount', 'dmidecode', 'lspci', 'ethtool',
  'lshw', 'smartctl', 'dd', 'chroot', 'mkswap', 'fallocate', 'partx',
  'mdir',
  // The iscsi deploy: the agent exports the root device with Debian's user-space target (agent/iscsi/tgt.ts).
  'tgtd', 'tgtadm',
];
/**
 * Built here from ramdisk-build/<name>.c, not taken from a package, for issue 17's 48 MiB: the lldp inspection
 * collector's listener (hardware-managers/generic/inventory-extra.ts; it replaced tcpdump + libpcap, 1.6 MB
 * unpacked) and the in-band BMC address reader (hardware-managers/generic/inventory.ts; it replaced ipmitool +
 * libfreeipmi, 1.3 MB compressed). Each lands in /usr/sbin.
 */
export const C_HELPERS = ['lldp-listen', 'ipmi-lan-param'] as const;
export type CHelper = (typeof C_HELPERS)[number];
/** syslinux's MBR boot code, for install_bootloader on GRUB-less BIOS partition images (hardware-managers/deploy/syslinux.ts). */
export const SYSLINUX_MBR_FILES = ['/usr/lib/syslinux/mbr/mbr.bin', '/usr/lib/syslinux/mbr/gptmbr.bin'];
/** mtools converts FAT names through iconv (codepage 850): without these, mdir fails "Error setting code page". */
const GCONV_DIR = '/usr/lib/x86_64-linux-gnu/gconv';
export const MTOOLS_GCONV_FILES = ['IBM850.so', 'gconv-modules', 'gconv-modules.cache', 'gconv-modules.d'].map((f) => `${GCONV_DIR}/${f}`);
/**
 * Only with --grub: the agent installs GRUB with the deployed image's own grub-install, in a chroot
 * (hardware-managers/deploy/bootloader.ts), as IPA does; the ramdisk's copy (~4 MiB compressed) is never run.
 */
export const GRUB_TOOLS = ['grub-install', 'grub-probe', 'grub-mkimage', 'grub-editenv'];

export interface ToolEntry {
  name: string;
  path: string;
  /** The file actually copied (symlink target on the host). */
  realPath: string;
  bytes: number;
}

export interface RootfsOptions {
  stage: string;
  kernelVersion: string;
  agentExe: string;
  agentVersion: string;
  /** Vendor plugin directories copied into RAMDISK_MANAGER_DIR. */
  addManagers: string[];
  /** Where the programs compiled for the ramdisk are built (the build's cache directory). */
  buildDir: string;
  grub: boolean;
  filesDir: string;
}

export interface RootfsResult {
  tools: ToolEntry[];
  missingTools: string[];
  libs: string[];
  modules: ModulesResult;
  busyboxVersion: string;
  managers: string[];
}

const SEARCH_PATH = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function which(name: string): string | null {
  for (const d of SEARCH_PATH) {
    const p = join(d, name);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** Copy a host file to the same absolute path in the tree, replacing whatever (e.g. a busybox link) is there. */
async function place(stage: string, hostPath: string, inTree = hostPath): Promise<void> {
  const dest = join(stage, inTree);
  await mkdir(dirname(dest), { recursive: true });
  await rm(dest, { force: true });
  await copyFile(hostPath, dest);
}

async function lddLibs(file: string): Promise<string[]> {
  const r = await run('ldd', [file], { okCodes: [0, 1], quiet: true });
  if (/not a dynamic executable|statically linked/.test(r.stdout + r.stderr)) return [];
  const libs: string[] = [];
  for (const line of r.stdout.split('\n')) {
    if (/=> not found/.test(line)) throw new Error(`ldd ${file}: ${line.trim()}`);
    const m = line.match(/(?:=>\s*)?(\/\S+)\s+\(0x/);
    if (m?.[1]) libs.push(m[1]);
  }
  return libs;
}

/** Compiles ramdisk-build/<name>.c into buildDir (gcc -Os, stripped, dynamic against glibc); its path. */
export async function buildCHelper(name: CHelper, buildDir: string): Promise<string> {
  const exe = join(buildDir, name);
  await mkdir(buildDir, { recursive: true });
  await run('gcc', ['-Os', '-s', '-Wall', '-Wextra', '-Werror', '-o', exe, join(here, `${name}.c`)], { quiet: true })
    .catch((e: unknown) => {
      throw new Error(`building ${name}.c failed (apt-get install gcc libc6-dev): ${e instanceof Error ? e.message : String(e)}`);
    });
  return exe;
}

/** A helper at /usr/sbin/<name>, linked against the glibc the ramdisk carries anyway; its manifest entry. */
async function addCHelper(name: CHelper, stage: string, buildDir: string, libs: Set<string>): Promise<ToolEntry> {
  const exe = await buildCHelper(name, buildDir);
  const path = `/usr/sbin/${name}`;
  await place(stage, exe, path);
  await chmod(join(stage, path), 0o755);
  for (const l of await lddLibs(exe)) libs.add(l);
  return { name, path, realPath: exe, bytes: statSync(exe).size };
}

async function addBusybox(stage: string): Promise<string> {
  const bb = which('busybox');
  if (!bb) throw new Error('busybox not found (apt-get install busybox-static)');
  const r = await run(bb, ['--list-full'], { quiet: true });
  await place(stage, realpathSync(bb), '/bin/busybox');
  await chmod(join(stage, 'bin/busybox'), 0o755);
  for (const rel of r.stdout.split('\n').map((l) => l.trim()).filter(Boolean)) {
    if (rel === 'bin/busybox') continue;
    const dest = join(stage, rel);
    await mkdir(dirname(dest), { recursive: true });
    await rm(dest, { force: true });
    await symlink('/bin/busybox', dest);
  }
  const v = await run(bb, [], { okCodes: [0, 1], quiet: true });
  return (v.stdout.split('\n')[0] ?? '').trim();
}

async function addTools(stage: string, names: string[], libs: Set<string>): Promise<{ tools: ToolEntry[]; missing: string[] }> {
  const tools: ToolEntry[] = [];
  const missing: string[] = [];
  for (const name of names) {
    const p = which(name);
    if (!p) {
      missing.push(name);
      continue;
    }
    const real = realpathSync(p);
    await place(stage, real);
    await chmod(join(stage, real), 0o755);
    if (real !== p) {
      // mkfs.ext4 -> mke2fs, modprobe -> kmod: keep the link so argv[0]-dispatching tools see their name.
      const dest = join(stage, p);
      await mkdir(dirname(dest), { recursive: true });
      await rm(dest, { force: true });
      await symlink(real, dest);
    }
    // The real tool must win over busybox's applet of the same name wherever a caller looks (the kernel runs
    // /sbin/modprobe; scripts may use /bin/mount): point the other merged-/usr spellings at it too.
    const short = p.replace(/^\/usr/, '');
    for (const alias of [short, `/usr${short}`, short.replace(/\/s?bin\//, '/bin/'), short.replace(/\/s?bin\//, '/sbin/')]) {
      const a = join(stage, alias);
      if (alias !== p && alias !== real && lstatSync(a, { throwIfNoEntry: false })?.isSymbolicLink()) {
        await rm(a, { force: true });
        await symlink(real, a);
      }
    }
    for (const l of await lddLibs(real)) libs.add(l);
    tools.push({ name, path: p, realPath: real, bytes: statSync(real).size });
  }
  return { tools, missing };
}

async function addGrub(stage: string): Promise<void> {
  for (const platform of ['i386-pc', 'x86_64-efi']) {
    const src = `/usr/lib/grub/${platform}`;
    if (!existsSync(src)) continue;
    // monolithic/ holds prebuilt signed EFI images (15 MB) that grub-install doesn't need.
    await cp(src, join(stage, src), { recursive: true, filter: (s) => !s.includes('/monolithic') && !s.endsWith('.module') });
  }
  if (existsSync('/usr/share/grub')) await cp('/usr/share/grub', join(stage, '/usr/share/grub'), { recursive: true });
}

export async function addManagers(stage: string, dirs: string[]): Promise<string[]> {
  const dest = join(stage, RAMDISK_MANAGER_DIR);
  await mkdir(dest, { recursive: true });
  const added: string[] = [];
  for (const d of dirs) {
    const src = resolve(d);
    if (!existsSync(src) || !statSync(src).isDirectory()) throw new Error(`--add-manager ${d}: not a directory`);
    const entries = await readdir(src);
    if (!entries.some((e) => /\.(mjs|cjs|js)$/.test(e))) throw new Error(`--add-manager ${d}: no .mjs/.cjs/.js plugin file in it`);
    for (const e of entries) {
      if (existsSync(join(dest, e))) throw new Error(`--add-manager ${d}: ${e} already added by another directory`);
      await cp(join(src, e), join(dest, e), { recursive: true, dereference: true });
      added.push(`${RAMDISK_MANAGER_DIR}/${e}`);
    }
  }
  return added;
}

async function addConfigFiles(stage: string, opts: RootfsOptions): Promise<void> {
  const f = (n: string): string => join(opts.filesDir, n);
  const put = async (inTree: string, data: string | Buffer, mode = 0o644): Promise<void> => {
    const dest = join(stage, inTree);
    await mkdir(dirname(dest), { recursive: true });
    await rm(dest, { force: true });
    await writeFile(dest, data);
    await chmod(dest, mode);
  };
  await put('/init', await readFile(f('init')), 0o755);
  await put('/etc/inittab', await readFile(f('inittab')));
  await put('/usr/libexec/baremetal-agent-supervise', await readFile(f('supervise')), 0o755);
  await put('/usr/share/udhcpc/default.script', await readFile(f('udhcpc.script')), 0o755);
  await put('/etc/baremetal-ts/modules', await readFile(f('modules.load')));
  // The agent's inRamdisk(): only here may it power the machine off or touch mounted-looking disks.
  await put(RAMDISK_MARKER, `baremetal-ts deploy ramdisk, agent ${opts.agentVersion}\n`);
  await put('/etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
  await put('/etc/group', 'root:x:0:\ndisk:x:6:\n');
  await put('/etc/hosts', '127.0.0.1 localhost baremetal-ramdisk\n::1 localhost\n');
  await put('/etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n');
  await put('/etc/resolv.conf', '');
  await put('/etc/fstab', '');
  await symlink('/proc/self/mounts', join(stage, 'etc/mtab'));
  await put('/etc/os-release', `NAME="baremetal-ts deploy ramdisk"\nID=baremetal-ts-ramdisk\nVERSION_ID=${opts.agentVersion}\n`);
  await put('/etc/mdadm/mdadm.conf', 'AUTO -all\n');
  if (existsSync('/etc/mke2fs.conf')) await place(stage, '/etc/mke2fs.conf');
  for (const d of ['proc', 'sys', 'dev', 'run', 'tmp', 'mnt', 'root', 'var/log', 'var/lib', 'var/tmp']) {
    await mkdir(join(stage, d), { recursive: true });
  }
  await chmod(join(stage, 'tmp'), 0o1777);
  // The kernel opens /dev/console before /init runs (devtmpfs isn't mounted yet); needs root for mknod.
  if (process.getuid?.() === 0) {
    await run('mknod', ['-m', '600', join(stage, 'dev/console'), 'c', '5', '1'], { okCodes: [0, 1], quiet: true });
  }
}

export async function buildRootfs(opts: RootfsOptions): Promise<RootfsResult> {
  const { stage } = opts;
  await rm(stage, { recursive: true, force: true });
  await mkdir(stage, { recursive: true });
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'lib', 'lib64', 'etc']) await mkdir(join(stage, d), { recursive: true });
  const busyboxVersion = await addBusybox(stage);
  const libs = new Set<string>();
  const names = [...TOOLS, ...(opts.grub ? GRUB_TOOLS : [])];
  const { tools, missing } = await addTools(stage, names, libs);
  for (const h of C_HELPERS) tools.push(await addCHelper(h, stage, opts.buildDir, libs));
  if (opts.grub) {
    await addGrub(stage);
    const bs = '/usr/lib/grub/i386-pc/grub-bios-setup';
    if (existsSync(bs)) for (const l of await lddLibs(bs)) libs.add(l);
  }
  for (const f of SYSLINUX_MBR_FILES) {
    if (existsSync(f)) await place(stage, f);
    else missing.push(f);
  }
  for (const f of MTOOLS_GCONV_FILES) {
    if (existsSync(f)) await cp(f, join(stage, f), { recursive: true, dereference: true });
  }
  await place(stage, opts.agentExe, RAMDISK_AGENT_PATH);
  await chmod(join(stage, RAMDISK_AGENT_PATH), 0o755);
  for (const l of await lddLibs(opts.agentExe)) libs.add(l);
  for (const l of libs) {
    await place(stage, realpathSync(l), l);
    await chmod(join(stage, l), 0o755);
  }
  const modules = await copyModules(stage, opts.kernelVersion, join(opts.filesDir, 'modules.list'));
  const managers = await addManagers(stage, opts.addManagers);
  await addConfigFiles(stage, opts);
  log.info({ tools: tools.length, missing, libs: libs.size, modules: modules.modules.length }, 'rootfs staged');
  return { tools, missingTools: missing, libs: [...libs].sort(), modules, busyboxVersion, managers };
}

/** Every entry of the staged tree, sorted, relative ("./etc/x"), for cpio and the manifest. */
export async function listTree(stage: string): Promise<Array<{ path: string; kind: 'file' | 'dir' | 'link' | 'other'; bytes: number; target?: string }>> {
  const out: Array<{ path: string; kind: 'file' | 'dir' | 'link' | 'other'; bytes: number; target?: string }> = [];
  const walk = async (rel: string): Promise<void> => {
    const abs = join(stage, rel);
    const st = lstatSync(abs);
    if (st.isSymbolicLink()) out.push({ path: `.${rel}`, kind: 'link', bytes: 0, target: await readlink(abs) });
    else if (st.isDirectory()) {
      if (rel) out.push({ path: `.${rel}`, kind: 'dir', bytes: 0 });
      for (const e of (await readdir(abs)).sort()) await walk(`${rel}/${e}`);
    } else if (st.isFile()) out.push({ path: `.${rel}`, kind: 'file', bytes: st.size });
    else out.push({ path: `.${rel}`, kind: 'other', bytes: 0 });
  };
  await walk('');
  return out;
}
