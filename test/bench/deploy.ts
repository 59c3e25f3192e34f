/**
 * `npm run bench -- deploy [--size-mib 1024]` (or positional `deploy 1024`): a whole deploy (our conductor + our
 * agent as a real process, the node's disk a loop device, fake-hardware power, `direct` deploy) against the bare
 * write of the same image (`set -o pipefail; curl -sSf URL | dd of=DEV bs=4M iflag=fullblock oflag=direct
 * conv=fsync`, support/baselines.ts; a failed baseline ends the bench without a ratio) in the same run, plus the
 * heartbeat-to-step latency: from the agent reporting write_image done to the conductor starting the next step.
 * ratio = bare write seconds / deploy seconds. The agent boots from its esbuild bundle (as in the ramdisk); a timeline of
 * states and the agent's own phases (from its log) say where the time beyond the bare write goes. Last line: `deploy size_mib=… deploy_s=… bare_write_s=… overhead_s=… ratio=… hb_to_step_ms=… hb_min_interval_s=…`.
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

const HB_MIN_INTERVAL_S = 0.2;

interface NodeJson {
  provision_state: string;
  last_error: string | null;
  power_state: string | null;
  deploy_step: { step?: string };
  driver_internal_info: Record<string, unknown>;
}

/**
 * The agent's side of the deploy from its log: start-up to the write_image step, the steps before the first byte
 * (disk probe, wipe, zeroing), the download+write+verify itself, and what follows it (partition table fix-ups).
 */
async function agentPhases(logFile: string): Promise<string> {
  const at = new Map<string, number>();
  for (const line of (await readFile(logFile, 'utf8').catch(() => '')).split('\n')) {
    if (!line.startsWith('{')) continue;
    const j = JSON.parse(line) as { time: number; msg: string; step?: string };
    const key = j.msg === 'executing step' ? `step ${j.step ?? ''}` : j.msg;
    if (!at.has(key)) at.set(key, j.time);
  }
  const t = (k: string): number => at.get(k) ?? NaN;
  const s = (a: string, b: string): string => ((t(b) - t(a)) / 1000).toFixed(2);
  return `start->write_image ${s('agent starting', 'step write_image')} s, before the first byte ${s('step write_image', 'writer open')} s, ` +
    `download+write+verify ${s('writer open', 'image written and verified')} s, after it ${s('image written and verified', 'prepare_image done')} s`;
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
    const created = await api('POST', '/v1/nodes', { driver: 'fake-hardware', deploy_interface: 'direct', name: 'bench',
      properties: { root_device: { name: dev } },
      instance_info: { image_source: url, image_os_hash_algo: 'sha256', image_os_hash_value: sha } });
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

    const show = async (): Promise<NodeJson> => (await api('GET', `/v1/nodes/${uuid}`)).body as NodeJson;
    const t1 = performance.now();
    await api('PUT', `/v1/nodes/${uuid}/states/provision`, { target: 'active' });
    // Watch the agent's command list (token from the store: this is the conductor's own process) to see when
    // write_image finishes there, and the node to see when the conductor moves on.
    let agentDoneAt = 0;
    let nextStepAt = 0;
    let n = await show();
    // Where the time goes: every change of state, step, power and agent process, from the API call.
    const timeline: string[] = [];
    let lastPhase = '';
    const deadline = Date.now() + 30 * 60_000;
    while (n.provision_state !== 'active' && n.provision_state !== 'deploy failed' && Date.now() < deadline) {
      const dii = n.driver_internal_info;
      if (!agentDoneAt && typeof dii.agent_url === 'string' && n.deploy_step.step === 'write_image') {
        const stored = await conductor.ctx!.store.getNodeByUuid(uuid);
        const token = stored?.driver_internal_info.agent_secret_token;
        const r = await fetch(`${dii.agent_url}/v1/commands/?agent_token=${String(token)}`).catch(() => null); // null: absent / not reachable (checked by the caller)
        const cmds = r?.ok ? ((await r.json()) as { commands: { command_name: string; command_status: string }[] }).commands : [];
        const last = cmds.at(-1);
        if (last?.command_name === 'execute_deploy_step' && last.command_status === 'SUCCEEDED') agentDoneAt = performance.now();
      }
      if (agentDoneAt && !nextStepAt && n.deploy_step.step !== 'write_image') nextStepAt = performance.now();
      const phase = `${n.provision_state} ${n.deploy_step.step ?? '-'} ${n.power_state ?? '-'}${node.agent()?.running() ? ' agent' : ''}`;
      if (phase !== lastPhase) {
        timeline.push(`${((performance.now() - t1) / 1000).toFixed(2)} s ${phase}`);
        lastPhase = phase;
      }
      // 25 ms: at 10 ms the bench's own polling (node GET, agent command list) took CPU from the agent it measures.
      await new Promise((r) => setTimeout(r, 25));
      n = await show();
    }
    if (agentDoneAt && !nextStepAt) nextStepAt = performance.now();
    console.log(`timeline: ${timeline.join(' | ')}`);
    console.log(`agent: ${await agentPhases(join(dir, 'agent-boot-1.log'))}`);
    const deployS = (performance.now() - t1) / 1000;
    if (n.provision_state !== 'active') throw new Error(`deploy ended in ${n.provision_state}: ${n.last_error}`);
    const hbMs = agentDoneAt ? nextStepAt - agentDoneAt : NaN;
    console.log(`deploy (API call to active): ${deployS.toFixed(2)} s; overhead over the bare write ${(deployS - bareS).toFixed(2)} s`);
    console.log(`heartbeat-to-step latency: ${hbMs.toFixed(0)} ms (agent forces a heartbeat ≥ ${HB_MIN_INTERVAL_S} s after the previous one)`);
    console.log(`deploy size_mib=${sizeMiB} deploy_s=${deployS.toFixed(2)} bare_write_s=${bareS.toFixed(2)} ` +
      `overhead_s=${(deployS - bareS).toFixed(2)} ratio=${(bareS / deployS).toFixed(2)} hb_to_step_ms=${hbMs.toFixed(0)} ` +
      `hb_min_interval_s=${HB_MIN_INTERVAL_S}`);
  } finally {
    await node?.stop();
    await conductor.close();
    await images.close();
    await loops.dispose();
    await rm(dir, { recursive: true, force: true });
  }
}
