/**
 * The parts the demo drives, found at run time: the conductor (conductor/main.ts startConductor), the deploy
 * ramdisk (build/ramdisk, with the real agent inside) and the drivers the node needs (ipmi hardware type with
 * ipxe boot and direct deploy). A part that is not there is a ComponentMissing naming it — never a fake success.
 */
import { createWriteStream, existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnLong } from '../../common/exec.js';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { IronicApi } from './api.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export class ComponentMissing extends Error {
  constructor(
    readonly component: string,
    detail: string,
  ) {
    super(`component ${component} not available yet: ${detail}`);
  }
}

export interface ConductorHandle {
  /** Loopback API endpoint, e.g. http://127.0.0.1:6385. */
  apiUrl: string;
  logFile: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

/**
 * Import a repository module by path without a static import, so the demo type-checks and runs (with a clear
 * ComponentMissing) before that module lands.
 */
async function importOptional(rel: string, component: string): Promise<Record<string, unknown>> {
  const file = join(REPO_ROOT, rel);
  if (!existsSync(file)) throw new ComponentMissing(component, `${rel} does not exist`);
  return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
}

/**
 * Run the conductor as its own process through its command-line contract (`npm run conductor -- --config FILE`):
 * its logs go to a file the user is pointed at on failure, and nothing of it can outlive stop().
 */
export async function startConductorProcess(
  config: Record<string, unknown>,
  workDir: string,
  api: IronicApi,
): Promise<ConductorHandle> {
  const main = join(REPO_ROOT, 'conductor', 'main.ts');
  if (!existsSync(main)) throw new ComponentMissing('conductor (conductor/main.ts)', 'conductor/main.ts does not exist');
  const configFile = join(workDir, 'conductor.json');
  const logFile = join(workDir, 'conductor.log');
  await writeFile(configFile, `${JSON.stringify(config, null, 1)}\n`);
  const log = createWriteStream(logFile);
  const child = spawnLong(process.execPath, ['--import', 'tsx', main, '--config', configFile], {
    cwd: REPO_ROOT,
    // The log file is for diagnosis: info even when the caller quietened its own output.
    env: { LOG_LEVEL: process.env.BMTS_CONDUCTOR_LOG_LEVEL ?? 'info' },
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  let exited = false;
  const done = child.then(() => undefined, () => undefined).finally(() => { exited = true; });
  const stop = async (): Promise<void> => {
    if (!exited && child.pid) {
      try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ }
      await Promise.race([done, sleep(5000)]);
      if (!exited) try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
      await Promise.race([done, sleep(2000)]);
    }
    log.end();
  };
  try {
    await Promise.race([
      api.waitReady(60_000),
      done.then(() => { throw new Error(`conductor exited during start-up (log: ${logFile})`); }),
    ]);
  } catch (e) {
    await stop();
    throw e;
  }
  return { apiUrl: api.endpoint, logFile, pid: child.pid, stop };
}

export interface RamdiskFiles {
  kernel: string;
  initramfs: string;
  agentVersion: string;
  totalMiB: number | undefined;
}

/**
 * The deploy ramdisk, (re)built through ramdisk-build/build.ts every time: its caches make an unchanged build a
 * few seconds, and the demo must never boot a stale agent. Refuses a ramdisk that carries the stand-in dev agent.
 */
export async function findRamdisk(say: (l: string) => void): Promise<RamdiskFiles> {
  const out = join(REPO_ROOT, 'build', 'ramdisk');
  const manifestFile = join(out, 'manifest.json');
  if (!existsSync(join(REPO_ROOT, 'agent', 'main.ts'))) {
    throw new ComponentMissing('agent (agent/main.ts)', 'the ramdisk would only carry the stand-in dev agent');
  }
  const mod = await importOptional('ramdisk-build/build.ts', 'ramdisk builder (ramdisk-build/build.ts)');
  const buildRamdisk = mod.buildRamdisk;
  if (typeof buildRamdisk !== 'function') throw new ComponentMissing('ramdisk builder', 'no buildRamdisk export');
  say('deploy ramdisk: building build/ramdisk (cached when nothing changed)...');
  await (buildRamdisk as (o: Record<string, unknown>) => Promise<unknown>)({ out, say: (l: string) => say(`  ${l}`) });
  const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as {
    agent?: { entry?: string; version?: string };
    sizes?: { total_mib?: number };
  };
  if (manifest.agent?.entry && manifest.agent.entry !== 'agent/main.ts') {
    throw new ComponentMissing('agent in the ramdisk', `build/ramdisk carries ${manifest.agent.entry}; run npm run ramdisk`);
  }
  for (const f of ['vmlinuz', 'initramfs']) {
    if (!existsSync(join(out, f))) throw new ComponentMissing('deploy ramdisk', `build/ramdisk/${f} missing; run npm run ramdisk`);
  }
  return {
    kernel: join(out, 'vmlinuz'),
    initramfs: join(out, 'initramfs'),
    agentVersion: manifest.agent?.version ?? 'unknown',
    totalMiB: manifest.sizes?.total_mib,
  };
}

/** The node's interfaces must all be real: the ipmi hardware type with ipmitool, ipxe and direct. */
export async function checkDrivers(api: IronicApi, nodeUuid: string): Promise<void> {
  const v = await api.validate(nodeUuid);
  const needed: Array<[string, string]> = [
    ['power', 'ipmitool power (conductor/drivers)'],
    ['management', 'ipmitool management (conductor/drivers)'],
    ['boot', 'ipxe boot interface (conductor/drivers)'],
    ['deploy', 'direct deploy interface (conductor/orchestration)'],
  ];
  for (const [kind, component] of needed) {
    const r = v[kind];
    if (!r) throw new ComponentMissing(component, `validate reports no ${kind} interface`);
    if (r.result === false) {
      if (/not (implemented|available|enabled|supported)|unknown interface|no such|does not support/i.test(r.reason ?? '')) {
        throw new ComponentMissing(component, r.reason ?? 'unavailable');
      }
      throw new Error(`node validation failed for ${kind}: ${r.reason ?? 'no reason given'}`);
    }
  }
}
