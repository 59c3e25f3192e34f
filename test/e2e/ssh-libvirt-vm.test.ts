/**
 * The `ssh` hardware type deploying a real VM end to end (issue 20): the node is a libvirt domain, and every power
 * change and boot-device change goes from the conductor over ssh (a private sshd on 127.0.0.1, lab/sshd.ts, as a
 * plain user in libvirtd's socket group) into `virsh`. The domain sits on the lab rack (lab/netns.ts): libvirtd runs
 * inside the rack's network namespace, so the QEMU it spawns opens the rack's TAP and boots over the rack's
 * dnsmasq and iPXE exactly as test/e2e/rack.test.ts's nodes do. One deploy of a small raw whole-disk image
 * (automated cleaning off: the deploy's own ramdisk boot already proves the network path), the instance's marker
 * on the serial console, the boot order seen flipping network -> disk in `virsh dumpxml`, then power off and on
 * through the API (the instance boots from its disk again). Afterwards no domain, daemon, namespace or file is
 * left, on failure and Ctrl-C as well (the rack's destroy kills whatever still runs in the namespace).
 * Only missing host tools or a machine without namespaces skip (scripts/test.sh fails skips under CI).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { have, run } from '../../common/exec.js';
import { setLogLevel } from '../../common/logger.js';
import { buildInstanceInitramfs, buildWholeDiskImage, missingImageTools } from '../../lab/instance-image.js';
import { startLibvirt, type Libvirt } from '../../lab/libvirt.js';
import { createLibvirtNode } from '../../lab/libvirt-node.js';
import { rackUnavailable } from '../../lab/netns.js';
import { freePort } from '../../lab/qemu.js';
import { ensureTestUser, startSshd } from '../../lab/sshd.js';
import type { NodeJson } from '../../scripts/demo/api.js';
import { deployNode, rawImageInstanceInfo, setUpLab, waitForSerialLine, type FlowNode, type Lab } from '../../scripts/demo/flow.js';
import { demoMac } from '../../scripts/demo/lab.js';
import { PhaseTimer } from '../../scripts/demo/progress.js';
import { Teardown } from '../../scripts/demo/teardown.js';
import { diagnosticReporter, processesUnder, scenarioChain } from '../fixtures/e2e-scenarios.js';

/** The unprivileged log-in user on the "virtualization host" (shared with test/integration/drivers-ssh-virt.test.ts). */
const USER = 'bmts-virt';
const DEPLOY_STATES = new Set(['deploying', 'wait call-back']);

async function missing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (libvirtd qemu:///system, sshd, network namespaces)';
  const m = await missingImageTools();
  for (const t of ['qemu-system-x86_64', 'libvirtd', 'virtlogd', 'virsh', '/usr/sbin/sshd', 'ssh', 'ssh-keygen', 'dnsmasq', 'ip']) {
    if (!(await have(t))) m.push(t);
  }
  if (m.length) return `missing tools: ${m.join(', ')}`;
  return rackUnavailable();
}

/** The <boot dev=.../> order of the domain's persistent definition, as `virsh dumpxml --inactive` shows it. */
async function bootOrder(libvirt: Libvirt, domain: string): Promise<string[]> {
  const xml = await libvirt.virsh(['dumpxml', '--inactive', domain]);
  const os = /<os[\s>][\s\S]*?<\/os>/.exec(xml)?.[0] ?? '';
  return [...os.matchAll(/<boot dev='([a-z]+)'\/>/g)].map((m) => m[1] as string);
}

