/**
 * The `ssh` hardware type: power and boot device of virtual machines on a virtualization host, driven over ssh
 * with the host's own CLI, as the original Ironic ssh driver did for labs and CI farms. Two virt types:
 * `virsh` (libvirt; boot order edited in the domain XML, effective at the next start) and `vbox` (VBoxManage).
 *
 * Safety: host keys are verified against a known_hosts file in the conductor's data dir (StrictHostKeyChecking
 * yes); trusting a new host on first use is an explicit opt-in (`ssh.trust_on_first_use`). Keys only: BatchMode
 * never prompts, the private key given as contents goes to a 0600 file in a private temp dir, removed after use,
 * and never appears in argv or logs. Remote arguments are single-quoted, so a domain name cannot inject shell.
 */
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CommandError, run } from '../../common/exec.js';
import { getLogger } from '../../common/logger.js';
import { DriverOperationError, InvalidParameterValue, PowerStateFailure } from '../errors.js';
import { DriverInfoReader, waitForPowerState } from './driver-info.js';
import type { DriverRegistry } from './index.js';
import type { BootDevice, DriverNode, ManagementInterface, PowerInterface, PowerState, PowerTarget } from './types.js';

const log = getLogger('ssh-virt');

export const SSH_PROPERTIES: Record<string, string> = {
  ssh_address: 'Host name or IP address of the virtualization host. Required.',
  ssh_port: 'ssh port of the host (default 22). Optional.',
  ssh_username: 'User to log in as on the host. Required.',
  ssh_key_filename: 'Private key file on the conductor host. One of ssh_key_filename / ssh_key_contents is required.',
  ssh_key_contents: 'Private key (PEM/OpenSSH text). One of ssh_key_filename / ssh_key_contents is required.',
  ssh_virt_type: '"virsh" (libvirt, default) or "vbox" (VirtualBox VBoxManage). Optional.',
  ssh_domain: 'Domain (virsh: name or UUID) or VM (vbox: name or UUID) of this node. Required.',
  ssh_libvirt_uri: 'libvirt connection URI on the host (default qemu:///system). Optional.',
};

export interface SshVirtOptions {
  /** known_hosts the host keys are checked against (conductor data dir). */
  knownHostsFile: string;
  /** Accept and record an unknown host key on first contact (ssh StrictHostKeyChecking=accept-new). */
  trustOnFirstUse: boolean;
  commandTimeoutS: number;
  powerStateChangeTimeoutS: number;
  pollIntervalS: number;
}

export const DEFAULT_SSH_OPTIONS: SshVirtOptions = {
  knownHostsFile: '', trustOnFirstUse: false, commandTimeoutS: 30, powerStateChangeTimeoutS: 60, pollIntervalS: 1,
};

export type VirtType = 'virsh' | 'vbox';

export interface SshInfo {
  address: string;
  port: number;
  username: string;
  keyFile: string | undefined;
  keyContents: string | undefined;
  virtType: VirtType;
  domain: string;
  uri: string;
}

