/**
 * The iscsi deploy on a QEMU node (issue 20): the node PXE-boots our ramdisk, the agent exports its virtio disk with
 * tgtd (the ramdisk carries tgt), the conductor writes the whole-disk image over iSCSI with qemu-img's user-space
 * initiator and reads it back, and the VM boots the instance from its disk. The conductor reaches the portal where it
 * reaches the agent: 127.0.0.1, through a QEMU hostfwd of the portal port it sends (nothing on the host dials a
 * guest-side 10.0.2.x address). The image is GPT and smaller than the disk: the agent moves the backup header to
 * the disk's end when the target stops, as the direct deploy does.
 *
 * The node has automated_clean off (cleaning is proven in test/e2e/deploy.test.ts): one ramdisk boot, one instance
 * boot. BMTS_ISCSI_COMPARE=1 adds the same image deployed with `direct` for the time comparison (two more boots:
 * not in CI, which runs direct deploys in deploy.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { have, run } from '../../common/exec.js';
import { freePort } from '../../lab/qemu.js';
import { buildInstanceInitramfs, buildWholeDiskImage, missingImageTools, type BuiltImage } from '../../lab/instance-image.js';
import { enrollNode, imageUrl, provideNode, setUpLab, waitForSerialLine, type EnrolledNode, type Lab } from '../../scripts/demo/flow.js';
import { waitForProvisionState } from '../../scripts/demo/api.js';
import { PhaseTimer } from '../../scripts/demo/progress.js';
import { Teardown } from '../../scripts/demo/teardown.js';
import { readAt } from '../fixtures/device-bytes.js';
import { diagnosticReporter } from '../fixtures/e2e-scenarios.js';

async function missingTools(): Promise<string | undefined> {
  const missing = await missingImageTools();
  for (const t of ['qemu-system-x86_64', 'ipmi_sim', 'baremetal', 'tgtd', 'sgdisk']) if (!(await have(t))) missing.push(t);
  return missing.length ? `missing tools: ${missing.join(', ')}` : undefined;
}

/** `baremetal …` against the lab's conductor with its credentials and CA. */
async function cli(lab: Lab, args: string[]): Promise<string> {
  const a = lab.api.credentials();
  const auth = a
    ? ['--os-auth-type', 'http_basic', '--os-username', a.username, `--os-password=${a.password}`, ...(a.caFile ? ['--os-cacert', a.caFile] : [])]
    : ['--os-auth-type', 'none'];
  const r = await run('baremetal', [...auth, '--os-endpoint', lab.api.endpoint, ...args],
    { quiet: true, timeoutMs: 120_000, env: { OS_CLOUD: '' } });
  return r.stdout;
}


interface DeployTiming {
  /** Request to `active`. */
  active_s: number;
  /** Request to the instance's marker line on the serial console. */
  booted_s: number;
}

/** instance_info, `baremetal node deploy`, wait for active and the instance's marker line. */
async function deployWithCli(lab: Lab, node: EnrolledNode, img: BuiltImage, timer: PhaseTimer, label: string):
  Promise<{ serial: string; timing: DeployTiming }> {
  await lab.api.patchNode(node.uuid, { instance_info: {
    image_source: imageUrl(lab, img.path.split('/').at(-1) ?? ''),
    image_os_hash_algo: 'sha256', image_os_hash_value: img.sha256, image_disk_format: 'raw' } });
  const serialStart = node.hw.serialSize();
  const t0 = Date.now();
  timer.start(`${label} deploy to active`);
  await cli(lab, ['node', 'deploy', node.uuid]);
  const n = await waitForProvisionState(lab.api, node.uuid, { until: ['active'], failOn: ['deploy failed'], timeoutMs: 600_000 });
  timer.end(`${label} deploy to active`);
  const active = Date.now();
  assert.equal(n.last_error, null);
  timer.start(`${label} boot to instance`);
  await waitForSerialLine(node.hw, serialStart, img.markerLine, 300_000);
  timer.end(`${label} boot to instance`);
  const booted = Date.now();
  return { serial: node.hw.serialSince(serialStart).text, timing: { active_s: (active - t0) / 1000, booted_s: (booted - t0) / 1000 } };
}

