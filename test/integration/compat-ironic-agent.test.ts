/**
 * Compatibility: the real Ironic 21.4 (Debian 12, one `ironic` process, sqlite, noauth, fake-hardware + direct
 * deploy) drives OUR agent, a real process on this host whose only disk is a loop device, through enrollment,
 * (optionally) automated cleaning and a full deploy to `active`. Everything is on 127.0.0.1.
 * Then the loop device must hold the image: the root filesystem bytes match and /hello.txt carries the marker.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  AGENT_MAIN, REPO_ROOT, buildRawImage, extractRange, hashFile, hostMacs, readMarker, serveFiles, startAgentProcess,
  type AgentProcess, type ImageServer, type TestImage,
} from '../fixtures/compat-ironic-support.js';
import { createLoopDevices, type LoopSet } from '../fixtures/loop.js';
import { withMount } from '../../block/mount.js';
import {
  artifactsDir, freeLoopbackPort, peerIronicUnavailable, startPeerIronic, type PeerIronic,
} from '../fixtures/peer-ironic.js';
import { have, run } from '../../common/exec.js';

const MiB = 1024 * 1024;

interface Scenario {
  name: string;
  label: 'dos' | 'gpt';
  /** What is served: the raw image or a qcow2 conversion of it (agent converts while writing). */
  format: 'raw' | 'qcow2';
  checksum: 'os_hash_sha256' | 'md5';
  automatedClean: boolean;
  bootMode: 'bios' | 'uefi';
  tls: boolean;
  /** Ironic boots the "ramdisk" via iPXE (dummy files) and installs the boot loader through the agent. */
  manageBoot: boolean;
  /** Afterwards: undeploy, redeploy with a wrong checksum, expect `deploy failed` and the ramdisk logs. */
  badChecksumRedeploy?: boolean;
}

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (loop devices)';
  const why = peerIronicUnavailable();
  if (why) return why;
  if (!existsSync(AGENT_MAIN)) return 'agent/main.ts does not exist yet';
  for (const p of ['losetup', 'parted', 'sgdisk', 'mkfs.ext4', 'debugfs', 'qemu-img']) if (!(await have(p))) return `${p} missing`;
  return undefined;
}

/** Auto-TLS is present when the agent sends agent_verify_ca. */
async function agentHasAutoTls(): Promise<boolean> {
  const files: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (e.name.endsWith('.ts')) files.push(join(d, e.name));
    }
  };
  await walk(join(REPO_ROOT, 'agent'));
  for (const f of files) if ((await readFile(f, 'utf8')).includes('agent_verify_ca')) return true;
  return false;
}

interface NodeJson {
  uuid: string;
  provision_state: string;
  target_provision_state: string | null;
  last_error: string | null;
  power_state: string | null;
  driver_internal_info: Record<string, unknown>;
}

async function getNode(ironic: PeerIronic, uuid: string): Promise<NodeJson> {
  const r = await fetch(`${ironic.url}/v1/nodes/${uuid}`, {
    headers: { 'X-OpenStack-Ironic-API-Version': '1.78', Accept: 'application/json' },
    signal: AbortSignal.timeout(10_000),
  });
  if (!r.ok) throw new Error(`GET node ${uuid}: HTTP ${r.status} ${await r.text()}`);
  return (await r.json()) as NodeJson;
}

