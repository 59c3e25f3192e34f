/**
 * The boot configuration for unknown machines (Ironic's discovery relies on the PXE default config handing the
 * ramdisk `ipa-inspection-callback-url`): with discovery on and a discovery ramdisk configured, the boot server
 * gets pxelinux.cfg/default, which boot.ipxe chains when no per-MAC config matches. Otherwise the file is
 * removed, so unknown machines fall through to their next boot device.
 */
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConductorContext } from '../context.js';
import { deployScript } from '../drivers/ipxe.js';
import { inspectionCallbackUrl } from './agent-inspect.js';

export async function writeDiscoveryBootConfig(ctx: ConductorContext): Promise<string | undefined> {
  const bs = ctx.bootServer;
  if (!bs) return undefined;
  const file = join(bs.httpRoot, 'pxelinux.cfg', 'default');
  const d = ctx.config.inspector.discovery;
  if (!d.enabled || !d.deploy_kernel || !d.deploy_ramdisk) {
    await rm(file, { force: true });
    return undefined;
  }
  const params = [ctx.config.boot.kernel_append_params, `ipa-inspection-callback-url=${inspectionCallbackUrl(ctx)}`,
    ctx.config.inspector.extra_kernel_params].filter(Boolean);
  const script = deployScript({ kernelUrl: d.deploy_kernel, ramdiskUrl: d.deploy_ramdisk, params, node: 'discovery' });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, script);
  await rename(tmp, file);
  return file;
}
