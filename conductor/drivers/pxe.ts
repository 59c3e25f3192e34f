/**
 * The `pxe` boot interface: PXELINUX (legacy BIOS) and GRUB (UEFI) configs over TFTP, Ironic's classic layout
 * under tftp_root:
 *   pxelinux.0, ldlinux.c32, bootx64.efi (GRUB), grub.cfg     boot loaders (boot-loaders.ts) and GRUB's master config
 *   <uuid>/config                          the node's config: PXELINUX syntax for BIOS nodes, GRUB for UEFI ones
 *   <uuid>/deploy_kernel, deploy_ramdisk   linked/copied from driver_info's local paths
 *   pxelinux.cfg/01-aa-bb-cc-dd-ee-ff      -> ../<uuid>/config (PXELINUX looks it up by ARP type 01 + MAC)
 *   grub.cfg-01-aa-bb-cc-dd-ee-ff, aa:bb:cc:dd:ee:ff.conf   -> <uuid>/config (GRUB, by $net_default_mac)
 *   pxelinux.cfg/default                   local boot, for a BIOS node that PXE-boots without a config
 * Paths inside the configs are relative to tftp_root (dnsmasq refuses absolute paths outside it).
 */
import { copyFile, link, mkdir, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getLogger } from '../../common/logger.js';
import { InvalidParameterValue } from '../errors.js';
import { checkAllowedFile, isLocalFileRef } from '../file-access.js';
import { disableDhcp, enableDhcp, nodeBootMode, type BootDhcp } from './boot-dhcp.js';
import { installBootLoaders } from './boot-loaders.js';
import { CA_PATH, caInitrd } from './ca-initrd.js';
import { DriverInfoReader } from './driver-info.js';
import { kernelParamTokens, macHexhyp } from './ipxe.js';
import type { BootInterface, DriverNode, RamdiskBootParams } from './types.js';

const log = getLogger('pxe');

export interface PxeOptions {
  tftpRoot: string;
  kernelAppendParams?: string;
  allowedFileDirs?: readonly string[];
  dhcp?: BootDhcp | undefined;
  defaultBootMode?: 'bios' | 'uefi';
  /** Install the boot loaders into tftp_root (off in unit tests). */
  installLoaders?: boolean;
}

/** TFTP-relative file names: no whitespace, quotes or control characters, no `..`. */
function tftpPath(p: string): string {
  if (!/^[A-Za-z0-9._/-]+$/.test(p) || p.split('/').includes('..')) throw new InvalidParameterValue(`invalid TFTP path ${JSON.stringify(p)}`);
  return p;
}

export interface PxeConfigInput {
  kernel: string;
  initrds: string[];
  params: string[];
}

/** PXELINUX: one `deploy` label; `ipappend 2` adds BOOTIF=01-<mac> of the NIC it booted from. */
export function pxelinuxConfig(i: PxeConfigInput): string {
  const params = i.params.flatMap((p) => kernelParamTokens(p, 'kernel parameters'));
  const initrd = i.initrds.map(tftpPath).join(',');
  return `default deploy

label deploy
kernel ${tftpPath(i.kernel)}
append initrd=${initrd} selinux=0 troubleshoot=0 text ${params.join(' ')}
ipappend 2
`;
}

