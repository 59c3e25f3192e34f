/**
 * `npm run demo -- --nodes N --qemu`: the one-node demo's real hardware, N times. Each node is a QEMU VM behind
 * its own ipmi_sim BMC on its own UDP port, with its own MAC (demoMac), disk and agent port (scripts/demo/flow.ts
 * enrollNode; in the rack each gets its own TAP and DHCP entry), all on one lab conductor (HTTPS, http_basic). All N
 * are cleaned at once (provide) and deployed at once; the image goes through the conductor's image cache
 * (image_download_source=http), so the origin serves it once. Done when every VM has booted its instance from its
 * own disk and printed its marker. Prints per-node phase timings, the fleet's wall times and the origin ratio.
 * Slow under TCG: every boot is real (a core's worth of emulation per booting VM).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorMessage } from '../../common/errors.js';
import { buildWholeDiskImage } from '../../lab/instance-image.js';
import type { DemoArgs } from './args.js';
import { cliCommand, deployNode, enrollNode, provideNode, rawImageInstanceInfo, setUpLab, type EnrolledNode, type Lab } from './flow.js';
import { createReporter, PhaseTimer, type Reporter } from './progress.js';
import { pruneWorkDir, Teardown } from './teardown.js';

/** A reporter per node: its own state-change dedupe, and no image progress lines (N interleaved bars say nothing). */
function nodeReporter(): Reporter {
  const r = createReporter({ tty: false });
  return { ...r, bytes: () => undefined, endBytes: () => undefined };
}