/** Poll until provision_state is one of `want`; throw with context on a fail state, a dead agent or the timeout. */
async function waitState(
  ironic: PeerIronic, uuid: string, want: string[], timeoutMs: number, agent?: AgentProcess,
): Promise<NodeJson> {
  const deadline = Date.now() + timeoutMs;
  let last: NodeJson | undefined;
  let agentGoneAt: number | undefined;
  for (;;) {
    last = await getNode(ironic, uuid);
    if (want.includes(last.provision_state)) return last;
    if (/failed$/.test(last.provision_state)) {
      throw new Error(`node went to '${last.provision_state}' (want ${want.join('|')}): ${last.last_error}`);
    }
    // After standby.power_off the agent is gone while Ironic still finishes its own steps: allow it that long.
    if (agent && !agent.running()) {
      agentGoneAt ??= Date.now();
      if (Date.now() - agentGoneAt > 30_000) {
        throw new Error(`agent exited and the node stayed '${last.provision_state}' (want ${want.join('|')})`);
      }
    }
    if (Date.now() > deadline) {
      throw new Error(`timeout: node still '${last.provision_state}' -> ${last.target_provision_state} ` +
        `(want ${want.join('|')}), last_error ${last.last_error}`);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Agent commands Ironic issued, in order, from its debug log ("Executing agent command X for node"). */
async function agentCommandsFromLog(ironic: PeerIronic): Promise<string[]> {
  const text = await readFile(ironic.logFile, 'utf8').catch(() => '');
  return [...text.matchAll(/Executing agent command (\S+) for node/g)].map((m) => m[1] ?? '');
}

/** Heartbeat-to-step latencies from the two logs (diagnostics only: never asserted). */
async function latencies(ironic: PeerIronic, agentLog: string): Promise<string> {
  const events: Array<{ at: number; what: string }> = [];
  const text = await readFile(ironic.logFile, 'utf8').catch(() => '');
  for (const m of text.matchAll(/^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .*?(RPC heartbeat called|Executing agent command (\S+))/gm)) {
    events.push({ at: Date.parse(m[1]!.replace(' ', 'T')), what: m[3] ?? 'heartbeat' });
  }
  const before = (at: number): number | undefined => events.filter((e) => e.what === 'heartbeat' && e.at <= at).pop()?.at;
  const exec = events.find((e) => e.what === 'deploy.execute_deploy_step');
  const uuids = events.find((e) => e.what === 'standby.get_partition_uuids');
  const done = /"time":(\d+)[^\n]*"phase":"done"/.exec(await readFile(agentLog, 'utf8').catch(() => ''));
  const parts: string[] = [];
  const hb = exec ? before(exec.at) : undefined;
  if (exec && hb !== undefined) parts.push(`heartbeat -> execute_deploy_step ${exec.at - hb} ms`);
  if (uuids && done) parts.push(`image written -> next step (get_partition_uuids) ${uuids.at - Number(done[1])} ms`);
  return parts.join(', ') || 'n/a';
}

async function runScenario(t: TestContext, sc: Scenario): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'bmts-compat-'));
  const agents: AgentProcess[] = [];
  let ironic: PeerIronic | undefined;
  let server: ImageServer | undefined;
  let loops: LoopSet | undefined;
  let passed = false;
  t.after(async () => {
    for (const a of agents) await a.kill();
    await server?.close();
    await loops?.dispose();
    const keep = !passed || process.env.BMTS_KEEP_LOGS === '1';
    const kept = await ironic?.stop({ keepLogs: keep });
    if (keep) {
      const dest = kept ?? join(artifactsDir(), `compat-${Date.now()}`);
      await mkdir(dest, { recursive: true });
      for (const a of agents) await cp(a.logFile, join(dest, a.logFile.split('/').pop() ?? 'agent.log')).catch(() => {}); // keeping logs is best-effort; some files may not exist
      t.diagnostic(`logs kept in ${dest}`);
    }
    await rm(work, { recursive: true, force: true });
  });

  const t0 = Date.now();
  const mark = (what: string): void => t.diagnostic(`${sc.name}: ${what} at +${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const img: TestImage = await buildRawImage(join(work, 'image'), sc.label);
  let served = { path: img.path, md5: img.md5, sha256: img.sha256 };
  if (sc.format === 'qcow2') {
    const q = join(work, 'image', 'compat.qcow2');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', img.path, q]);
    served = { path: q, md5: await hashFile(q, 'md5'), sha256: await hashFile(q, 'sha256') };
  }
  const imagePath = `/images/compat.${sc.format}`;
  server = await serveFiles({ [imagePath]: served.path });
  loops = await createLoopDevices(1, 64);
  const disk = loops.devices[0]!.path;
  ironic = await startPeerIronic({
    automatedClean: false, requireTls: sc.tls, defaultBootMode: sc.bootMode, manageAgentBoot: sc.manageBoot,
  });
  mark(`Ironic up on ${ironic.url}`);

  let lookupMacs: string | undefined;
  const startAgent = async (n: number): Promise<AgentProcess> => {
    const port = await freeLoopbackPort();
    const a = startAgentProcess({
      'ipa-api-url': ironic!.url,
      'ipa-listen-host': '127.0.0.1',
      'ipa-listen-port': String(port),
      'ipa-advertise-host': '127.0.0.1',
      'ipa-advertise-port': String(port),
      'ipa-device-allowlist': disk,
      'ipa-enable-auto-tls': sc.tls ? '1' : '0',
      'ipa-lookup-timeout': '120',
      'ipa-debug': '1',
      'ipa-log-file': join(work, `agent${n}-file.log`),
      ...(lookupMacs ? { 'ipa-lookup-macs': lookupMacs } : {}),
    }, join(work, `agent${n}.log`));
    agents.push(a);
    return a;
  };

  // Enrollment through the real CLI, as an operator would.
  const node = await ironic.cliJson<{ uuid: string }>([
    'node', 'create', '--driver', 'manual-management', '--deploy-interface', 'direct', '--boot-interface', 'ipxe',
    '--power-interface', 'fake', '--management-interface', 'noop',
    '--name', `compat-${sc.name}`, '--property', `root_device={"name": "${disk}"}`,
    sc.automatedClean ? '--automated-clean' : '--no-automated-clean',
    '--driver-info', `deploy_kernel=${ironic.deployKernel}`, '--driver-info', `deploy_ramdisk=${ironic.deployRamdisk}`,
  ]);
  // The agent looks itself up with its inventory's MACs, i.e. this host's NICs; a host with none (only lo)
  // gets a made-up port MAC that the agent is told to send instead.
  const macs = await hostMacs();
  if (macs.length === 0) {
    macs.push('52:54:00:c0:ff:ee');
    lookupMacs = macs[0];
    t.diagnostic('no NIC MAC on this host: the agent sends 52:54:00:c0:ff:ee (ipa-lookup-macs)');
  }
  for (const mac of macs) await ironic.cli(['port', 'create', mac, '--node', node.uuid]);
  await ironic.cli(['node', 'manage', node.uuid, '--wait', '60']);

  if (sc.automatedClean) {
    // Something for erase_devices_metadata to erase: the image's partition table on the disk.
    await writeImageToDisk(img.path, disk);
    assert.equal((await readBytes(disk, 512, 8)).toString('latin1'), sc.label === 'gpt' ? 'EFI PART' : (await readBytes(img.path, 512, 8)).toString('latin1'));
    await ironic.cli(['node', 'provide', node.uuid]);
    await waitState(ironic, node.uuid, ['clean wait'], 60_000);
    mark('clean wait');
    const cleaner = await startAgent(1);
    await waitState(ironic, node.uuid, ['available'], 150_000, cleaner);
    mark('cleaned: available');
    // Ironic powered the node off out of band (fake power): for our host process that means: end it.
    await cleaner.kill();
    const sig = await readBytes(disk, 510, 2);
    const gpt = (await readBytes(disk, 512, 8)).toString('latin1');
    t.diagnostic(`after cleaning: MBR signature ${sig.toString('hex')}, LBA1 '${gpt.replace(/[^\x20-\x7e]/g, '.')}'`);
    assert.notEqual(gpt, 'EFI PART', 'automated cleaning (erase_devices_metadata) left the GPT header in place');
    assert.notEqual(sig.toString('hex'), '55aa', 'automated cleaning left the MBR boot signature in place');
  } else {
    await ironic.cli(['node', 'provide', node.uuid, '--wait', '60']);
  }

  const ii = [`image_source=${server.url}${imagePath}`, `image_disk_format=${sc.format}`];
  if (sc.checksum === 'md5') ii.push(`image_checksum=${served.md5}`);
  else ii.push('image_os_hash_algo=sha256', `image_os_hash_value=${served.sha256}`);
  await ironic.cli(['node', 'set', node.uuid, ...ii.flatMap((kv) => ['--instance-info', kv])]);
  const tDeploy = Date.now();
  await ironic.cli(['node', 'deploy', node.uuid]);
  await waitState(ironic, node.uuid, ['wait call-back'], 60_000);
  mark('wait call-back');
  const tAgent = Date.now();
  const deployer = await startAgent(2);
  let active: NodeJson;
  try {
    active = await waitState(ironic, node.uuid, ['active'], 180_000, deployer);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- Ironic log tail\n${await ironic.logTail(40)}\n--- agent log tail\n` +
      `${(await readFile(deployer.logFile, 'utf8').catch(() => '')).split('\n').slice(-40).join('\n')}`);
  }
  mark(`active (deploy ${((Date.now() - tDeploy) / 1000).toFixed(1)} s from 'node deploy', ` +
    `${((Date.now() - tAgent) / 1000).toFixed(1)} s from agent start)`);
  assert.equal(active.last_error, null);

  // tear_down_agent sent standby.power_off: on a host that ends the agent process (by itself, not by us).
  const ended = await Promise.race([deployer.exited, new Promise<null>((r) => setTimeout(() => r(null), 30_000))]);
  assert.ok(ended && !ended.byUs, 'the agent did not end its process after standby.power_off');
  mark(`agent exited by itself (code ${ended.code}, signal ${ended.signal})`);
  const log = await readFile(ironic.logFile, 'utf8');
  // (With fake power Ironic then still "forces a hard power off": the power state never changes by itself.)
  assert.match(log, /Agent command standby\.power_off for node \S+ returned result .* HTTP status code 200/);
  assert.doesNotMatch(log, /Failed to soft power off node \S+\. /, 'Ironic could not power the node off through the agent');

  if (sc.tls) {
    const agentLog = await readFile(deployer.logFile, 'utf8');
    assert.match(agentLog, /"callback_url":"https:\/\/127\.0\.0\.1:\d+"/, 'the agent did not advertise an https callback');
  }
  t.diagnostic(`latency: ${await latencies(ironic, deployer.logFile)}`);
  const cmds = await agentCommandsFromLog(ironic);
  t.diagnostic(`agent commands Ironic sent: ${cmds.join(', ')}`);
  const expected = ['deploy.get_deploy_steps', 'deploy.execute_deploy_step', 'standby.get_partition_uuids', 'standby.power_off'];
  // 21.4 installs a boot loader for whole-disk images only in UEFI mode (agent_base.configure_local_boot).
  if (sc.manageBoot && sc.bootMode === 'uefi') expected.push('image.install_bootloader');
  for (const c of expected) {
    assert.ok(cmds.includes(c), `Ironic never sent ${c}`);
  }
  if (sc.automatedClean) assert.ok(cmds.includes('clean.get_clean_steps'), 'Ironic never asked for clean steps');
  t.diagnostic(`root_uuid_or_disk_id stored by Ironic: ${String(active.driver_internal_info.root_uuid_or_disk_id)} ` +
    `(image disk id ${img.diskId})`);
  assert.ok(server.requests.some((r) => r.startsWith(`GET ${imagePath} 200`)), `agent never downloaded the image: ${server.requests.join('; ')}`);

  // The disk holds the image: the root filesystem bytes and the known file in it.
  const fsCopy = join(work, 'deployed-rootfs.ext4');
  await extractRange(disk, img.rootOffset, 8 * MiB, fsCopy);
  assert.equal(await hashFile(fsCopy, 'sha256'), img.fsSha256, 'root filesystem bytes on the disk differ from the image');
  assert.equal(await readMarker(fsCopy), img.marker);
  // And as an operator would look: the kernel's partition device, mounted read-only.
  const part = `${disk}p1`;
  if (existsSync(part)) {
    const text = await withMount(part, (mnt) => readFile(join(mnt, 'hello.txt'), 'utf8'), { options: 'ro,noload', parent: work });
    assert.equal(text, img.marker);
  } else {
    t.diagnostic(`${part} does not exist after the deploy (no partition rescan): checked the file with debugfs only`);
  }
  const table = (await readBytes(disk, 510, 2)).toString('hex');
  assert.equal(table, '55aa', 'no partition table signature on the deployed disk');

  if (sc.badChecksumRedeploy) {
    await ironic.cli(['node', 'undeploy', node.uuid]);
    await waitState(ironic, node.uuid, ['available'], 60_000);
    const wrong = 'f'.repeat(64);
    await ironic.cli(['node', 'set', node.uuid, '--instance-info', `image_source=${server.url}${imagePath}`,
      '--instance-info', `image_disk_format=${sc.format}`, '--instance-info', 'image_os_hash_algo=sha256',
      '--instance-info', `image_os_hash_value=${wrong}`]);
    await ironic.cli(['node', 'deploy', node.uuid]);
    await waitState(ironic, node.uuid, ['wait call-back'], 60_000);
    const third = await startAgent(3);
    let failed: NodeJson | undefined;
    try {
      await waitState(ironic, node.uuid, ['deploy failed'], 120_000, third);
    } catch (e) {
      failed = await getNode(ironic, node.uuid);
      if (failed.provision_state !== 'deploy failed') throw e;
    }
    failed ??= await getNode(ironic, node.uuid);
    mark(`wrong checksum: deploy failed: ${failed.last_error}`);
    // IPA's ImageChecksumError details reach last_error through Ironic's command_error handling.
    assert.match(failed.last_error ?? '', /deploy\.write_image failed/);
    assert.match(failed.last_error ?? '', new RegExp(wrong), 'last_error does not name the expected checksum');
    // On failure 21.4 collects the ramdisk logs (log.collect_system_logs) and stores the tarball.
    const saved = await readdir(join(ironic.dir, 'ramdisk-logs')).catch(() => [] as string[]);
    assert.ok(saved.length > 0, 'Ironic stored no ramdisk logs from log.collect_system_logs');
    const listing = await run('tar', ['-tzf', join(ironic.dir, 'ramdisk-logs', saved[0]!)]);
    t.diagnostic(`ramdisk logs ${saved[0]}: ${listing.stdout.split('\n').filter(Boolean).length} files`);
    await third.kill();
  }
  passed = true;
}

