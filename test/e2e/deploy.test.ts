/**
 * The whole mission as a test (issue 10): a QEMU node behind ipmi_sim (driven by ipmi-native, issue 20) is enrolled at our conductor, PXE-boots
 * our ramdisk, is cleaned and deployed by our agent with a config drive, and boots its new OS from its own disk
 * (which prints the config drive). Then: undeploy (cleaning wipes the disk, so the VM no longer boots from it) and a
 * partition image with a config drive (the agent's syslinux install_bootloader path). A bad checksum ending in
 * `deploy failed` with the node powered off is proven with a real agent on a loop device in
 * test/integration/orchestration-deploy.test.ts (a VM boot there cost CI ~45 s). A missing part of the flow (a file
 * below, or a ComponentMissing from the demo's helpers) fails the test: a regression never turns into a skip. Only
 * missing host tools skip, and scripts/test.sh fails those under CI=true.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { have } from '../../common/exec.js';
import { freePort } from '../../lab/qemu.js';
import {
  buildConfigDrive,
  buildInstanceInitramfs,
  buildPartitionImage,
  buildWholeDiskImage,
  missingImageTools,
  parseConfigDriveOutput,
} from '../../lab/instance-image.js';
import { REPO_ROOT } from '../../scripts/demo/components.js';
import {
  deployNode,
  enrollNode,
  provideNode,
  rawImageInstanceInfo,
  setUpLab,
  undeployNode,
  type EnrolledNode,
  type Lab,
} from '../../scripts/demo/flow.js';
import { PhaseTimer } from '../../scripts/demo/progress.js';
import { Teardown } from '../../scripts/demo/teardown.js';
import { diagnosticReporter, scenarioChain } from '../fixtures/e2e-scenarios.js';

/** Files whose absence means a part of the flow has not landed yet. */
const REQUIRED_PARTS: Array<[string, string]> = [
  ['conductor/main.ts', 'conductor (conductor/main.ts)'],
  ['agent/main.ts', 'agent (agent/main.ts)'],
  ['ramdisk-build/build.ts', 'ramdisk builder (ramdisk-build/build.ts)'],
];

/** A part of the flow that is not there: a failure, named like the demo names it. */
function missingPart(): string | undefined {
  for (const [file, part] of REQUIRED_PARTS) if (!existsSync(join(REPO_ROOT, file))) return `component ${part} not available yet`;
  return undefined;
}

async function missingTools(): Promise<string | undefined> {
  const missing = await missingImageTools();
  for (const t of ['qemu-system-x86_64', 'ipmi_sim', 'ipmitool']) if (!(await have(t))) missing.push(t);
  return missing.length ? `missing tools: ${missing.join(', ')}` : undefined;
}

