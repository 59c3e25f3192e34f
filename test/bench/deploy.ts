/**
 * `npm run bench -- deploy [--size-mib 1024]` (or positional `deploy 1024`): a whole deploy (our conductor + our
 * agent as a real process, the node's disk a loop device, fake-hardware power, `direct` deploy) against the bare
 * write of the same image (`set -o pipefail; curl -sSf URL | dd of=DEV bs=4M iflag=fullblock oflag=direct
 * conv=fsync`, support/baselines.ts; a failed baseline ends the bench without a ratio) in the same run.
 *
 * What "the whole deploy" is: from the `active` API call to `active`, with the agent already up and heartbeating,
 * as Ironic's fast-track deploy runs it ([deploy]fast_track: cleaning leaves the ramdisk running and the deploy
 * uses it with no power cycle). That is what `deploy_s` and `ratio` time since issue 22's deploy-fast work: before
 * it they also timed the ramdisk "boot" (this host starting the agent process, 1-1.5 s on a busy box), a cost a
 * real node pays in minutes of POST and PXE and no image writer can remove. The cold deploy is still run and
 * printed (`cold_deploy_s`, `cold_ratio`): cold deploy, undeploy with cleaning (the agent stays up), fast-track
 * deploy, one node, one disk.
 *
 * For each deploy a timeline of the states the bench saw and the agent's own events (from its log) on one axis, and
 * the seconds by phase (support/deploy-timeline.ts): up to the write_image step, the step's own phases (the agent's
 * 'prepare_image done' log line), and the conductor's steps after it. hb_to_step_ms: from the agent reporting
 * write_image done to the conductor starting the next step (fast-track deploy). ratio = bare write seconds /
 * deploy seconds. The agent boots from its esbuild bundle (as in the ramdisk). Last line: `deploy size_mib=…
 * deploy_s=… bare_write_s=… overhead_s=… ratio=… cold_deploy_s=… cold_ratio=… hb_to_step_ms=… hb_min_interval_s=…`.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../common/exec.js';
import { bundleAgent } from '../../ramdisk-build/bundle.js';
import { REPO_ROOT } from '../fixtures/compat-ironic-support.js';
import { startTestConductor } from '../fixtures/conductor.js';
import { startFakeNode } from '../fixtures/fake-node.js';
import { buildRawDiskImage, fileDigest, serveImages } from '../fixtures/images.js';
import { createLoopDevices } from '../fixtures/loop.js';
import { sizeMiBArg } from './support/args.js';
import { curlDd } from './support/baselines.js';
import { deployTimeline, formatPhases, parseAgentLog, type DeployTimeline, type StateSample } from './support/deploy-timeline.js';

const HB_MIN_INTERVAL_S = 0.2;

interface NodeJson {
  provision_state: string;
  last_error: string | null;
  power_state: string | null;
  deploy_step: { step?: string };
  driver_internal_info: Record<string, unknown>;
}

interface DeployRun {
  seconds: number;
  hbMs: number;
  timeline: DeployTimeline;
}

export default async function bench(args: string[]): Promise<void> {
  const sizeMiB = sizeMiBArg(args, '--size-mib', 0, 1024);
  const dir = await mkdtemp(join(tmpdir(), 'bmts-bench-deploy-'));
  const loops = await createLoopDevices(1, sizeMiB + 64);
  const dev = loops.devices[0]!.path;
  const images = await serveImages(dir);
  const conductor = await startTestConductor({ config: {
    heartbeat_timeout: 30,
    agent: { power_off_poll_attempts: 1, power_off_poll_interval: 0.1, command_wait_interval: 0.2, command_timeout: 60,
      max_command_attempts: 3, command_wait_attempts: 100, deploy_logs_collect: 'never' },
    deploy: { fast_track: true, fast_track_timeout: 300 },
  } });
  let node: ReturnType<typeof startFakeNode> | undefined;
  try {
    console.log(`building a ${sizeMiB} MiB raw image filled with random data...`);
    const img = await buildRawDiskImage(dir, { sizeMiB, name: 'bench.raw' });
    // Fill the filesystem's free space so the bytes on the wire are real data, not sparse zeros.
    await run('dd', ['if=/dev/urandom', `of=${img.path}`, 'bs=4M', `seek=${Math.floor(img.partitionOffset / (4 << 20)) + 4}`,
      `count=${Math.floor(sizeMiB / 4) - 8}`, 'conv=notrunc', 'status=none']);
    const sha = await fileDigest(img.path, 'sha256');
    const url = images.url('bench.raw');

    const bareS = await curlDd(url, dev, (await stat(img.path)).size);
    console.log(`bare write (curl | dd): ${bareS.toFixed(2)} s, ${(sizeMiB / bareS).toFixed(0)} MiB/s`);
    await run('wipefs', ['-a', '-f', dev]);

    const api = conductor.api;
    const instanceInfo = { image_source: url, image_os_hash_algo: 'sha256', image_os_hash_value: sha };
    const created = await api('POST', '/v1/nodes', { driver: 'fake-hardware', deploy_interface: 'direct', name: 'bench',
      properties: { root_device: { name: dev } }, instance_info: instanceInfo });
    const uuid = (created.body as { uuid: string }).uuid;
    await api('POST', '/v1/ports', { address: '52:54:00:be:0c:01', node_uuid: uuid });
    conductor.ctx!.config.automated_clean = false;
    for (const target of ['manage', 'provide']) {
      await api('PUT', `/v1/nodes/${uuid}/states/provision`, { target });
      await conductor.ctx!.tasks.idle();
    }
    // The agent boots from its esbuild bundle, as the ramdisk runs it: under tsx its start-up alone (transpiling
    // on a busy 2-core box) took 3-5 s of the deploy, a cost no real node has.
    const bundle = await bundleAgent({ root: REPO_ROOT, cacheDir: join(dir, 'bundle'), minify: true });
    node = startFakeNode({ conductor, nodeUuid: uuid, mac: '52:54:00:be:0c:01', allowlist: dev, logDir: dir, agentBundle: bundle.file,
      agentFlags: { 'ipa-heartbeat-min-interval': String(HB_MIN_INTERVAL_S) } });
    const fake = node;
    const show = async (): Promise<NodeJson> => (await api('GET', `/v1/nodes/${uuid}`)).body as NodeJson;

    /** One deploy from the API call to `active`, watched every 25 ms. */
    const deployOnce = async (): Promise<DeployRun> => {
      const startMs = Date.now();
      const t1 = performance.now();
      await api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'active' });
      let n = await show();
      const states: StateSample[] = [];
      let lastPhase = '';
      const deadline = Date.now() + 30 * 60_000;
      while (n.provision_state !== 'active' && n.provision_state !== 'deploy failed' && Date.now() < deadline) {
        const phase = `${n.provision_state} ${n.deploy_step.step ?? '-'} ${n.power_state ?? '-'}${fake.agent()?.running() ? ' agent' : ''}`;
        if (phase !== lastPhase) {
          states.push({ at: (performance.now() - t1) / 1000, phase });
          lastPhase = phase;
        }
        // 25 ms: at 10 ms the bench's own polling took CPU from the agent it measures. The agent's own events come
        // from its log afterwards (support/deploy-timeline.ts), so nothing here asks the agent anything.
        await new Promise((r) => setTimeout(r, 25));
        n = await show();
      }
      const seconds = (performance.now() - t1) / 1000;
      if (n.provision_state !== 'active') throw new Error(`deploy ended in ${n.provision_state}: ${n.last_error}`);
      const log = await readFile(join(dir, `agent-boot-${fake.boots()}.log`), 'utf8').catch(() => ''); // no log: no agent phases
      const timeline = deployTimeline(parseAgentLog(log), states, startMs, seconds);
      return { seconds, hbMs: timeline.stepDoneToNextMs ?? NaN, timeline };
    };
    const report = (label: string, d: DeployRun): void => {
      console.log(`${label} timeline: ${d.timeline.entries.join(' | ')}`);
      console.log(`${label} phases: ${formatPhases(d.timeline.phases)}`);
      console.log(`${label} deploy (API call to active): ${d.seconds.toFixed(2)} s; overhead over the bare write ${(d.seconds - bareS).toFixed(2)} s`);
    };

    // 1. Cold: the deploy powers the node on and the "ramdisk" (the agent process) boots, looks up, heartbeats.
    const cold = await deployOnce();
    report('cold', cold);
    // 2. Undeploy with cleaning: fast-track keeps the agent up and heartbeating afterwards, as on an Ironic node.
    conductor.ctx!.config.automated_clean = true;
    await api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'deleted' });
    const cleanDeadline = Date.now() + 10 * 60_000;
    let n = await show();
    while (n.provision_state !== 'available' && !n.provision_state.endsWith('failed') && Date.now() < cleanDeadline) {
      await new Promise((r) => setTimeout(r, 100));
      n = await show();
    }
    if (n.provision_state !== 'available' || !fake.agent()?.running()) {
      throw new Error(`undeploy+cleaning ended in ${n.provision_state} (agent running: ${String(fake.agent()?.running())}): ${n.last_error}`);
    }
    await api('PATCH', `/v1/nodes/${uuid}`, [{ op: 'add', path: '/instance_info', value: instanceInfo }]);
    // 3. Fast-track: the timed deploy, on the agent cleaning left running.
    const bootsBefore = fake.boots();
    const ft = await deployOnce();
    report('fast-track', ft);
    if (fake.boots() !== bootsBefore) throw new Error('the fast-track deploy booted the agent again');
    console.log(`heartbeat-to-step latency: ${ft.hbMs.toFixed(0)} ms from write_image done to the next step's first agent call ` +
      `(agent forces a heartbeat ≥ ${HB_MIN_INTERVAL_S} s after the previous one)`);
    console.log(`deploy size_mib=${sizeMiB} deploy_s=${ft.seconds.toFixed(2)} bare_write_s=${bareS.toFixed(2)} ` +
      `overhead_s=${(ft.seconds - bareS).toFixed(2)} ratio=${(bareS / ft.seconds).toFixed(2)} ` +
      `cold_deploy_s=${cold.seconds.toFixed(2)} cold_ratio=${(bareS / cold.seconds).toFixed(2)} hb_to_step_ms=${ft.hbMs.toFixed(0)} ` +
      `hb_min_interval_s=${HB_MIN_INTERVAL_S}`);
  } finally {
    await node?.stop();
    await conductor.close();
    await images.close();
    await loops.dispose();
    await rm(dir, { recursive: true, force: true });
  }
}
