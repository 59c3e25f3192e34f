/**
 * `npm run demo [-- --keep] [--api-port N] [--ipmi ipmitool|ipmi-native] [--user-net] [--nodes N [--qemu [--memory-mib M]]]`:
 * the whole mission in one run, on embedded defaults.
 * A conductor on 127.0.0.1, a QEMU "bare-metal" node behind an ipmi_sim BMC, enrolled (ipmi / ipxe / direct),
 * manage → provide (automated cleaning through the agent) → deploy a whole-disk image built here, until the VM
 * boots from its own disk and prints its marker; then per-phase timings and a full teardown.
 * `--keep` leaves conductor + node up (until Ctrl-C) for the `baremetal` CLI. The node is powered through the in-process
 * RMCP+ client (conductor/drivers/ipmi-native.ts); `--ipmi ipmitool` uses ipmitool instead, as Ironic does.
 * `--nodes N` (N > 1): a fleet of N virtual nodes instead (scripts/demo/fleet.ts), deployed at once with fast-track.
 * `--nodes N --qemu` (2 <= N <= 8): N QEMU nodes instead, each behind its own ipmi_sim BMC (scripts/demo/qemu-fleet.ts),
 * cleaned and deployed all at once through the conductor's image cache, until every VM boots its instance; real
 * boots, so slow under TCG (`--memory-mib`, default 512, is each VM's memory). Per-node and fleet timings at the end.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { have } from '../common/exec.js';
import { setLogLevel } from '../common/logger.js';
import { buildWholeDiskImage, missingImageTools } from '../lab/instance-image.js';
import type { NodeJson } from './demo/api.js';
import { DEMO_USAGE, parseDemoArgs, type DemoArgs } from './demo/args.js';
import { ComponentMissing } from './demo/components.js';
import { cliCommand, deployNode, enrollNode, provideNode, rawImageInstanceInfo, setUpLab, type EnrolledNode, type Lab } from './demo/flow.js';
import { runFleetDemo } from './demo/fleet.js';
import { runQemuFleetDemo } from './demo/qemu-fleet.js';
import { createReporter, PhaseTimer } from './demo/progress.js';
import { pruneWorkDir, Teardown } from './demo/teardown.js';

function parseArgs(argv: string[]): DemoArgs {
  const r = parseDemoArgs(argv);
  if (r.ok) return r.args;
  if (r.help) {
    console.log(DEMO_USAGE);
    process.exit(0);
  }
  console.error(`${r.error}\n${DEMO_USAGE}`);
  process.exit(2);
}

async function prerequisites(): Promise<void> {
  const missing = await missingImageTools();
  for (const t of ['qemu-system-x86_64', 'ipmi_sim', 'ipmitool']) if (!(await have(t))) missing.push(t);
  if (missing.length) throw new Error(`missing on this machine: ${missing.join(', ')} (run npm run setup)`);
}

function cliHints(lab: Lab, node: EnrolledNode): string {
  const b = cliCommand(lab);
  return [
    'The conductor and the node stay up until you press Ctrl-C. Try (or `source ' +
      `${join(lab.workDir, 'conductor-data', 'openrc')}\` and plain \`baremetal node list\`):`,
    `  ${b} node list`,
    `  ${b} node show ${node.name}`,
    `  ${b} port list --node ${node.uuid}`,
    `  ${b} node validate ${node.name}`,
    `  ${b} node power off ${node.name}; ${b} node power on ${node.name}`,
    `  ${b} node undeploy ${node.name} --wait 600    # cleaning wipes the disk again`,
    `  tail -f ${node.hw.serialLog}    # the node's serial console`,
    `  tail -f ${lab.conductor.logFile}    # conductor log`,
  ].join('\n');
}


async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  // Our own modules log JSON to stderr; the demo's output is the progress lines (the conductor logs to a file).
  setLogLevel(process.env.LOG_LEVEL === 'debug' ? 'debug' : 'warn');
  const reporter = createReporter();
  const say = (l: string): void => reporter.line(l);
  if (args.nodes > 1 && args.qemu) {
    await prerequisites();
    return runQemuFleetDemo({ ...args, say: (l) => console.log(l) });
  }
  if (args.nodes > 1) {
    return runFleetDemo({ nodes: args.nodes, keep: args.keep, apiPort: args.apiPort, say: (l) => console.log(l) });
  }
  const timer = new PhaseTimer();
  const teardown = new Teardown();
  const offSignals = teardown.onSignals(say);
  const workDir = await mkdtemp(join(tmpdir(), 'bmts-demo-'));
  const imageDir = join(workDir, 'images');
  await mkdir(imageDir);
  let phase = 'checking prerequisites';
  let lab: Lab | undefined;
  let node: EnrolledNode | undefined;
  let ok = false;
  // Registered first, so it runs last: after the VM, BMC and conductor are gone.
  teardown.add('work dir', () => (ok ? rm(workDir, { recursive: true, force: true }) : pruneWorkDir(workDir)));
  try {
    await prerequisites();
    phase = 'building the instance image';
    timer.start('setup (instance image, ramdisk, conductor)');
    const image = await buildWholeDiskImage({ dir: imageDir, sizeMiB: 32 });
    say(`instance image: ${image.path} (${image.sizeBytes / 2 ** 20} MiB raw, MBR + FAT + syslinux, sha256 ${image.sha256.slice(0, 12)}...)`);
    phase = 'finding the deploy ramdisk and starting the conductor';
    lab = await setUpLab({ workDir, imageDir, teardown, say, network: args.userNet ? 'user' : 'rack',
      ...(args.apiPort ? { apiPort: args.apiPort } : {}) });
    timer.end('setup (instance image, ramdisk, conductor)');
    say(`the baremetal CLI for this conductor: ${cliCommand(lab)} node list`);
    timer.start('enroll to instance booted');
    phase = 'enrolling the node (create, port, validate, manage)';
    node = await enrollNode(lab, 0, teardown, reporter, { ipmiInterface: args.ipmi });
    phase = 'provide (automated cleaning through the agent)';
    await provideNode(lab, node, reporter, timer);
    phase = 'deploy';
    await deployNode(
      lab,
      node,
      {
        instanceInfo: rawImageInstanceInfo(lab, 'whole-disk.img', image),
        imageBytes: image.sizeBytes,
        markerLine: image.markerLine,
      },
      reporter,
      timer,
    );
    timer.end('enroll to instance booted');
    ok = true;
    reporter.close();
    console.log(`\nThe node booted its new OS from its own disk. Per-phase timings (TCG, no KVM):\n${timer.table()}`);
    console.log(`demo ${timer.figures()}`);
    if (args.keep) {
      console.log(`\n${cliHints(lab, node)}`);
      await new Promise<never>(() => undefined); // the SIGINT handler tears down and exits
    }
    return 0;
  } catch (e) {
    reporter.close();
    const err = e as Error;
    console.error(`\nFAILED while ${phase}: ${err.message}`);
    if (e instanceof ComponentMissing) {
      console.error('This part of baremetal-ts has not landed yet; the demo cannot run end to end without it.');
    }
    if (lab && node) {
      // Reporting a failure: a conductor that is down too just means less detail in the report.
      const n: NodeJson | undefined = await lab.api.getNode(node.uuid).catch(() => undefined);
      if (n) console.error(`node ${node.name}: provision_state=${n.provision_state} power_state=${n.power_state} last_error: ${n.last_error ?? 'none'}`);
    }
    if (node) console.error(`VM serial log: ${node.hw.serialLog}`);
    if (lab) console.error(`conductor log: ${lab.conductor.logFile}`);
    if (timer.has('setup (instance image, ramdisk, conductor)')) console.error(`timings so far:\n${timer.table()}`);
    return 1;
  } finally {
    const failed = await teardown.run();
    for (const f of failed) console.error(`teardown: ${f}`);
    offSignals();
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