async function readBytes(path: string, offset: number, length: number): Promise<Buffer> {
  const fd = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    await fd.read(buf, 0, length, offset);
    return buf;
  } finally {
    await fd.close();
  }
}

/** Write an image file onto the test's own loop device (to give cleaning something to erase). */
async function writeImageToDisk(image: string, disk: string): Promise<void> {
  const src = await open(image, 'r');
  const dst = await open(disk, 'r+');
  try {
    const buf = Buffer.alloc(MiB);
    for (let off = 0; ; off += MiB) {
      const { bytesRead } = await src.read(buf, 0, MiB, off);
      if (bytesRead === 0) break;
      await dst.write(buf, 0, bytesRead, off);
    }
    await dst.sync();
  } finally {
    await src.close();
    await dst.close();
  }
}

test('real Ironic 21.4 deploys through our agent: bios, no cleaning, plain HTTP, sha256 os_hash, msdos image; wrong checksum fails cleanly',
  { timeout: 300_000 }, async (t) => {
    const why = await skipReason();
    if (why) return t.skip(why);
    await runScenario(t, { name: 'plain', label: 'dos', format: 'raw', checksum: 'os_hash_sha256', automatedClean: false,
      bootMode: 'bios', tls: false, manageBoot: false, badChecksumRedeploy: true });
  });

test('real Ironic 21.4 cleans and deploys through our agent: automated clean, uefi + install_bootloader, md5, gpt qcow2 image, TLS if the agent has auto-TLS',
  { timeout: 300_000 }, async (t) => {
    const why = await skipReason();
    if (why) return t.skip(why);
    const tls = await agentHasAutoTls();
    if (!tls) t.diagnostic('agent has no auto-TLS yet: running this scenario with [agent]require_tls=false');
    await runScenario(t, { name: 'clean-uefi', label: 'gpt', format: 'qcow2', checksum: 'md5', automatedClean: true,
      bootMode: 'uefi', tls, manageBoot: true });
  });