export function parseSshInfo(node: DriverNode): SshInfo {
  const r = new DriverInfoReader(node.driver_info);
  const address = r.str('ssh_address', true);
  const port = r.int('ssh_port', { min: 1, max: 65535 }) ?? 22;
  const username = r.str('ssh_username', true);
  const keyFile = r.str('ssh_key_filename');
  const keyContents = r.str('ssh_key_contents');
  const virtType = r.oneOf('ssh_virt_type', ['virsh', 'vbox'] as const, 'virsh');
  const domain = r.str('ssh_domain', true);
  const uri = r.str('ssh_libvirt_uri') ?? 'qemu:///system';
  if (keyFile === undefined && keyContents === undefined) {
    r.bad('one of ssh_key_filename or ssh_key_contents is required (password log-in is not supported: keys only)');
  }
  if (keyFile !== undefined && keyContents !== undefined) r.bad('give only one of ssh_key_filename and ssh_key_contents');
  if (node.driver_info.ssh_password !== undefined && node.driver_info.ssh_password !== null) {
    r.bad('ssh_password is not supported: give a key (ssh_key_filename or ssh_key_contents)');
  }
  // Option-looking values would be read by ssh as options; whitespace never belongs in a host or user name.
  for (const [k, v] of [['ssh_address', address], ['ssh_username', username]] as const) {
    if (v !== undefined && (/^-/.test(v) || /[\s@]/.test(v))) r.bad(`${k} is not a valid host/user name: ${JSON.stringify(v)}`);
  }
  if (domain !== undefined && (domain.length > 255 || /[\0\n\r]/.test(domain))) r.bad('ssh_domain is not a valid domain name');
  if (!/^[a-z+]+:\/\/[^\s']*$/.test(uri)) r.bad(`ssh_libvirt_uri is not a libvirt URI: ${JSON.stringify(uri)}`);
  r.finish('ssh', node);
  return { address: address!, port, username: username!, keyFile, keyContents, virtType, domain: domain!, uri };
}

/** POSIX single-quoting for the remote shell ssh hands the command line to. */
export function shellQuote(arg: string): string {
  return `'${arg.replaceAll("'", "'\\''")}'`;
}

/** Run one command on the virtualization host; returns stdout. Connection/auth/host-key failures are explicit. */
export async function sshRun(info: SshInfo, argv: string[], opts: SshVirtOptions, input?: string): Promise<string> {
  if (!opts.knownHostsFile) throw new DriverOperationError('ssh driver: no known_hosts file configured');
  await mkdir(dirname(opts.knownHostsFile), { recursive: true, mode: 0o700 });
  let keyDir: string | undefined;
  let keyFile = info.keyFile;
  try {
    if (info.keyContents !== undefined) {
      keyDir = await mkdtemp(join(tmpdir(), 'bmts-sshkey-'));
      keyFile = join(keyDir, 'id');
      await writeFile(keyFile, info.keyContents.endsWith('\n') ? info.keyContents : `${info.keyContents}\n`, { mode: 0o600 });
      await chmod(keyFile, 0o600);
    }
    const args = [
      '-p', String(info.port), '-i', keyFile!, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
      '-o', `UserKnownHostsFile=${opts.knownHostsFile}`, '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', `StrictHostKeyChecking=${opts.trustOnFirstUse ? 'accept-new' : 'yes'}`,
      '-o', `ConnectTimeout=${Math.max(1, Math.round(opts.commandTimeoutS / 3))}`, '-o', 'LogLevel=ERROR',
      '-l', info.username, '--', info.address, argv.map(shellQuote).join(' '),
    ];
    const r = await run('ssh', args, { timeoutMs: opts.commandTimeoutS * 1000, okCodes: [0], ...(input !== undefined ? { input } : {}) });
    return r.stdout;
  } catch (e) {
    throw new DriverOperationError(describeSshFailure(info, e), e);
  } finally {
    if (keyDir) await rm(keyDir, { recursive: true, force: true });
  }
}

function describeSshFailure(info: SshInfo, e: unknown): string {
  const stderr = e instanceof CommandError ? e.stderr : String(e);
  const where = `${info.username}@${info.address}:${info.port}`;
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No .* host key is known/i.test(stderr)) {
    return `ssh to ${where}: the host key is not trusted (not in the conductor's known_hosts, or changed). ` +
      'Add it to known_hosts or enable ssh.trust_on_first_use.';
  }
  if (/Permission denied/i.test(stderr)) return `ssh to ${where}: permission denied (the key was refused)`;
  if (/Connection refused|timed out|No route to host|Could not resolve/i.test(stderr)) {
    return `ssh to ${where}: cannot connect (${stderr.trim().split('\n').at(-1) ?? ''})`;
  }
  return `command on ${where} failed: ${stderr.trim().slice(-400)}`;
}

/** What one virt type's CLI looks like: argv per operation and how to read its answers. */
interface VirtCli {
  state(i: SshInfo): string[];
  parseState(out: string): PowerState;
  start(i: SshInfo): string[];
  stop(i: SshInfo): string[];
  shutdown(i: SshInfo): string[];
  getBoot(i: SshInfo, o: SshVirtOptions): Promise<BootDevice | null>;
  setBoot(i: SshInfo, o: SshVirtOptions, dev: 'pxe' | 'disk' | 'cdrom'): Promise<void>;
}

const LIBVIRT_BOOT: Record<'pxe' | 'disk' | 'cdrom', string> = { pxe: 'network', disk: 'hd', cdrom: 'cdrom' };

/**
 * Rewrites the `<boot dev=.../>` entries of a domain's `<os>` so `first` comes first, keeping the others after
 * it in their old order (a disk after the network keeps a deployed node bootable if PXE finds nothing).
 */
export function setLibvirtBootOrder(xml: string, first: string): string {
  const os = /<os(\s[^>]*)?>([\s\S]*?)<\/os>/.exec(xml);
  if (!os) throw new DriverOperationError('domain XML has no <os> element');
  const body = os[2]!;
  const current = [...body.matchAll(/<boot\s+dev=['"]([a-z]+)['"]\s*\/>/g)].map((m) => m[1]!);
  const order = [first, ...current.filter((d) => d !== first)];
  const indent = /\n(\s*)<type/.exec(body)?.[1] ?? '    ';
  const stripped = body.replace(/\s*<boot\s+dev=['"][a-z]+['"]\s*\/>/g, '');
  const withBoot = stripped.replace(/(<\/type>|<type[^>]*\/>)/, (t) => `${t}${order.map((d) => `\n${indent}<boot dev='${d}'/>`).join('')}`);
  if (withBoot === stripped) throw new DriverOperationError('domain XML <os> has no <type> element');
  return xml.slice(0, os.index) + `<os${os[1] ?? ''}>${withBoot}</os>` + xml.slice(os.index + os[0].length);
}

export function libvirtFirstBoot(xml: string): BootDevice | null {
  const os = /<os(\s[^>]*)?>([\s\S]*?)<\/os>/.exec(xml);
  const first = os ? /<boot\s+dev=['"]([a-z]+)['"]/.exec(os[2]!)?.[1] : undefined;
  return first === 'network' ? 'pxe' : first === 'hd' ? 'disk' : first === 'cdrom' ? 'cdrom' : null;
}

const VIRSH: VirtCli = {
  state: (i) => ['virsh', '-c', i.uri, 'domstate', i.domain],
  parseState: (out) => {
    const s = out.trim().split('\n')[0]?.trim() ?? '';
    if (s === 'running' || s === 'paused' || s === 'in shutdown' || s === 'blocked' || s === 'idle') return 'power on';
    if (s === 'shut off' || s === 'crashed' || s === 'pmsuspended') return 'power off';
    return 'error';
  },
  start: (i) => ['virsh', '-c', i.uri, 'start', i.domain],
  stop: (i) => ['virsh', '-c', i.uri, 'destroy', i.domain],
  shutdown: (i) => ['virsh', '-c', i.uri, 'shutdown', i.domain],
  async getBoot(i, o) {
    return libvirtFirstBoot(await sshRun(i, ['virsh', '-c', i.uri, 'dumpxml', '--inactive', i.domain], o));
  },
  async setBoot(i, o, dev) {
    const xml = await sshRun(i, ['virsh', '-c', i.uri, 'dumpxml', '--inactive', i.domain], o);
    // virsh define reads a file: the new XML goes through stdin as /dev/stdin (nothing written on the host).
    await sshRun(i, ['virsh', '-c', i.uri, 'define', '/dev/stdin'], o, setLibvirtBootOrder(xml, LIBVIRT_BOOT[dev]));
  },
};

const VBOX_BOOT: Record<'pxe' | 'disk' | 'cdrom', string> = { pxe: 'net', disk: 'disk', cdrom: 'dvd' };

const VBOX: VirtCli = {
  state: (i) => ['VBoxManage', 'showvminfo', i.domain, '--machinereadable'],
  parseState: (out) => {
    const s = /^VMState="([^"]*)"/m.exec(out)?.[1];
    if (s === undefined) return 'error';
    return s === 'running' || s === 'paused' || s === 'starting' || s === 'stopping' ? 'power on' : 'power off';
  },
  start: (i) => ['VBoxManage', 'startvm', i.domain, '--type', 'headless'],
  stop: (i) => ['VBoxManage', 'controlvm', i.domain, 'poweroff'],
  shutdown: (i) => ['VBoxManage', 'controlvm', i.domain, 'acpipowerbutton'],
  async getBoot(i, o) {
    const b = /^boot1="([^"]*)"/m.exec(await sshRun(i, VBOX.state(i), o))?.[1];
    return b === 'net' ? 'pxe' : b === 'disk' ? 'disk' : b === 'dvd' ? 'cdrom' : null;
  },
  async setBoot(i, o, dev) {
    await sshRun(i, ['VBoxManage', 'modifyvm', i.domain, '--boot1', VBOX_BOOT[dev]], o);
  },
};

const CLI: Record<VirtType, VirtCli> = { virsh: VIRSH, vbox: VBOX };

export class SshPower implements PowerInterface {
  readonly name = 'ssh';
  readonly properties = SSH_PROPERTIES;
  readonly opts: SshVirtOptions;
  constructor(opts: Partial<SshVirtOptions> = {}) {
    this.opts = { ...DEFAULT_SSH_OPTIONS, ...opts };
  }

  validate(node: DriverNode): void {
    parseSshInfo(node);
  }

  getSupportedPowerStates(): PowerTarget[] {
    return ['power on', 'power off', 'rebooting', 'soft power off', 'soft rebooting'];
  }

  async getPowerState(node: DriverNode): Promise<PowerState> {
    const info = parseSshInfo(node);
    const cli = CLI[info.virtType];
    let out: string;
    try {
      out = await sshRun(info, cli.state(info), this.opts);
    } catch (e) {
      throw new PowerStateFailure(`Failed to get power state of node ${node.uuid}: ${(e as Error).message}`, e);
    }
    const s = cli.parseState(out);
    if (s === 'error') throw new PowerStateFailure(`Unknown state of ${info.domain} on ${info.address}: ${out.trim().slice(0, 200)}`);
    return s;
  }

  async setPowerState(node: DriverNode, target: PowerTarget, timeoutS?: number): Promise<void> {
    const info = parseSshInfo(node);
    const cli = CLI[info.virtType];
    const timeoutMs = (timeoutS ?? this.opts.powerStateChangeTimeoutS) * 1000;
    const change = async (argv: string[], want: PowerState): Promise<void> => {
      // Idempotent like a BMC: "start" on a running domain (or "destroy" on a stopped one) is an error in virsh.
      if ((await this.getPowerState(node)) === want) return;
      try {
        await sshRun(info, argv, this.opts);
      } catch (e) {
        throw new PowerStateFailure(`Failed to change power state of node ${node.uuid} to ${want}: ${(e as Error).message}`, e);
      }
      const r = await waitForPowerState(() => this.getPowerState(node), want, timeoutMs, this.opts.pollIntervalS * 1000);
      if (!r.reached) throw new PowerStateFailure(`Node ${node.uuid} (${info.domain}) did not reach "${want}" (still "${r.last}")`);
    };
    log.info({ node: node.uuid, domain: info.domain, host: info.address, target }, 'ssh power');
    switch (target) {
      case 'power on':
        return change(cli.start(info), 'power on');
      case 'power off':
        return change(cli.stop(info), 'power off');
      case 'soft power off':
        return change(cli.shutdown(info), 'power off');
      case 'rebooting':
      case 'soft rebooting':
        // Off then on, both confirmed: a new boot order only takes effect on a fresh start of the domain.
        await change(target === 'rebooting' ? cli.stop(info) : cli.shutdown(info), 'power off');
        return change(cli.start(info), 'power on');
      default:
        throw new InvalidParameterValue(`Unsupported power target ${String(target)}`);
    }
  }
}

export class SshManagement implements ManagementInterface {
  readonly name = 'ssh';
  readonly properties = SSH_PROPERTIES;
  readonly opts: SshVirtOptions;
  constructor(opts: Partial<SshVirtOptions> = {}) {
    this.opts = { ...DEFAULT_SSH_OPTIONS, ...opts };
  }

  validate(node: DriverNode): void {
    parseSshInfo(node);
  }

  getSupportedBootDevices(): BootDevice[] {
    return ['pxe', 'disk', 'cdrom'];
  }

  async setBootDevice(node: DriverNode, device: BootDevice, _persistent: boolean): Promise<void> {
    if (device !== 'pxe' && device !== 'disk' && device !== 'cdrom') {
      throw new InvalidParameterValue(`Invalid boot device ${String(device)} specified; the ssh driver supports pxe, disk, cdrom.`);
    }
    const info = parseSshInfo(node);
    try {
      // VMs have no one-time boot override: the order is always persistent.
      await CLI[info.virtType].setBoot(info, this.opts, device);
    } catch (e) {
      throw new DriverOperationError(`Failed to set boot device of node ${node.uuid} to ${device}: ${(e as Error).message}`, e);
    }
  }

  async getBootDevice(node: DriverNode): Promise<{ boot_device: BootDevice | null; persistent: boolean | null }> {
    const info = parseSshInfo(node);
    try {
      return { boot_device: await CLI[info.virtType].getBoot(info, this.opts), persistent: true };
    } catch (e) {
      throw new DriverOperationError(`Failed to get boot device of node ${node.uuid}: ${(e as Error).message}`, e);
    }
  }
}

/** Registers the `ssh` power/management interfaces and hardware type (boot/deploy as the real types have them). */
export function registerSshVirt(reg: DriverRegistry, opts: Partial<SshVirtOptions> = {}): void {
  reg.registerInterface('power', new SshPower(opts));
  reg.registerInterface('management', new SshManagement(opts));
  reg.registerHardwareType({
    name: 'ssh',
    supported: {
      bios: ['no-bios'], boot: ['ipxe', 'fake'], console: ['no-console'], deploy: ['direct', 'fake'],
      inspect: ['no-inspect'], management: ['ssh'], network: ['noop', 'flat'], power: ['ssh'], raid: ['no-raid'],
      rescue: ['no-rescue'], storage: ['noop'], vendor: ['no-vendor'],
    },
  });
}