test('e2e: enroll, clean, deploy, boot from disk, undeploy, config drive, bad checksum', { timeout: 20 * 60_000 }, async (t) => {
  const missing = missingPart();
  if (missing) assert.fail(missing);
  const why = await missingTools();
  if (why) {
    t.skip(why);
    return;
  }
  const workDir = await mkdtemp(join(tmpdir(), 'bmts-e2e-'));
  const imageDir = join(workDir, 'images');
  await mkdir(imageDir);
  const teardown = new Teardown();
  const lines: string[] = [];
  const reporter = diagnosticReporter(t, lines);
  const timer = new PhaseTimer();
  let failed = true;
  let lab: Lab | undefined;
  let node: EnrolledNode | undefined;
  t.after(async () => {
    for (const f of await teardown.run()) t.diagnostic(`teardown: ${f}`);
    if (!failed) await rm(workDir, { recursive: true, force: true });
    else t.diagnostic(`kept for inspection: ${workDir} (serial: ${node?.hw.serialLog ?? 'n/a'}, conductor log: ${lab?.conductor.logFile ?? 'n/a'})`);
  });

  const initramfs = await buildInstanceInitramfs(join(imageDir, 'instance-initrd.gz'));
  const whole = await buildWholeDiskImage({ dir: imageDir, initramfs, sizeMiB: 32 });
  // A free API port: the demo's 6385 may be in use by a developer's `npm run demo -- --keep`. A ComponentMissing
  // thrown here fails the test like any other error.
  lab = await setUpLab({ workDir, imageDir, teardown, say: (l) => reporter.line(l), apiPort: await freePort() });
  // Power and boot device through the in-process RMCP+ client (issue 20); the rack e2e (test/e2e/rack.test.ts)
  // drives its node through ipmitool, so both IPMI paths deploy a real VM in CI.
  node = await enrollNode(lab, 0, teardown, reporter, { ipmiInterface: 'ipmi-native' });
  const l = lab;
  const n = node;
  const { scenario, broken } = scenarioChain(t);

  // One boot proves both the whole-disk path and the config drive (a separate config-drive deploy cost ~90 s of CI).
  await scenario('whole-disk image + config drive: provide (cleaning) then deploy; the VM boots from its disk and prints the config drive', async () => {
    await provideNode(l, n, reporter, timer);
    const cd = await buildConfigDrive({ dir: imageDir, metaData: { name: 'e2e-configdrive' } });
    const serial = await deployNode(
      l,
      n,
      { instanceInfo: rawImageInstanceInfo(l, 'whole-disk.img', whole), configdrive: cd.gzipBase64, imageBytes: whole.sizeBytes, markerLine: whole.markerLine },
      reporter,
      timer,
    );
    assert.match(serial, new RegExp(`^${whole.markerLine} variant=whole-disk`, 'm'));
    // The agent put the config drive in a partition at the end of the disk; the instance found it by label.
    assert.match(serial, /^CONFIG-DRIVE-FOUND \/dev\/vda\d+$/m);
    const meta = parseConfigDriveOutput(serial);
    assert.ok(meta, `config drive not printed by the instance (serial: ${n.hw.serialLog})`);
    assert.equal(meta.uuid, cd.metaData.uuid);
    const node2 = await l.api.getNode(n.uuid);
    assert.equal(node2.provision_state, 'active');
    assert.equal(node2.last_error, null);
    assert.equal(node2.power_interface, 'ipmi-native');
    assert.equal(node2.management_interface, 'ipmi-native');
  });

  await scenario('undeploy: cleaning wipes the disk, the VM no longer boots from it', async () => {
    const after = await undeployNode(l, n, reporter, timer);
    assert.equal(after.provision_state, 'available');
    // Boot the wiped disk behind the conductor's back: power on with boot device disk, watch it fail.
    const offset = n.hw.serialSize();
    await l.api.setBootDevice(n.uuid, 'disk');
    await l.api.power(n.uuid, 'power on');
    const deadline = Date.now() + 120_000;
    let text = '';
    while (Date.now() < deadline) {
      text = n.hw.serialSince(offset).text;
      if (/No bootable device|Boot failed/.test(text)) break;
      assert.ok(!text.includes(whole.markerLine), 'the old instance booted after cleaning');
      await sleep(500);
    }
    assert.match(text, /No bootable device|Boot failed/, `serial: ${n.hw.serialLog}`);
    await l.api.power(n.uuid, 'power off');
    await waitPower(l, n, 'power off');
  });

  // Partition images boot through the agent's install_bootloader: the test image (buildPartitionImage) is FAT with a
  // syslinux VBR and no grub-install, so the agent takes its syslinux path (MBR code + active root partition).
  await scenario('partition image + config drive: install_bootloader (syslinux), the booted OS prints the config drive', async () => {
    const part = await buildPartitionImage({ dir: imageDir, initramfs, sizeMiB: 32 });
    const cd = await buildConfigDrive({ dir: imageDir, metaData: { name: 'e2e-partition' } });
    const serial = await deployNode(
      l,
      n,
      {
        instanceInfo: rawImageInstanceInfo(l, 'partition.img', part, { image_type: 'partition', root_mb: 32, swap_mb: 0, ephemeral_mb: 0 }),
        configdrive: cd.gzipBase64,
        imageBytes: part.sizeBytes,
        markerLine: part.markerLine,
      },
      reporter,
      timer,
    );
    assert.match(serial, new RegExp(`^${part.markerLine} variant=partition`, 'm'));
    assert.match(serial, /^CONFIG-DRIVE-FOUND \/dev\/vda\d+$/m);
    const meta = parseConfigDriveOutput(serial);
    assert.ok(meta, `config drive not printed by the instance (serial: ${n.hw.serialLog})`);
    assert.equal(meta.uuid, cd.metaData.uuid);
    const node2 = await l.api.getNode(n.uuid);
    assert.equal(node2.last_error, null);
    await undeployNode(l, n, reporter, timer);
  });

  t.diagnostic(`phase timings:\n${timer.table()}`);
  t.diagnostic(`e2e ${timer.figures()}`);
  failed = broken() !== undefined;
});

async function waitPower(lab: Lab, node: EnrolledNode, want: 'power on' | 'power off'): Promise<void> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const n = await lab.api.getNode(node.uuid);
    if (n.power_state === want && !n.target_power_state) return;
    if (Date.now() > deadline) assert.fail(`node power_state ${n.power_state}, wanted ${want} (last_error ${n.last_error ?? 'none'})`);
    await sleep(1000);
  }
}