export async function runQemuFleetDemo(o: DemoArgs & { say: (line: string) => void }): Promise<number> {
  const { say } = o;
  const t0 = Date.now();
  const lap = (): string => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  const fleet = new PhaseTimer();
  const teardown = new Teardown();
  const offSignals = teardown.onSignals(say);
  const workDir = await mkdtemp(join(tmpdir(), 'bmts-demo-qfleet-'));
  const imageDir = join(workDir, 'images');
  await mkdir(imageDir);
  let ok = false;
  teardown.add('work dir', () => (ok ? rm(workDir, { recursive: true, force: true }) : pruneWorkDir(workDir)));
  let lab: Lab | undefined;
  const nodes: EnrolledNode[] = [];
  const timers: PhaseTimer[] = [];
  let phase = 'building the instance image';
  try {
    fleet.start('setup (image, ramdisk, conductor)');
    const image = await buildWholeDiskImage({ dir: imageDir, sizeMiB: 32 });
    say(`instance image: ${image.sizeBytes / 2 ** 20} MiB raw, sha256 ${image.sha256.slice(0, 12)}... [${lap()}]`);
    phase = 'finding the deploy ramdisk and starting the conductor';
    lab = await setUpLab({ workDir, imageDir, teardown, say, network: o.userNet ? 'user' : 'rack', nodes: o.nodes,
      ...(o.apiPort ? { apiPort: o.apiPort } : {}) });
    const l = lab;
    fleet.end('setup (image, ramdisk, conductor)');
    say(`the baremetal CLI for this conductor: ${cliCommand(l)} node list`);

    phase = `enrolling ${o.nodes} QEMU nodes (a VM and an ipmi_sim BMC each; create, port, validate, manage)`;
    fleet.start('enroll + manage (all)');
    const reporters = Array.from({ length: o.nodes }, () => nodeReporter());
    // One at a time: each BMC, MAC and (in the rack) TAP/agent forward is set up before the next; it takes seconds.
    for (let i = 0; i < o.nodes; i++) {
      nodes.push(await enrollNode(l, i, teardown, reporters[i]!, { ipmiInterface: o.ipmi, memoryMiB: o.memoryMiB }));
      timers.push(new PhaseTimer());
    }
    fleet.end('enroll + manage (all)');
    say(`${o.nodes} nodes manageable: ${nodes.map((n) => `${n.name} (MAC ${n.hw.mac}, BMC udp/${n.hw.bmc.port})`).join(', ')} [${lap()}]`);

    phase = `provide: cleaning ${o.nodes} nodes at once (each VM boots the ramdisk)`;
    fleet.start('clean all (provide -> last available)');
    await Promise.all(nodes.map((n, i) => provideNode(l, n, reporters[i]!, timers[i]!)));
    fleet.end('clean all (provide -> last available)');
    say(`all ${o.nodes} nodes available [${lap()}]`);

    phase = `deploy: ${o.nodes} nodes at once, until every instance has booted`;
    fleet.start('deploy all (deploy -> last instance booted)');
    const deployed = await Promise.allSettled(nodes.map((n, i) => deployNode(l, n, {
      instanceInfo: rawImageInstanceInfo(l, 'whole-disk.img', image),
      imageBytes: image.sizeBytes,
      markerLine: image.markerLine,
    }, reporters[i]!, timers[i]!)));
    const failed = deployed.flatMap((r, i) => (r.status === 'rejected' ? [`${nodes[i]!.name}: ${errorMessage(r.reason)}`] : []));
    if (failed.length) throw new Error(failed.join('; '));
    fleet.end('deploy all (deploy -> last instance booted)');
    const originBytes = l.images.sent.get('whole-disk.img') ?? 0;
    const ratio = originBytes / image.sizeBytes;
    say(`all ${o.nodes} instances booted from their own disks [${lap()}]; the image server sent ${(originBytes / 2 ** 20).toFixed(0)} MiB ` +
      `for a ${image.sizeBytes / 2 ** 20} MiB image (origin_ratio ${ratio.toFixed(2)}: the conductor's cache fetched it for all)`);
    ok = true;

    const names = [...new Set(timers.flatMap((t) => t.names()))];
    const w = Math.max(...names.map((n) => n.length), 5);
    console.log(`\nPer node (TCG, no KVM, ${o.memoryMiB} MiB each, ${o.nodes} VMs sharing this machine's cores):`);
    console.log(`  ${''.padEnd(w)}  ${nodes.map((n) => n.name.padStart(12)).join('')}`);
    for (const p of names) {
      console.log(`  ${p.padEnd(w)}  ${timers.map((t) => `${t.seconds(p)?.toFixed(1) ?? 'na'} s`.padStart(12)).join('')}`);
    }
    console.log(`Fleet:\n${fleet.table()}`);
    const f = (p: string): string => fleet.seconds(p)?.toFixed(1) ?? 'na';
    console.log(`demo-qemu-fleet nodes=${o.nodes} memory_mib=${o.memoryMiB} setup_s=${f('setup (image, ramdisk, conductor)')} ` +
      `enroll_s=${f('enroll + manage (all)')} clean_all_s=${f('clean all (provide -> last available)')} ` +
      `deploy_all_s=${f('deploy all (deploy -> last instance booted)')} origin_ratio=${ratio.toFixed(2)} total_s=${((Date.now() - t0) / 1000).toFixed(1)}`);
    if (o.keep) {
      console.log(`\nThe conductor and the ${o.nodes} nodes stay up until you press Ctrl-C. Try: ${cliCommand(l)} node list`);
      await new Promise<never>(() => undefined); // the SIGINT handler tears down and exits
    }
    return 0;
  } catch (e) {
    console.error(`\nFAILED while ${phase}: ${errorMessage(e)}`);
    for (const n of nodes) {
      // Reporting a failure: a conductor that is down too just means less detail in the report.
      const j = await lab?.api.getNode(n.uuid).catch(() => undefined);
      if (j) console.error(`node ${n.name}: provision_state=${j.provision_state} power_state=${j.power_state} last_error: ${j.last_error ?? 'none'}`);
      console.error(`  serial log: ${n.hw.serialLog}`);
    }
    if (lab) console.error(`conductor log: ${lab.conductor.logFile}`);
    console.error(`fleet timings so far:\n${fleet.table()}`);
    return 1;
  } finally {
    const failed = await teardown.run();
    for (const f of failed) console.error(`teardown: ${f}`);
    offSignals();
  }
}

