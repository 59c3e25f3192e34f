/**
 * Boot-to-lookup over the lab rack's provisioning network (lab/netns.ts): the VM's iPXE ROM gets its lease and the
 * boot script URL from a dnsmasq run by the conductor's provider (conductor/dhcp/), then kernel and initramfs over
 * plain HTTP from the bridge address (a loopback file server exposed through the rack's forwarder), and the agent
 * looks up at a conductor stub. Used by `npm run bench -- ramdisk` (the default network when namespaces work).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, stat, truncate, writeFile, link, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DnsmasqDhcp } from '../../conductor/dhcp/dnsmasq.js';
import { bootOptionsFor } from '../../conductor/dhcp/options.js';
import { createRack } from '../../lab/netns.js';
import { startVm } from '../../lab/qemu.js';
import { startImageServer } from '../../scripts/demo/lab.js';
import { startConductorStub } from '../fixtures/conductor-stub.js';
import { agentStartup, guestClock, printTimeline, watchBoot } from './support/boot-timeline.js';

/**
 * CPU seconds a process has used (utime + stime from /proc/PID/stat). QEMU's CPU time to the lookup is the work
 * the emulated boot took: unlike wall time it barely moves when other jobs load the host (a starved vCPU thread
 * waits without burning CPU), so it compares changes on a busy machine. `ip netns exec` execs QEMU: same pid.
 */
function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the command: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

export interface RackBootOptions {
  /** Virtual CPUs (multi-threaded TCG: one host thread each). */
  smp?: number;
  /** Extra kernel command-line words. */
  append?: string[];
  /** A virtio-rng device (lab/qemu.ts default: on); `--no-rng` measures without it. */
  rng?: boolean;
}

export async function bootOverRack(files: { kernel: string; initramfs: string }, o: RackBootOptions = {}): Promise<{ lookupS: number; heartbeatS: number | null; qemuCpuS: number | null }> {
  const dir = await mkdtemp(join(tmpdir(), 'bmts-bench-rack-'));
  const cleanups: Array<() => Promise<void>> = [];
  let ok = false;
  try {
    const rack = await createRack({ dir, taps: 1, testRun: process.env.BMTS_TEST_RUN });
    cleanups.push(() => rack.destroy());
    const www = join(dir, 'www');
    await import('node:fs/promises').then((f) => f.mkdir(www));
    for (const [src, name] of [[files.kernel, 'vmlinuz'], [files.initramfs, 'initramfs']] as const) {
      await link(src, join(www, name)).catch(() => copyFile(src, join(www, name)));
    }
    const http = await startImageServer(www);
    cleanups.push(() => http.close());
    const stub = await startConductorStub();
    cleanups.push(() => stub.close());
    await rack.exposeToNodes([http.port, stub.port]);
    const mac = '52:54:00:b3:7a:21';
    const dhcpDir = join(dir, 'dhcp');
    const dhcp = new DnsmasqDhcp({ dir: dhcpDir, interface: rack.bridge, range: rack.dhcpRange, manage: true, namespace: rack.ns, user: 'root',
      pingCheck: false });
    await dhcp.start();
    cleanups.push(() => dhcp.close());
    const agentPort = await rack.reachNode(mac, 9999, join(dhcpDir, 'dnsmasq.leases'));
    const base = `http://${rack.address}:${http.port}`;
    await writeFile(join(www, 'boot.ipxe'), `#!ipxe
kernel ${base}/vmlinuz console=ttyS0 BOOTIF=01-\${mac:hexhyp} ipa-api-url=http://${rack.address}:${stub.port} ipa-advertise-host=127.0.0.1 ipa-advertise-port=${agentPort} ipa-enable-auto-tls=0 panic=1 ${(o.append ?? []).join(' ')} initrd=initramfs
initrd ${base}/initramfs
boot
`);
    const node = { uuid: 'bench-rack', driver: 'ipmi', driver_info: {}, instance_info: {}, driver_internal_info: {}, properties: {},
      ports: [{ address: mac, pxe_enabled: true }] };
    await dhcp.updateDhcpOpts(node, bootOptionsFor({ bootInterface: 'ipxe', bootMode: 'bios', tftpServer: rack.address, httpUrl: base, ipxeTag: true }));
    const disk = join(dir, 'disk.img');
    await writeFile(disk, '');
    await truncate(disk, 64 * 2 ** 20);
    const startedAt = Date.now();
    const vm = await startVm({ dir, name: 'rack', boot: 'network', tap: rack.taps[0] as string, mac, memoryMiB: 512, smp: o.smp ?? 1, disks: [disk],
      execPrefix: rack.execPrefix(), noReboot: true, rng: o.rng ?? true });
    cleanups.push(() => vm.stop());
    const sizes = { vmlinuz: (await stat(files.kernel)).size, initramfs: (await stat(files.initramfs)).size };
    const timeline = watchBoot({ serialLog: vm.serialLog, t0: startedAt, sent: http.sent, sizes, dnsmasqLog: join(dhcpDir, 'dnsmasq.log') });
    cleanups.push(async () => { timeline.stop(); });
    const deadline = startedAt + 300_000;
    while (stub.lookups.length === 0) {
      if (!vm.running()) throw new Error(`QEMU exited before the lookup (serial log: ${vm.serialLog})`);
      if (Date.now() > deadline) throw new Error(`no lookup within 300 s (serial log: ${vm.serialLog})`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const lookupS = (Date.now() - startedAt) / 1000;
    const qemuCpuS = vm.pid ? cpuSeconds(vm.pid) : null;
    timeline.mark('conductor: first lookup request');
    let heartbeatS: number | null = null;
    const hbDeadline = Date.now() + 60_000;
    while (Date.now() < hbDeadline && vm.running()) {
      const hb = stub.heartbeats[0];
      if (hb) { heartbeatS = (hb.at - startedAt) / 1000; break; }
      await new Promise((r) => setTimeout(r, 50));
    }
    timeline.mark('conductor: first heartbeat');
    printTimeline(timeline.stop(), guestClock(vm.serialLog));
    const agentSplit = agentStartup(vm.serialLog);
    if (agentSplit) console.log(agentSplit);
    // BMTS_BENCH_SERIAL=FILE keeps the console of the run for a closer look.
    if (process.env.BMTS_BENCH_SERIAL) {
      await copyFile(vm.serialLog, process.env.BMTS_BENCH_SERIAL);
      await copyFile(join(dhcpDir, 'dnsmasq.log'), `${process.env.BMTS_BENCH_SERIAL}.dnsmasq`).catch(() => undefined);
    }
    ok = true;
    return { lookupS, heartbeatS, qemuCpuS };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    if (ok) await rm(dir, { recursive: true, force: true });
    else console.error(`kept for inspection: ${dir}`);
  }
}
