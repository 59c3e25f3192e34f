/**
 * The `ipxe` boot interface. Layout under http_root, after Ironic's:
 *   boot.ipxe                          tries pxelinux.cfg/<mac:hexhyp> for each NIC, else exits to the next boot device
 *   <uuid>/config                      the node's script (deploy ramdisk kernel + initrd + kernel parameters)
 *   <uuid>/deploy_kernel, deploy_ramdisk   local driver_info paths, linked/copied so the boot server serves them
 *   pxelinux.cfg/aa-bb-cc-dd-ee-ff     symlink -> ../<uuid>/config, one per pxe-enabled port
 * and, when tftp_root is set, tftp_root/boot.ipxe which only chains to <http_url>/boot.ipxe (QEMU's built-in
 * TFTP, or any DHCP/TFTP server handing out that name). Local boot = no per-node script: the chain falls
 * through with `exit`, and the firmware boots the disk.
 */
import { copyFile, link, mkdir, readdir, readlink, rm, stat, symlink, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { getLogger } from '../../common/logger.js';
import { InvalidParameterValue } from '../errors.js';
import { isLoopbackHost } from '../boot-server.js';
import { checkAllowedFile, isInternalAddress, isLocalFileRef } from '../file-access.js';
import { disableDhcp, enableDhcp, type BootDhcp } from './boot-dhcp.js';
import { installBootLoaders } from './boot-loaders.js';
import { CA_PATH, caInitrd } from './ca-initrd.js';
import { DriverInfoReader } from './driver-info.js';
import type { BootInterface, DriverNode, RamdiskBootParams } from './types.js';

const log = getLogger('ipxe');

export const IPXE_PROPERTIES: Record<string, string> = {
  deploy_kernel: 'Deploy ramdisk kernel: a local path under file_url_allowed_paths (served by the conductor\'s boot server), a loopback http URL (cached by the conductor when deploy.image_cache_allow_loopback is set) or a node-facing URL (used as is). Required.',
  deploy_ramdisk: 'Deploy ramdisk initramfs, same forms as deploy_kernel. Required.',
  kernel_append_params: 'Kernel parameters replacing the configured default for this node (e.g. console=ttyS0). Optional.',
};

export interface IpxeOptions {
  httpRoot: string;
  /** Guest-facing base URL of the boot server serving httpRoot. */
  httpUrl: string;
  tftpRoot?: string | undefined;
  /** Default kernel parameters ([pxe]kernel_append_params); driver_info.kernel_append_params replaces them. */
  kernelAppendParams?: string;
  /** Fetches loopback URLs into the boot server's cache and returns the guest-facing URL. */
  cacheImage?: (url: string) => Promise<string>;
  /** Directories local deploy_kernel/deploy_ramdisk files may come from (file_url_allowed_paths); none: no local files. */
  allowedFileDirs?: readonly string[];
  /** Loopback deploy_kernel/deploy_ramdisk URLs may be cached (deploy.image_cache_allow_loopback). */
  allowLoopback?: boolean;
  /** DHCP provider and boot-file settings (conductor/dhcp/): the node's ports get boot options while it boots a ramdisk. */
  dhcp?: BootDhcp | undefined;
}

type Source = { kind: 'path'; value: string } | { kind: 'loopback'; url: string } | { kind: 'remote'; url: string };

/** Control characters and whitespace: in a URL or a kernel parameter they would end the iPXE command line. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point of this check
const UNSAFE_CHARS = /[\s\x00-\x1f\x7f]/;

/** An http(s) URL fit for an iPXE script: normalised by URL, refused when it holds whitespace or control chars. */
export function scriptUrl(value: string, what: string): string {
  if (UNSAFE_CHARS.test(value)) throw new InvalidParameterValue(`${what} must not contain whitespace or control characters`);
  let u: URL;
  try { u = new URL(value); } catch { throw new InvalidParameterValue(`${what} is not a valid URL: ${JSON.stringify(value)}`); }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidParameterValue(`${what} must be an http(s) URL`);
  const href = u.href;
  // iPXE expands ${...} and splits on || and &&: a URL carrying them could run another command.
  if (/\$\{|\|\||&&/.test(href)) throw new InvalidParameterValue(`${what} contains iPXE syntax ("\${", "||" or "&&")`);
  return href;
}

/**
 * Kernel parameters from operator strings, split and checked token by token so none can end the iPXE `kernel`
 * line or start another command: printable ASCII only, balanced quotes, no iPXE operators or settings expansion.
 */
export function kernelParamTokens(value: string, what: string): string[] {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point of this check
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) throw new InvalidParameterValue(`${what} must not contain newlines or control characters`);
  const tokens = value.split(/[ \t]+/).filter(Boolean);
  for (const t of tokens) {
    if (!/^[\x21-\x7e]+$/.test(t)) throw new InvalidParameterValue(`${what}: parameter ${JSON.stringify(t)} has characters other than printable ASCII`);
    if (/\$\{|\|\||&&|\\/.test(t) || t.startsWith('#') || t.startsWith(':')) {
      throw new InvalidParameterValue(`${what}: parameter ${JSON.stringify(t)} contains iPXE script syntax`);
    }
    if ((t.split('"').length - 1) % 2 !== 0 || (t.split("'").length - 1) % 2 !== 0) {
      throw new InvalidParameterValue(`${what}: parameter ${JSON.stringify(t)} has unbalanced quotes`);
    }
  }
  return tokens;
}

function classify(value: string): Source | undefined {
  if (isLocalFileRef(value)) return { kind: 'path', value };
  let u: URL;
  try { u = new URL(value); } catch { return undefined; }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  return isLoopbackHost(u.hostname) || isInternalAddress(u.hostname) ? { kind: 'loopback', url: value } : { kind: 'remote', url: value };
}

/** `aa-bb-cc-dd-ee-ff`, the name iPXE's ${mac:hexhyp} produces. */
export function macHexhyp(mac: string): string {
  return mac.trim().toLowerCase().replace(/[:-]/g, '').replace(/(..)(?!$)/g, '$1-');
}

/** The shared chain script: per NIC, try its per-MAC config; none → exit so the firmware tries the next device. */
export function chainScript(httpUrl: string): string {
  return `#!ipxe
# baremetal-ts: boot the per-node script of the first NIC that has one, else return to the firmware
set i:int32 0
:nic
isset \${net\${i}/mac} || goto none
chain --autofree ${httpUrl}/pxelinux.cfg/\${net\${i}/mac:hexhyp} || goto next
:next
inc i
goto nic
:none
# An unknown machine: the default config when there is one (discovery, conductor/inspection/discovery-boot.ts)
chain --autofree ${httpUrl}/pxelinux.cfg/default ||
echo No boot configuration for this machine here; trying the next boot device
exit 0
`;
}

/** tftp_root/boot.ipxe: the whole job is to get from TFTP to the boot server. */
export function tftpChainScript(httpUrl: string): string {
  return `#!ipxe\nchain --autofree ${httpUrl}/boot.ipxe || exit 0\n`;
}

export function deployScript(o: { kernelUrl: string; ramdiskUrl: string; params: string[]; node: string;
  /** The API CA as a second initrd (ca-initrd.ts); its file is named by ipa-cafile in params. */
  caInitrdUrl?: string | undefined }): string {
  // Last line of defence: whatever the callers checked, nothing operator-given reaches the script unchecked.
  const kernelUrl = scriptUrl(o.kernelUrl, 'deploy kernel URL');
  const ramdiskUrl = scriptUrl(o.ramdiskUrl, 'deploy ramdisk URL');
  const caInitrdUrl = o.caInitrdUrl ? scriptUrl(o.caInitrdUrl, 'API CA initrd URL') : undefined;
  const params = o.params.flatMap((p) => kernelParamTokens(p, 'kernel parameters'));
  if (!/^[A-Za-z0-9._-]+$/.test(o.node)) throw new InvalidParameterValue(`invalid node identifier ${JSON.stringify(o.node)}`);
  const args = ['selinux=0', 'troubleshoot=0', 'text', ...params, 'BOOTIF=${mac}', 'initrd=deploy_ramdisk',
    ...(caInitrdUrl ? ['initrd=api_ca'] : [])].join(' ');
  const caLine = caInitrdUrl ? `initrd --name api_ca ${caInitrdUrl} || goto retry\n` : '';
  // Retries with growing sleeps, then power off, as Ironic's template does: a half-fetched ramdisk must not boot.
  return `#!ipxe
# baremetal-ts deploy ramdisk for node ${o.node}
set attempts:int32 0
:deploy
imgfree
kernel --name deploy_kernel ${kernelUrl} ${args} || goto retry
initrd --name deploy_ramdisk ${ramdiskUrl} || goto retry
${caLine}boot
:retry
inc attempts
iseq \${attempts} 10 && goto fail ||
echo Fetching the deploy ramdisk failed (attempt \${attempts}); retrying in \${attempts} s
sleep \${attempts}
goto deploy
:fail
echo Giving up on the deploy ramdisk
# poweroff is missing from some iPXE builds (Debian's 2019 ROM): then return to the firmware
poweroff ||
exit 1
`;
}

/** Split kernel parameters, dropping exact duplicates (later wins position-wise once). */
function mergeParams(...lists: string[][]): string[] {
  const out: string[] = [];
  for (const l of lists) for (const p of l) if (p && !out.includes(p)) out.push(p);
  return out;
}

export class IpxeBoot implements BootInterface {
  readonly name = 'ipxe';
  readonly properties = IPXE_PROPERTIES;
  private scriptsWritten = false;

  constructor(readonly opts: IpxeOptions) {}

  validate(node: DriverNode): void {
    if (!this.opts.httpUrl || !this.opts.httpRoot) {
      throw new InvalidParameterValue('The ipxe boot interface needs boot.http_root and boot.http_url in the conductor configuration.');
    }
    const r = new DriverInfoReader(node.driver_info);
    for (const key of ['deploy_kernel', 'deploy_ramdisk']) {
      const v = r.str(key, true);
      if (v === undefined) continue;
      const src = classify(v);
      if (!src) { r.bad(`${key} must be an absolute path or an http(s) URL, got ${JSON.stringify(v)}`); continue; }
      try {
        if (src.kind === 'path') checkAllowedFile(src.value, this.opts.allowedFileDirs ?? [], key);
        else scriptUrl(src.url, key);
      } catch (e) {
        r.bad((e as Error).message);
        continue;
      }
      if (src.kind === 'loopback' && !this.opts.cacheImage) r.bad(`${key} is a loopback URL but the conductor has no boot server to cache it`);
      else if (src.kind === 'loopback' && !this.opts.allowLoopback) {
        r.bad(`${key} is a loopback or link-local URL, which the conductor does not fetch (deploy.image_cache_allow_loopback)`);
      }
    }
    const params = r.str('kernel_append_params');
    if (params !== undefined) {
      try { kernelParamTokens(params, 'kernel_append_params'); } catch (e) { r.bad((e as Error).message); }
    }
    r.finish('iPXE boot', node);
  }

  /** boot.ipxe in http_root (and tftp_root); idempotent, atomic replace. */
  async writeBootScripts(): Promise<void> {
    await mkdir(join(this.opts.httpRoot, 'pxelinux.cfg'), { recursive: true });
    await atomicWrite(join(this.opts.httpRoot, 'boot.ipxe'), chainScript(this.opts.httpUrl));
    if (this.opts.tftpRoot) {
      await mkdir(this.opts.tftpRoot, { recursive: true });
      await atomicWrite(join(this.opts.tftpRoot, 'boot.ipxe'), tftpChainScript(this.opts.httpUrl));
      // Our DHCP hands out undionly.kpxe / snponly.efi: they must be in tftp_root.
      if (this.opts.dhcp) await installBootLoaders(this.opts.tftpRoot);
    }
    this.scriptsWritten = true;
  }

  private async imageUrl(node: DriverNode, key: 'deploy_kernel' | 'deploy_ramdisk'): Promise<string> {
    const value = node.driver_info[key];
    const src = typeof value === 'string' ? classify(value) : undefined;
    if (!src) throw new InvalidParameterValue(`${key} of node ${node.uuid} must be an absolute path or an http(s) URL`);
    if (src.kind === 'remote') return scriptUrl(src.url, key);
    if (src.kind === 'loopback') {
      if (!this.opts.cacheImage) throw new InvalidParameterValue(`${key} is a loopback URL but there is no boot server to cache it`);
      if (!this.opts.allowLoopback) throw new InvalidParameterValue(`${key} is a loopback or link-local URL, which the conductor does not fetch`);
      return this.opts.cacheImage(scriptUrl(src.url, key));
    }
    // Checked again now: the file (or a symlink on its path) may have changed since the API accepted it.
    const real = checkAllowedFile(src.value, this.opts.allowedFileDirs ?? [], key);
    const dest = join(this.opts.httpRoot, node.uuid, key);
    await rm(dest, { force: true });
    // A hard link costs nothing; across filesystems fall back to a (reflink where possible) copy.
    await link(real, dest).catch(() => copyFile(real, dest));
    return `${this.opts.httpUrl}/${node.uuid}/${key}`;
  }

  async prepareRamdisk(node: DriverNode, params: RamdiskBootParams): Promise<void> {
    this.validate(node);
    if (!this.scriptsWritten) await this.writeBootScripts();
    const macs = node.ports.filter((p) => p.pxe_enabled).map((p) => p.address);
    if (macs.length === 0) throw new InvalidParameterValue(`Node ${node.uuid} has no pxe-enabled port; iPXE boot is keyed by MAC`);
    const dir = join(this.opts.httpRoot, node.uuid);
    await mkdir(dir, { recursive: true });
    const [kernelUrl, ramdiskUrl] = await Promise.all([this.imageUrl(node, 'deploy_kernel'), this.imageUrl(node, 'deploy_ramdisk')]);
    const perNode = node.driver_info.kernel_append_params;
    const base = typeof perNode === 'string' && perNode.trim() ? perNode : this.opts.kernelAppendParams ?? 'nofb nomodeset vga=normal';
    const kernelParams = mergeParams(kernelParamTokens(base, 'kernel_append_params'),
      params.kernelParams.flatMap((p) => kernelParamTokens(p, 'kernel parameters')),
      [`ipa-api-url=${params.apiUrl}`], params.requestId ? [`ipa-global-request-id=${params.requestId}`] : [],
      params.apiCaPem ? [`ipa-cafile=${CA_PATH}`] : []);
    let caInitrdUrl: string | undefined;
    if (params.apiCaPem) {
      await writeFile(join(dir, 'api-ca.cpio'), caInitrd(params.apiCaPem));
      caInitrdUrl = `${this.opts.httpUrl}/${node.uuid}/api-ca.cpio`;
    }
    await atomicWrite(join(dir, 'config'), deployScript({ kernelUrl, ramdiskUrl, params: kernelParams, node: node.uuid,
      caInitrdUrl }));
    await this.removeMacLinks(node.uuid);
    for (const mac of macs) {
      const l = join(this.opts.httpRoot, 'pxelinux.cfg', macHexhyp(mac));
      await rm(l, { force: true });
      await symlink(`../${node.uuid}/config`, l);
    }
    await enableDhcp(this.opts.dhcp, node, 'ipxe', this.opts.httpUrl);
    log.info({ node: node.uuid, macs, kernelUrl, ramdiskUrl }, 'iPXE deploy ramdisk config written');
  }

  /** Remove every per-MAC link pointing at this node (ports may have changed since they were written). */
  private async removeMacLinks(uuid: string): Promise<void> {
    const cfg = join(this.opts.httpRoot, 'pxelinux.cfg');
    const names = await readdir(cfg).catch(() => [] as string[]);
    for (const n of names) {
      const target = await readlink(join(cfg, n)).catch(() => '');
      if (target === `../${uuid}/config`) await rm(join(cfg, n), { force: true });
    }
  }

  async cleanUpRamdisk(node: DriverNode): Promise<void> {
    await disableDhcp(this.opts.dhcp, node);
    await this.removeMacLinks(node.uuid);
    await rm(join(this.opts.httpRoot, node.uuid), { recursive: true, force: true });
    log.info({ node: node.uuid }, 'iPXE per-node files removed');
  }

  /** Local boot: with no per-node script the chain script exits and the firmware boots the disk. */
  async prepareInstance(node: DriverNode): Promise<void> {
    await this.cleanUpRamdisk(node);
  }

  async cleanUpInstance(node: DriverNode): Promise<void> {
    await this.cleanUpRamdisk(node);
  }
}

async function atomicWrite(path: string, content: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, content);
  await rename(tmp, path);
}

/** For tests and diagnostics: does the node currently have a per-node script? */
export async function hasNodeConfig(httpRoot: string, uuid: string): Promise<boolean> {
  return (await stat(join(httpRoot, uuid, 'config')).catch(() => undefined))?.isFile() ?? false; // missing = no config
}
