/**
 * `npm run bench -- ramdisk [--runs N] [--net rack|direct] [--smp N] [--append 'KERNEL ARGS'] [--no-rng]`: the deploy ramdisk's size (compressed initramfs, kernel)
 * and the time from QEMU start to the first lookup request reaching the conductor, under TCG (KVM is not usable on
 * this host: /dev/kvm is PVM-backed). `rack` (the default where network namespaces work): iPXE PXE-boots on the lab
 * rack's bridge, DHCP from dnsmasq, kernel + initramfs over HTTP (test/bench/ramdisk-rack.ts); `direct`: QEMU's
 * -kernel/-initrd on the user network. Last line: `ramdisk total_mib=… initramfs_mib=… kernel_mib=… boot_to_lookup_s=… accel=tcg`.
 */
import { loadavg } from 'node:os';
import { startConductorStub } from '../fixtures/conductor-stub.js';
import { bootRamdiskVm, ensureRamdisk } from '../fixtures/ramdisk.js';
import { rackUnavailable } from '../../lab/netns.js';
import { bootOverRack } from './ramdisk-rack.js';

async function bootOnce(files: Parameters<typeof bootRamdiskVm>[0]['files']): Promise<{ lookupS: number; heartbeatS: number | null; qemuCpuS: number | null }> {
  const stub = await startConductorStub();
  const avm = await bootRamdiskVm({ files, conductorPort: stub.port, diskMiB: 64 });
  let ok = false;
  try {
    const deadline = avm.startedAt + 300_000;
    while (stub.lookups.length === 0) {
      if (!avm.vm.running()) throw new Error(`QEMU exited before the lookup (serial log: ${avm.vm.serialLog})`);
      if (Date.now() > deadline) throw new Error(`no lookup within 300 s (serial log: ${avm.vm.serialLog})`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const lookupS = (Date.now() - avm.startedAt) / 1000;
    let heartbeatS: number | null = null;
    const hbDeadline = Date.now() + 60_000;
    while (Date.now() < hbDeadline && avm.vm.running()) {
      const hb = stub.heartbeats[0];
      if (hb) {
        heartbeatS = (hb.at - avm.startedAt) / 1000;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    ok = true;
    return { lookupS, heartbeatS, qemuCpuS: null };
  } finally {
    await avm.dispose(!ok);
    await stub.close();
  }
}

function medianOf(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

export default async function bench(args: string[]): Promise<void> {
  const runsIdx = args.indexOf('--runs');
  const runs = runsIdx >= 0 ? Math.max(1, Number(args[runsIdx + 1] ?? '1')) : 1;
  const netIdx = args.indexOf('--net');
  const noRack = await rackUnavailable();
  const net = netIdx >= 0 ? args[netIdx + 1] : noRack ? 'direct' : 'rack';
  const smpIdx = args.indexOf('--smp');
  const smp = smpIdx >= 0 ? Math.max(1, Number(args[smpIdx + 1] ?? '1')) : 1;
  const appendIdx = args.indexOf('--append');
  const append = appendIdx >= 0 ? (args[appendIdx + 1] ?? '').split(/\s+/).filter(Boolean) : [];
  if (net !== 'rack' && net !== 'direct') throw new Error(`--net rack|direct, not ${net}`);
  if (net === 'rack' && noRack) throw new Error(`--net rack: ${noRack}`);
  const t0 = Date.now();
  const built = await ensureRamdisk();
  if (!built.ok) throw new Error(built.reason);
  const m = built.manifest;
  console.log(`build (cached where unchanged): ${((Date.now() - t0) / 1000).toFixed(1)} s; agent entry ${m.agent.entry}; ${m.agent.version_output}`);
  console.log(`kernel     ${m.kernel.version}: ${m.sizes.kernel_mib} MiB`);
  console.log(`initramfs  ${m.initramfs.compression}: ${m.sizes.initramfs_mib} MiB (${(m.initramfs.uncompressed_bytes / 2 ** 20).toFixed(1)} MiB unpacked, ${m.initramfs.entries} entries)`);
  console.log(`agent exe  ${(m.agent.executable.bytes / 2 ** 20).toFixed(1)} MiB (node ${m.agent.node_version}), bundle ${(m.agent.bundle.bytes / 2 ** 20).toFixed(2)} MiB`);
  console.log(`total      ${m.sizes.total_mib} MiB (goal <= ${m.sizes.goal_mib} MiB: ${m.sizes.within_goal ? 'met' : 'NOT met'})`);
  console.log('accel: tcg (KVM here is PVM-backed and hangs stock kernels)');
  const times: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = net === 'rack' ? await bootOverRack(built, { smp, append, rng: !args.includes('--no-rng') }) : await bootOnce(built);
    times.push(r.lookupS);
    if (r.qemuCpuS !== null) cpus.push(r.qemuCpuS);
    console.log(`run ${i + 1} (${net}): QEMU start -> first lookup ${r.lookupS.toFixed(1)} s, -> first heartbeat ${r.heartbeatS === null ? 'n/a' : `${r.heartbeatS.toFixed(1)} s`}${r.qemuCpuS === null ? '' : `, QEMU CPU to the lookup ${r.qemuCpuS.toFixed(1)} s`}; load ${loadavg()[0]?.toFixed(1)}`);
  }
  const median = medianOf(times);
  // QEMU's CPU seconds to the lookup: the boot's emulation work, steadier than wall time on a loaded host.
  const cpu = cpus.length ? ` qemu_cpu_s=${medianOf(cpus).toFixed(1)}` : '';
  console.log(
    `ramdisk total_mib=${m.sizes.total_mib} initramfs_mib=${m.sizes.initramfs_mib} kernel_mib=${m.sizes.kernel_mib} boot_to_lookup_s=${median.toFixed(1)}${cpu} net=${net} smp=${smp} accel=tcg load=${loadavg()[0]?.toFixed(1)}`,
  );
}
