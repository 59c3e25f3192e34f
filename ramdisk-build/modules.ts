/**
 * Step 3b: kernel modules for the ramdisk. Each name in files/modules.list is resolved with its dependencies
 * (and softdeps) by the host's `modprobe --show-depends` against the target kernel's tree, copied with its
 * relative path, and `depmod -b` writes modules.dep/modules.alias so the udev-less /init can `modprobe -a` the
 * modaliases it finds in sysfs.
 */
import { existsSync, statSync } from 'node:fs';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { run } from '../common/exec.js';

export interface ModulesResult {
  /** Requested names that resolved (loadable or built in). */
  modules: string[];
  /** Requested names this kernel has as built-ins (nothing to copy). */
  builtin: string[];
  /** Optional names the kernel lacks. */
  missing: string[];
  /** .ko files copied (paths relative to /lib/modules/K). */
  files: string[];
  bytes: number;
}

export async function readModuleList(file: string): Promise<Array<{ name: string; optional: boolean }>> {
  return (await readFile(file, 'utf8'))
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean)
    .map((l) => ({ name: l.replace(/^\?/, ''), optional: l.startsWith('?') }));
}

export async function copyModules(stage: string, kernelVersion: string, listFile: string): Promise<ModulesResult> {
  const base = `/lib/modules/${kernelVersion}`;
  if (!existsSync(base)) throw new Error(`no kernel modules at ${base} (apt-get install linux-image-amd64)`);
  const wanted = await readModuleList(listFile);
  const files = new Set<string>();
  const result: ModulesResult = { modules: [], builtin: [], missing: [], files: [], bytes: 0 };
  for (const { name, optional } of wanted) {
    const r = await run('modprobe', ['-S', kernelVersion, '--show-depends', name], { okCodes: [0, 1], quiet: true });
    if (r.exitCode !== 0) {
      if (!optional) throw new Error(`kernel ${kernelVersion} has no module ${name}: ${r.stderr.trim()}`);
      result.missing.push(name);
      continue;
    }
    result.modules.push(name);
    let ownFile = false;
    for (const line of r.stdout.split('\n')) {
      const m = line.match(/^insmod (\S+)/);
      if (m?.[1]) {
        files.add(m[1]);
        ownFile = true;
      }
    }
    if (!ownFile && /^builtin /m.test(r.stdout)) result.builtin.push(name);
  }
  for (const abs of [...files].sort()) {
    if (!abs.startsWith(`${base}/`)) throw new Error(`unexpected module path ${abs}`);
    const dest = join(stage, abs);
    await mkdir(dirname(dest), { recursive: true });
    await copyFile(abs, dest);
    result.files.push(abs.slice(base.length + 1));
    result.bytes += statSync(abs).size;
  }
  // depmod needs these to know what is built in (and modinfo of built-ins resolves their aliases).
  for (const f of ['modules.builtin', 'modules.builtin.modinfo', 'modules.order']) {
    if (existsSync(join(base, f))) {
      await mkdir(join(stage, base), { recursive: true });
      await copyFile(join(base, f), join(stage, base, f));
    }
  }
  await run('depmod', ['-b', stage, kernelVersion], { quiet: true });
  return result;
}