/** GRUB (UEFI): the same entry in GRUB syntax; paths are on the (tftp) device GRUB booted from. */
export function grubConfig(i: PxeConfigInput & { tftpServer?: string | undefined }): string {
  const params = i.params.flatMap((p) => kernelParamTokens(p, 'kernel parameters'));
  if (params.some((p) => /[;{}$`]/.test(p))) throw new InvalidParameterValue('kernel parameters contain GRUB script syntax');
  const server = i.tftpServer ? ` boot_server=${i.tftpServer}` : '';
  return `set default=deploy
set timeout=5
set hidden_timeout_quiet=false

menuentry "deploy" {
    linux /${tftpPath(i.kernel)} selinux=0 troubleshoot=0 text ${params.join(' ')}${server}
    initrd ${i.initrds.map((f) => `/${tftpPath(f)}`).join(' ')}
}
`;
}

/** GRUB's first config (tftp_root/grub.cfg): the per-MAC one, by the MAC of the NIC it booted from. */
export function grubMasterConfig(): string {
  return `echo Booting from $prefix
set timeout=0
source /$net_default_mac.conf
echo No boot configuration for $net_default_mac here
exit
`;
}

export const PXELINUX_DEFAULT = `default local
label local
localboot 0
`;

function mergeParams(...lists: string[][]): string[] {
  const out: string[] = [];
  for (const l of lists) for (const p of l) if (p && !out.includes(p)) out.push(p);
  return out;
}

export class PxeBoot implements BootInterface {
  readonly name = 'pxe';
  readonly properties: Record<string, string> = {
    deploy_kernel: 'Deploy ramdisk kernel: a local path under file_url_allowed_paths, served over TFTP. Required.',
    deploy_ramdisk: 'Deploy ramdisk initramfs: a local path under file_url_allowed_paths, served over TFTP. Required.',
    kernel_append_params: 'Kernel parameters replacing the configured default for this node. Optional.',
  };
  private filesWritten = false;

  constructor(readonly opts: PxeOptions) {}

  validate(node: DriverNode): void {
    if (!this.opts.tftpRoot) throw new InvalidParameterValue('The pxe boot interface needs boot.tftp_root in the conductor configuration.');
    const r = new DriverInfoReader(node.driver_info);
    for (const key of ['deploy_kernel', 'deploy_ramdisk']) {
      const v = r.str(key, true);
      if (v === undefined) continue;
      if (!isLocalFileRef(v)) { r.bad(`${key} must be a local file for the pxe boot interface (TFTP), got ${JSON.stringify(v)}`); continue; }
      try { checkAllowedFile(v, this.opts.allowedFileDirs ?? [], key); } catch (e) { r.bad((e as Error).message); }
    }
    const params = r.str('kernel_append_params');
    if (params !== undefined) {
      try { kernelParamTokens(params, 'kernel_append_params'); } catch (e) { r.bad((e as Error).message); }
    }
    r.finish('PXE boot', node);
  }

  /** Loaders, GRUB's master config and PXELINUX's local-boot default; idempotent. */
  async writeBootFiles(): Promise<void> {
    const root = this.opts.tftpRoot;
    await mkdir(join(root, 'pxelinux.cfg'), { recursive: true });
    if (this.opts.installLoaders !== false) await installBootLoaders(root);
    await atomicWrite(join(root, 'grub.cfg'), grubMasterConfig());
    await atomicWrite(join(root, 'pxelinux.cfg', 'default'), PXELINUX_DEFAULT);
    this.filesWritten = true;
  }

  private async stage(node: DriverNode, key: 'deploy_kernel' | 'deploy_ramdisk'): Promise<string> {
    const value = String(node.driver_info[key]);
    const real = checkAllowedFile(value, this.opts.allowedFileDirs ?? [], key);
    const dest = join(this.opts.tftpRoot, node.uuid, key);
    await rm(dest, { force: true });
    await link(real, dest).catch(() => copyFile(real, dest));
    return `${node.uuid}/${key}`;
  }

  async prepareRamdisk(node: DriverNode, params: RamdiskBootParams): Promise<void> {
    this.validate(node);
    if (!this.filesWritten) await this.writeBootFiles();
    const macs = node.ports.filter((p) => p.pxe_enabled).map((p) => p.address);
    if (macs.length === 0) throw new InvalidParameterValue(`Node ${node.uuid} has no pxe-enabled port; PXE boot is keyed by MAC`);
    if (!/^[A-Za-z0-9._-]+$/.test(node.uuid)) throw new InvalidParameterValue(`invalid node identifier ${JSON.stringify(node.uuid)}`);
    const dir = join(this.opts.tftpRoot, node.uuid);
    await mkdir(dir, { recursive: true });
    const kernel = await this.stage(node, 'deploy_kernel');
    const initrds = [await this.stage(node, 'deploy_ramdisk')];
    const perNode = node.driver_info.kernel_append_params;
    const base = typeof perNode === 'string' && perNode.trim() ? perNode : this.opts.kernelAppendParams ?? 'nofb nomodeset vga=normal';
    const kernelParams = mergeParams(kernelParamTokens(base, 'kernel_append_params'),
      params.kernelParams.flatMap((p) => kernelParamTokens(p, 'kernel parameters')),
      [`ipa-api-url=${params.apiUrl}`], params.requestId ? [`ipa-global-request-id=${params.requestId}`] : [],
      params.apiCaPem ? [`ipa-cafile=${CA_PATH}`] : []);
    if (params.apiCaPem) {
      await writeFile(join(dir, 'api-ca.cpio'), caInitrd(params.apiCaPem));
      initrds.push(`${node.uuid}/api-ca.cpio`);
    }
    const mode = nodeBootMode(node, this.opts.defaultBootMode ?? 'bios');
    const config = mode === 'uefi'
      ? grubConfig({ kernel, initrds, params: kernelParams, tftpServer: this.opts.dhcp?.tftpServer })
      : pxelinuxConfig({ kernel, initrds, params: kernelParams });
    await atomicWrite(join(dir, 'config'), config);
    await this.removeMacLinks(node.uuid);
    for (const mac of macs) {
      const hyp = macHexhyp(mac);
      await relink(`../${node.uuid}/config`, join(this.opts.tftpRoot, 'pxelinux.cfg', `01-${hyp}`));
      await relink(`${node.uuid}/config`, join(this.opts.tftpRoot, `grub.cfg-01-${hyp}`));
      await relink(`${node.uuid}/config`, join(this.opts.tftpRoot, `${hyp.replace(/-/g, ':')}.conf`));
    }
    await enableDhcp(this.opts.dhcp, node, 'pxe');
    log.info({ node: node.uuid, macs, mode }, 'PXE deploy ramdisk config written');
  }

  /** Every per-MAC link (PXELINUX and GRUB names) pointing at this node's config. */
  private async removeMacLinks(uuid: string): Promise<void> {
    for (const [dir, target] of [[join(this.opts.tftpRoot, 'pxelinux.cfg'), `../${uuid}/config`], [this.opts.tftpRoot, `${uuid}/config`]] as const) {
      for (const n of await readdir(dir).catch(() => [] as string[])) {
        if ((await readlink(join(dir, n)).catch(() => '')) === target) await rm(join(dir, n), { force: true });
      }
    }
  }

  async cleanUpRamdisk(node: DriverNode): Promise<void> {
    await disableDhcp(this.opts.dhcp, node);
    await this.removeMacLinks(node.uuid);
    await rm(join(this.opts.tftpRoot, node.uuid), { recursive: true, force: true });
    log.info({ node: node.uuid }, 'PXE per-node files removed');
  }

  /** Local boot: no per-node config and no DHCP boot options; the node boots its disk. */
  async prepareInstance(node: DriverNode): Promise<void> {
    await this.cleanUpRamdisk(node);
  }

  async cleanUpInstance(node: DriverNode): Promise<void> {
    await this.cleanUpRamdisk(node);
  }
}

async function relink(target: string, path: string): Promise<void> {
  await rm(path, { force: true });
  await symlink(target, path);
}

async function atomicWrite(path: string, content: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, content);
  await rename(tmp, path);
}