test('e2e ssh + libvirt: a libvirt domain on the rack, powered and boot-ordered through virsh over ssh, deploys a whole-disk image and boots it', { timeout: 15 * 60_000 }, async (t) => {
  const why = await missing();
  if (why) {
    t.skip(why);
    return;
  }
  const workDir = await mkdtemp(join(tmpdir(), 'bmts-virtdeploy-'));
  const imageDir = join(workDir, 'images');
  await mkdir(imageDir);
  const teardown = new Teardown();
  const reporter = diagnosticReporter(t);
  const timer = new PhaseTimer();
  let ok = false;
  let keep = false;
  // Runs last: the work dir goes on success and Ctrl-C; after a failure it stays for inspection.
  teardown.add('work dir', async () => {
    if (!keep) await rm(workDir, { recursive: true, force: true });
  });
  // Ctrl-C: domain, libvirtd, sshd, rack, files. The runner that piped our output may be gone by then, so logging
  // stops first (a precaution: nothing written to a closed pipe may end this process halfway through the teardown).
  const onSignal = (sig: NodeJS.Signals): void => {
    setLogLevel('silent');
    void teardown.run().then(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const offSignals = (): void => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  let lab: Lab | undefined;
  let serialLog = 'n/a';
  t.after(async () => {
    offSignals();
    keep = !ok;
    for (const f of await teardown.run()) t.diagnostic(`teardown: ${f}`);
    if (keep) t.diagnostic(`kept for inspection: ${workDir} (serial: ${serialLog}, conductor log: ${lab?.conductor.logFile ?? 'n/a'})`);
  });

  const initramfs = await buildInstanceInitramfs(join(imageDir, 'instance-initrd.gz'));
  const whole = await buildWholeDiskImage({ dir: imageDir, initramfs, sizeMiB: 32 });

  // The "virtualization host": sshd on loopback; the driver logs in as a plain user allowed on libvirtd's socket.
  await ensureTestUser(USER, USER);
  const sshd = await startSshd();
  teardown.add('sshd', () => sshd.stop());
  const knownHosts = join(workDir, 'known_hosts');
  await writeFile(knownHosts, `${sshd.knownHostsLine}\n`);

  lab = await setUpLab({
    workDir, imageDir, teardown, say: (l) => reporter.line(l), apiPort: await freePort(), network: 'rack', nodes: 1,
    extraConfig: {
      enabled_hardware_types: ['fake-hardware', 'ssh'],
      ssh: { known_hosts_file: knownHosts, trust_on_first_use: false, command_timeout: 30 },
    },
  });
  const l = lab;
  const rack = l.rack;
  const tap = rack?.taps[0];
  assert.ok(rack && tap && l.leaseFile, 'rack mode builds a namespace with a TAP');
  const leaseFile = l.leaseFile;

  // libvirtd in the rack's namespace: its QEMU opens the TAP there. Registered after the rack, so it stops first.
  const libvirt = await startLibvirt({ socketGroup: USER, execPrefix: rack.execPrefix() });
  teardown.add('libvirtd (domain destroyed and undefined)', () => libvirt.stop());
  const domain = `bmts-virtdeploy-${process.pid}`;
  const mac = demoMac(0);
  const vm = await createLibvirtNode({ dir: workDir, name: domain, mac, tap, diskMiB: 8192 });
  serialLog = vm.serialLog;
  await libvirt.defineXml(domain, vm.xml);
  const agentPort = await rack.reachNode(mac, 9999, leaseFile);
  reporter.line(`node ${domain}: libvirt domain (TCG, MAC ${mac}, ${tap} on the rack bridge, 8 GiB sparse disk) ` +
    `behind sshd 127.0.0.1:${sshd.port} as ${USER}`);

  const created = await l.api.createNode({
    name: domain,
    driver: 'ssh',
    boot_interface: 'ipxe',
    deploy_interface: 'direct',
    automated_clean: false,
    driver_info: {
      ssh_address: '127.0.0.1',
      ssh_port: sshd.port,
      ssh_username: USER,
      ssh_key_filename: sshd.clientKey,
      ssh_virt_type: 'virsh',
      ssh_domain: domain,
      ssh_libvirt_uri: libvirt.uri,
      deploy_kernel: l.ramdisk.kernel,
      deploy_ramdisk: l.ramdisk.initramfs,
      // The conductor never dials the rack: the agent advertises the 127.0.0.1 port the rack forwards to it.
      kernel_append_params: `nofb nomodeset vga=normal console=ttyS0 quiet ipa-advertise-host=127.0.0.1 ipa-advertise-port=${agentPort}`,
    },
    properties: { cpu_arch: 'x86_64', cpus: 1, memory_mb: 1024, local_gb: 8, capabilities: 'boot_mode:bios' },
  });
  await l.api.createPort(created.uuid, mac);
  const node: FlowNode = { uuid: created.uuid, name: domain, hw: { agentPort, serialLog: vm.serialLog, serialSince: vm.serialSince, serialSize: vm.serialSize } };
  const { scenario, broken } = scenarioChain(t);

  const waitPower = async (want: 'power on' | 'power off'): Promise<NodeJson> => {
    const deadline = Date.now() + 90_000;
    for (;;) {
      const n = await l.api.getNode(node.uuid);
      if (n.power_state === want && !n.target_power_state) return n;
      if (Date.now() > deadline) assert.fail(`power_state ${n.power_state}, wanted ${want} (last_error ${n.last_error ?? 'none'})`);
      await sleep(500);
    }
  };
  const waitState = async (want: string): Promise<void> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const n = await l.api.getNode(node.uuid);
      if (n.provision_state === want) return;
      if (n.last_error && (n.provision_state === 'enroll' || n.provision_state === 'manageable')) assert.fail(`${n.provision_state}: ${n.last_error}`);
      if (Date.now() > deadline) assert.fail(`provision_state ${n.provision_state}, wanted ${want} (last_error ${n.last_error ?? 'none'})`);
      await sleep(500);
    }
  };
  const domstate = async (): Promise<string> => (await libvirt.virsh(['domstate', domain])).trim();

  await scenario('enroll: validated, managed (power state read through virsh over ssh), provided', async () => {
    const v = await l.api.validate(node.uuid);
    for (const k of ['power', 'management', 'boot', 'deploy']) assert.equal(v[k]?.result, true, `${k}: ${v[k]?.reason ?? 'not reported'}`);
    await l.api.provision(node.uuid, 'manage');
    await waitState('manageable');
    const n = await l.api.getNode(node.uuid);
    assert.equal(n.power_state, 'power off');
    assert.equal(await domstate(), 'shut off');
    // automated_clean is off: provide goes straight to available (the deploy below boots the ramdisk anyway).
    await l.api.provision(node.uuid, 'provide');
    await waitState('available');
  });

  // An available node has no DHCP entry, so the domain powered on here finds no boot script and no disk: it stays
  // running in its firmware, which leaves the power-off to `virsh destroy` (the instance later powers itself off).
  await scenario('power on and off through the API: virsh start and destroy over ssh', async () => {
    await l.api.power(node.uuid, 'power on');
    await waitPower('power on');
    assert.equal(await domstate(), 'running');
    await l.api.power(node.uuid, 'power off');
    await waitPower('power off');
    assert.equal(await domstate(), 'shut off');
  });

  await scenario('deploy: the domain network-boots the ramdisk over the rack, the agent writes the image, the domain boots it from disk', async () => {
    // Sample the domain's boot order and state all along: network first while the ramdisk boots, disk after.
    const firstBootWhileDeploying = new Set<string>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const n = await l.api.getNode(node.uuid).catch(() => undefined);
        if (n && DEPLOY_STATES.has(n.provision_state) && (await domstate().catch(() => '')) === 'running') {
          const first = (await bootOrder(libvirt, domain).catch(() => []))[0];
          if (first) firstBootWhileDeploying.add(first);
        }
        await sleep(1000);
      }
    })();
    let serial: string;
    try {
      serial = await deployNode(l, node, {
        instanceInfo: rawImageInstanceInfo(l, 'whole-disk.img', whole), imageBytes: whole.sizeBytes, markerLine: whole.markerLine,
      }, reporter, timer);
    } finally {
      sampling = false;
      await sampler;
    }
    assert.match(serial, new RegExp(`^${whole.markerLine} variant=whole-disk `, 'm'));
    const all = vm.readSerial();
    assert.match(all, /iPXE/, `the ramdisk boot came through the NIC's iPXE (serial: ${vm.serialLog})`);
    assert.match(all, /boot\.ipxe/, 'iPXE fetched the boot script over HTTP at the rack address');
    assert.ok(firstBootWhileDeploying.has('network'), `the domain booted the ramdisk with network first (seen: ${[...firstBootWhileDeploying].join(',') || 'none'})`);
    assert.deepEqual(await bootOrder(libvirt, domain), ['hd', 'network'], 'the deploy left the disk first in the domain XML');
    const n = await l.api.getNode(node.uuid);
    assert.equal(n.provision_state, 'active');
    assert.equal(n.last_error, null);
    assert.equal(n.power_interface, 'ssh');
    assert.equal(n.management_interface, 'ssh');
    // DHCP served the domain's MAC on the rack (dnsmasq in the namespace, conductor-managed).
    assert.match(readFileSync(leaseFile, 'utf8'), new RegExp(mac, 'i'));
  });

  await scenario('the instance powers itself off, the power sync reads it through virsh; powered on, it boots from its disk again', async () => {
    // The test instance ends with `poweroff -f`; the conductor's periodic sync (every 10 s) records what virsh says.
    await waitPower('power off');
    assert.equal(await domstate(), 'shut off');
    const offset = vm.serialSize();
    await l.api.power(node.uuid, 'power on');
    await waitPower('power on');
    assert.equal(await domstate(), 'running');
    const line = await waitForSerialLine(node.hw, offset, whole.markerLine, 180_000);
    assert.match(line, / variant=whole-disk /);
    assert.doesNotMatch(vm.serialSince(offset).text, /boot\.ipxe/, 'the second boot went to the disk, not the network');
  });

  t.diagnostic(`phase timings:\n${timer.table()}`);
  t.diagnostic(`e2e-ssh-libvirt ${timer.figures()}`);
  if (broken() !== undefined) return;

  // Nothing left behind: domain, libvirtd (and its QEMU), sshd, namespace, dnsmasq, forwarders.
  const ns = rack.ns;
  for (const f of await teardown.run()) assert.fail(`teardown: ${f}`);
  for (const f of [`/etc/libvirt/qemu/${domain}.xml`, `/run/libvirt/qemu/${domain}.pid`, `/var/log/libvirt/qemu/${domain}.log`, workDir]) {
    assert.equal(existsSync(f), false, `${f} left`);
  }
  const list = (await run('ip', ['netns', 'list'], { quiet: true })).stdout;
  assert.ok(!list.split('\n').some((x) => x.split(' ')[0] === ns), `namespace ${ns} still there`);
  await sleep(500);
  for (const d of [workDir, sshd.dir, libvirt.dir, domain]) assert.deepEqual(processesUnder(d), [], `processes of ${d} left`);
  assert.deepEqual(readdirSync(tmpdir()).filter((f) => [sshd.dir, libvirt.dir].some((d) => d.endsWith(`/${f}`))), [], 'sshd/libvirtd dirs removed');
  ok = true;
});
