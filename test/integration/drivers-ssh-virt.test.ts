/**
 * The `ssh` hardware type against real services: a private sshd on 127.0.0.1 (lab/sshd.ts) in front of a real
 * libvirtd (lab/libvirt.ts, qemu:///system, a TCG domain with no disk or NIC), driven through the conductor's API
 * by the real `baremetal` CLI; the VBoxManage virt type against a stand-in script with VBoxManage's output format
 * (VirtualBox is not packaged here), reached through the same sshd. Host keys: unknown refused, first-use pinning
 * only when enabled; a refused key and a shell-injecting domain name end in clear errors.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { have, run } from '../../common/exec.js';
import { SshManagement, SshPower } from '../../conductor/drivers/ssh-virt.js';
import type { DriverNode } from '../../conductor/drivers/types.js';
import { startLibvirt, type Libvirt } from '../../lab/libvirt.js';
import { ensureTestUser, startSshd, type Sshd } from '../../lab/sshd.js';
import { haveBaremetalCli, startTestConductor, type TestConductor } from '../fixtures/conductor.js';

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (libvirtd qemu:///system, sshd)';
  for (const p of ['libvirtd', 'virtlogd', 'virsh', '/usr/sbin/sshd', 'ssh', 'ssh-keygen']) if (!(await have(p))) return `${p} missing`;
  if (!(await haveBaremetalCli())) return 'the baremetal CLI (python3-ironicclient) is not installed';
  return undefined;
}
const reason = await skipReason();

// VBoxManage's machine-readable format, state kept in a file next to the script.
const USER = 'bmts-virt';

const VBOX_STANDIN = `#!/bin/sh
S="$(dirname "$0")/state"; B="$(dirname "$0")/boot1"
[ -f "$S" ] || echo poweroff > "$S"; [ -f "$B" ] || echo net > "$B"
case "$1" in
  showvminfo) [ "$2" = vm1 ] || { echo "VBoxManage: error: Could not find a registered machine named '$2'" >&2; exit 1; }
    echo 'name="vm1"'; echo "VMState=\\"$(cat "$S")\\""; echo "boot1=\\"$(cat "$B")\\""; echo 'boot2="disk"' ;;
  startvm) echo running > "$S"; echo "Waiting for VM \\"$2\\" to power on..." ;;
  controlvm) case "$3" in poweroff|acpipowerbutton) echo poweroff > "$S" ;; esac ;;
  modifyvm) [ "$3" = --boot1 ] && echo "$4" > "$B" ;;
  *) echo "unknown $1" >&2; exit 2 ;;
esac
`;

describe('ssh hardware type: libvirt and VBoxManage over a real sshd', { skip: reason ?? false }, () => {
  let dir: string;
  let sshd: Sshd;
  let libvirt: Libvirt;
  let conductor: TestConductor;
  let knownHosts: string;
  const domain = `bmts-ssh-${process.pid}`;
  let uuid: string;

  const cli = async (args: string[]): Promise<string> => {
    const r = await conductor.cli(args, { timeoutMs: 120_000 });
    assert.equal(r.exitCode, 0, `baremetal ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  /** Power changes are asynchronous in the API (202): wait until the conductor finished this one. */
  const settled = async (want: string): Promise<void> => {
    const deadline = Date.now() + 90_000;
    for (;;) {
      const { body } = await conductor.api('GET', `/v1/nodes/${uuid}`);
      const n = body as { power_state: string | null; target_power_state: string | null; last_error: string | null };
      if (n.target_power_state === null && n.power_state === want) return;
      if (n.target_power_state === null && n.last_error) assert.fail(`power change failed: ${n.last_error}`);
      if (Date.now() > deadline) assert.fail(`node did not reach ${want}: ${JSON.stringify(n)}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  };
  const driverNode = (info: Record<string, unknown>): DriverNode => ({
    uuid: 'direct', driver: 'ssh', driver_info: info, instance_info: {}, driver_internal_info: {}, properties: {}, ports: [],
  });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bmts-sshvirt-'));
    await chmod(dir, 0o755);
    const bin = join(dir, 'bin');
    await mkdir(bin);
    await writeFile(join(bin, 'VBoxManage'), VBOX_STANDIN, { mode: 0o755 });
    // Least privilege: the driver logs in as a plain user in libvirt's socket group, not as root.
    await ensureTestUser(USER, USER);
    await run('chown', [USER, bin]); // the VBoxManage stand-in keeps its state there
    libvirt = await startLibvirt({ socketGroup: USER });
    await libvirt.defineDomain(domain);
    sshd = await startSshd({ setEnv: { PATH: `${bin}:/usr/sbin:/usr/bin:/sbin:/bin` } });
    knownHosts = join(dir, 'known_hosts');
    await writeFile(knownHosts, `${sshd.knownHostsLine}\n`);
    conductor = await startTestConductor({
      config: {
        enabled_hardware_types: ['fake-hardware', 'ssh'],
        ssh: { known_hosts_file: knownHosts, trust_on_first_use: false, command_timeout: 30 },
        periodic: { sync_power_state_interval: 0 },
      },
    });
  });

  after(async () => {
    await conductor?.close();
    await sshd?.stop();
    await libvirt?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('enrolled with the baremetal CLI, the node powers its libvirt domain on and off', async () => {
    const out = JSON.parse(await cli(['node', 'create', '--driver', 'ssh', '--boot-interface', 'fake', '--deploy-interface', 'fake',
      '--driver-info', 'ssh_address=127.0.0.1', '--driver-info', `ssh_port=${sshd.port}`, '--driver-info', `ssh_username=${USER}`,
      '--driver-info', `ssh_key_filename=${sshd.clientKey}`, '--driver-info', `ssh_domain=${domain}`, '-f', 'json'])) as { uuid: string };
    uuid = out.uuid;
    const v = JSON.parse(await cli(['node', 'validate', uuid, '-f', 'json'])) as { Interface: string; Result: boolean }[];
    assert.equal(v.find((x) => x.Interface === 'power')?.Result, true, JSON.stringify(v));
    assert.equal(v.find((x) => x.Interface === 'management')?.Result, true, JSON.stringify(v));
    await cli(['node', 'power', 'on', uuid]);
    await settled('power on');
    assert.equal((await libvirt.virsh(['domstate', domain])).trim(), 'running');
    await cli(['node', 'power', 'off', uuid]);
    await settled('power off');
    assert.equal((await libvirt.virsh(['domstate', domain])).trim(), 'shut off');
  });

  test('the boot device is the first <boot> of the domain XML', async () => {
    await cli(['node', 'boot', 'device', 'set', uuid, 'disk', '--persistent']);
    const xml = await libvirt.virsh(['dumpxml', '--inactive', domain]);
    assert.deepEqual([...xml.matchAll(/<boot dev='([a-z]+)'\/>/g)].map((m) => m[1]), ['hd', 'network']);
    const dev = JSON.parse(await cli(['node', 'boot', 'device', 'show', uuid, '-f', 'json'])) as { boot_device: string };
    assert.equal(dev.boot_device, 'disk');
    await cli(['node', 'boot', 'device', 'set', uuid, 'pxe']);
    assert.match(await libvirt.virsh(['dumpxml', '--inactive', domain]), /<os>[\s\S]*?<boot dev='network'\/>\s*<boot dev='hd'\/>/);
  });

  test('an unknown host key is refused; first-use pinning records it only when enabled', async () => {
    const info = { ssh_address: '127.0.0.1', ssh_port: sshd.port, ssh_username: USER, ssh_key_filename: sshd.clientKey, ssh_domain: domain };
    const empty = join(dir, 'kh-empty', 'known_hosts');
    const strict = new SshPower({ knownHostsFile: empty, trustOnFirstUse: false });
    await assert.rejects(strict.getPowerState(driverNode(info)), /host key is not trusted/);
    const tofu = new SshPower({ knownHostsFile: empty, trustOnFirstUse: true });
    assert.equal(await tofu.getPowerState(driverNode(info)), 'power off');
    assert.match(await readFile(empty, 'utf8'), /ssh-ed25519/);
    // Pinned now: the strict client accepts the same host.
    assert.equal(await strict.getPowerState(driverNode(info)), 'power off');
  });

  test('a refused key and a shell-injecting domain name are clear errors, nothing runs', async () => {
    const other = join(dir, 'other_key');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    const p = new SshPower({ knownHostsFile: knownHosts });
    const info = { ssh_address: '127.0.0.1', ssh_port: sshd.port, ssh_username: USER, ssh_key_filename: other, ssh_domain: domain };
    await assert.rejects(p.getPowerState(driverNode(info)), /permission denied/);
    const marker = join(dir, 'pwned');
    const evil = { ...info, ssh_key_filename: sshd.clientKey, ssh_domain: `x'; touch ${marker}; echo '` };
    await assert.rejects(p.getPowerState(driverNode(evil)), /failed to get power state/i);
    assert.equal(existsSync(marker), false, 'the domain name was not run by the remote shell');
  });

  test('the vbox virt type drives VBoxManage (stand-in) with key contents instead of a key file', async () => {
    const info = { ssh_address: '127.0.0.1', ssh_port: sshd.port, ssh_username: USER, ssh_virt_type: 'vbox',
      ssh_key_contents: await readFile(sshd.clientKey, 'utf8'), ssh_domain: 'vm1' };
    const opts = { knownHostsFile: knownHosts, pollIntervalS: 0.2 };
    const power = new SshPower(opts);
    const mgmt = new SshManagement(opts);
    assert.equal(await power.getPowerState(driverNode(info)), 'power off');
    await power.setPowerState(driverNode(info), 'power on');
    assert.equal((await readFile(join(dir, 'bin', 'state'), 'utf8')).trim(), 'running');
    await mgmt.setBootDevice(driverNode(info), 'disk', true);
    assert.deepEqual(await mgmt.getBootDevice(driverNode(info)), { boot_device: 'disk', persistent: true });
    await power.setPowerState(driverNode(info), 'rebooting');
    assert.equal(await power.getPowerState(driverNode(info)), 'power on');
    await power.setPowerState(driverNode(info), 'power off');
    assert.equal((await readFile(join(dir, 'bin', 'state'), 'utf8')).trim(), 'poweroff');
    await assert.rejects(power.getPowerState(driverNode({ ...info, ssh_domain: 'nope' })), /Could not find a registered machine/);
  });
});
