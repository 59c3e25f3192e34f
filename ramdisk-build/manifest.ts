/**
 * manifest.json next to the ramdisk: what is inside (every file with size and sha256), the versions of the
 * pieces (kernel, node, busybox, the Debian packages the tools came from) and the sizes against the goal.
 */
import { run } from '../common/exec.js';
import type { BundleResult } from './bundle.js';
import type { PackResult, TreeEntry } from './initramfs.js';
import type { RootfsResult } from './rootfs.js';
import type { SeaResult } from './sea.js';

export interface Manifest {
  format: 1;
  built_at: string;
  build_seconds: number;
  agent: {
    version: string;
    entry: string;
    version_output: string;
    node_version: string;
    executable: { path_in_ramdisk: string; bytes: number; sha256: string };
    bundle: { bytes: number; sha256: string; inputs: number };
  };
  kernel: { version: string; source: string; bytes: number; sha256: string };
  initramfs: { bytes: number; sha256: string; compression: string; uncompressed_bytes: number; entries: number };
  sizes: { kernel_mib: number; initramfs_mib: number; total_mib: number; goal_mib: number; within_goal: boolean };
  busybox: string;
  tools: Array<{ name: string; path: string; bytes: number; package: string | null; package_version: string | null }>;
  tools_missing: string[];
  libraries: string[];
  kernel_modules: { requested: string[]; builtin: string[]; missing: string[]; files: number; bytes: number };
  hardware_managers_added: string[];
  contents: Array<{ path: string; type: TreeEntry['kind']; bytes?: number; sha256?: string; target?: string }>;
}

export interface ManifestInput {
  kernel: { version: string; source: string; bytes: number; sha256: string };
  packed: PackResult;
  bundle: BundleResult;
  sea: SeaResult;
  rootfs: RootfsResult;
  agentVersion: string;
  goalMiB: number;
  buildSeconds: number;
}

const mib = (b: number): number => Math.round((b / 2 ** 20) * 100) / 100;

/** Debian package and version of each file, in two dpkg calls (not one per tool). */
async function packagesOf(paths: string[]): Promise<Map<string, { pkg: string; version: string }>> {
  const out = new Map<string, { pkg: string; version: string }>();
  if (paths.length === 0) return out;
  const owners = new Map<string, string>();
  const r = await run('dpkg', ['-S', ...paths], { okCodes: [0, 1], quiet: true }).catch(() => null); // no dpkg: no owners listed
  for (const line of r?.stdout.split('\n') ?? []) {
    const m = line.match(/^([^:,\s]+)(?::\S+)?(?:, [^:]+)?: (\/.+)$/);
    if (m?.[1] && m[2]) owners.set(m[2], m[1]);
  }
  const pkgs = [...new Set(owners.values())];
  const versions = new Map<string, string>();
  if (pkgs.length) {
    // No dpkg-query: versions stay unknown in the manifest.
    const q = await run('dpkg-query', ['-W', '-f', '${Package} ${Version}\\n', ...pkgs], { okCodes: [0, 1], quiet: true }).catch(() => null);
    for (const line of q?.stdout.split('\n') ?? []) {
      const [p, v] = line.split(' ');
      if (p && v) versions.set(p.replace(/:.*/, ''), v);
    }
  }
  for (const [path, pkg] of owners) out.set(path, { pkg, version: versions.get(pkg) ?? '' });
  return out;
}

export async function buildManifest(i: ManifestInput): Promise<Manifest> {
  const { packed, rootfs } = i;
  // dpkg knows the /usr-merged or the legacy path depending on the package; ask for both.
  const asked = new Set<string>();
  for (const t of rootfs.tools) {
    asked.add(t.realPath);
    asked.add(t.realPath.replace(/^\/usr/, ''));
  }
  const owners = await packagesOf([...asked]);
  const ownerOf = (p: string): { pkg: string; version: string } | undefined => owners.get(p) ?? owners.get(p.replace(/^\/usr/, ''));
  const agentEntry = packed.entries.find((e) => e.path === './usr/bin/baremetal-agent');
  const total = i.kernel.bytes + packed.bytes;
  return {
    format: 1,
    built_at: new Date().toISOString(),
    build_seconds: Math.round(i.buildSeconds * 10) / 10,
    agent: {
      version: i.agentVersion,
      entry: i.bundle.entry,
      version_output: i.sea.version,
      node_version: i.sea.nodeVersion,
      executable: { path_in_ramdisk: '/usr/bin/baremetal-agent', bytes: i.sea.bytes, sha256: agentEntry?.sha256 ?? i.sea.sha256 },
      bundle: { bytes: i.bundle.bytes, sha256: i.bundle.sha256, inputs: i.bundle.inputs },
    },
    kernel: i.kernel,
    initramfs: {
      bytes: packed.bytes,
      sha256: packed.sha256,
      compression: packed.compression,
      uncompressed_bytes: packed.uncompressedBytes,
      entries: packed.entries.length,
    },
    sizes: {
      kernel_mib: mib(i.kernel.bytes),
      initramfs_mib: mib(packed.bytes),
      total_mib: mib(total),
      goal_mib: i.goalMiB,
      within_goal: total <= i.goalMiB * 2 ** 20,
    },
    busybox: rootfs.busyboxVersion,
    tools: rootfs.tools.map((t) => {
      const o = ownerOf(t.realPath);
      return { name: t.name, path: t.path, bytes: t.bytes, package: o?.pkg ?? null, package_version: o?.version ?? null };
    }),
    tools_missing: rootfs.missingTools,
    libraries: rootfs.libs,
    kernel_modules: {
      requested: rootfs.modules.modules,
      builtin: rootfs.modules.builtin,
      missing: rootfs.modules.missing,
      files: rootfs.modules.files.length,
      bytes: rootfs.modules.bytes,
    },
    hardware_managers_added: rootfs.managers,
    contents: packed.entries.map((e) => ({
      path: e.path.slice(1),
      type: e.kind,
      ...(e.kind === 'file' ? { bytes: e.bytes, sha256: e.sha256 ?? '' } : {}),
      ...(e.target ? { target: e.target } : {}),
    })),
  };
}