test('iscsi deploy of a QEMU node: the conductor writes the disk over iSCSI, the VM boots the image from it', { timeout: 15 * 60_000 }, async (t) => {
  const why = await missingTools();
  if (why) {
    t.skip(why);
    return;
  }
  const workDir = await mkdtemp(join(tmpdir(), 'bmts-iscsi-vm-'));
  const imageDir = join(workDir, 'images');
  await mkdir(imageDir);
  const teardown = new Teardown();
  const reporter = diagnosticReporter(t);
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
  const img = await buildWholeDiskImage({ dir: imageDir, initramfs, sizeMiB: 32, label: 'gpt' });
  lab = await setUpLab({ workDir, imageDir, teardown, say: (l) => reporter.line(l), apiPort: await freePort() });
  node = await enrollNode(lab, 0, teardown, reporter, { ipmiInterface: 'ipmi-native', deployInterface: 'iscsi', automatedClean: false });
  const l = lab;
  const n = node;
  assert.ok(n.iscsiPortalPort, 'the lab forwards a portal port for the iscsi node');
  assert.equal((await l.api.getNode(n.uuid)).driver_info.iscsi_portal_port, n.iscsiPortalPort);
  await provideNode(l, n, reporter, timer);

  const iscsi = await deployWithCli(l, n, img, timer, 'iscsi');
  assert.match(iscsi.serial, new RegExp(`^${img.markerLine} variant=whole-disk`, 'm'));
  const after = await l.api.getNode(n.uuid);
  assert.equal(after.provision_state, 'active');
  assert.equal(after.deploy_interface, 'iscsi');
  assert.match(String(after.driver_internal_info.iscsi_target_iqn), new RegExp(`^iqn\\.2008-10\\.org\\.openstack:${n.uuid}\\.[0-9a-f]{8}$`));
  assert.equal('iscsi_chap_password' in after.driver_internal_info, false, 'the CHAP secret is wiped');
  // The write went through the conductor: its log has the iSCSI write (the node fetched no image).
  const clog = await run('cat', [l.conductor.logFile], { quiet: true });
  assert.match(clog.stdout, /image written over iSCSI and verified/);
  // GPT backup header: at the end of the 8 GiB disk (moved by the agent), not only where the 32 MiB image ended.
  const diskBytes = 8192 * 1024 * 1024;
  assert.equal((await readAt(n.hw.disk, diskBytes - 512, 8)).toString('latin1'), 'EFI PART', 'the backup GPT header is at the end of the disk');
  assert.equal((await readAt(n.hw.disk, 512, 8)).toString('latin1'), 'EFI PART', 'the primary GPT header is in place');
  const gpt = await run('sgdisk', ['-v', n.hw.disk], { quiet: true, okCodes: [0, 1, 2, 3, 4] });
  assert.match(gpt.stdout, /No problems found/, `sgdisk -v: ${gpt.stdout}`);
  t.diagnostic(`iscsi deploy: active in ${iscsi.timing.active_s.toFixed(1)} s, instance booted at ${iscsi.timing.booted_s.toFixed(1)} s`);

  if (process.env.BMTS_ISCSI_COMPARE === '1') {
    await cli(l, ['node', 'undeploy', n.uuid, '--wait', '300']);
    await cli(l, ['node', 'set', n.uuid, '--deploy-interface', 'direct']);
    const direct = await deployWithCli(l, n, img, timer, 'direct');
    assert.match(direct.serial, new RegExp(`^${img.markerLine} variant=whole-disk`, 'm'));
    t.diagnostic(`iscsi-vs-direct-qemu iscsi_active_s=${iscsi.timing.active_s.toFixed(1)} direct_active_s=${direct.timing.active_s.toFixed(1)} ` +
      `iscsi_booted_s=${iscsi.timing.booted_s.toFixed(1)} direct_booted_s=${direct.timing.booted_s.toFixed(1)} image_mib=${(img.sizeBytes / 1048576).toFixed(0)}`);
  }
  t.diagnostic(`phase timings:\n${timer.table()}`);
  failed = false;
});
