/**
 * The `iscsi` deploy interface (the original design's PXE + iSCSI deploy): the same step plan as `direct`, but
 * deploy.write_image runs in the conductor. On the first heartbeat of the deploy ramdisk it asks the agent to export
 * its root device (iscsi.start_iscsi_target, a fresh iqn and CHAP secret per attempt), writes the image from this
 * host over iSCSI with QEMU's user-space initiator (conductor/iscsi/initiator.ts), reads the written bytes back to
 * check the checksum, stops the target and wipes the CHAP secret from driver_internal_info. Bootloader, boot device
 * and reboot are the direct deploy's steps, unchanged. The node downloads nothing.
 *
 * Whole-disk images only: a partition image would need the partitioning done on the conductor.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { run } from '../../common/exec.js';
import { errorMessage } from '../../common/errors.js';
import type { CommandResult } from '../../protocol/agent-api.js';
import { commandErrorText } from '../agent-client.js';
import type { ConductorContext } from '../context.js';
import type { DeployInterface, NodeTask } from '../drivers/index.js';
import { InvalidParameterValue } from '../errors.js';
import { openOrigin } from '../image-cache/origin.js';
import {
  chapUsername, fileDigest, iscsiDisplayUrl, newChapSecret, newIqn, readBackDigest, writeRawImage,
  type DigestAlgo, type IscsiTarget,
} from '../iscsi/initiator.js';
import { agentClient, agentEndpoint } from './agent-node.js';
import { createDirectDeploy, deployFlow } from './direct.js';
import { isPartitionImage } from './image-info.js';
import { expectedChecksum } from './image-source.js';
import type { StepFlow } from './step-runner.js';

export const DEFAULT_PORTAL_PORT = 3260;
/** Writing and reading back a big image over a slow link: generous, but a hung initiator still ends. */
const IO_TIMEOUT_MS = 3 * 3600_000;

/** driver_info.iscsi_portal_port: the port the agent's target listens on (IPA's portal_port, default 3260). */
export function portalPort(driverInfo: Record<string, unknown>): number {
  const v = driverInfo.iscsi_portal_port;
  if (v === undefined || v === null || v === '') return DEFAULT_PORTAL_PORT;
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    throw new InvalidParameterValue(`driver_info.iscsi_portal_port must be a port number (1-65535), not ${JSON.stringify(v)}`);
  }
  return n;
}

function validateIscsi(node: { instance_info: Record<string, unknown>; driver_info: Record<string, unknown> }): void {
  if (isPartitionImage(node.instance_info)) {
    throw new InvalidParameterValue('The iscsi deploy interface writes whole-disk images only; this node has a partition ' +
      'image (kernel/ramdisk or image_type=partition). Use the direct deploy interface for it.');
  }
  portalPort(node.driver_info);
}

/** The agent's address as the portal host: the host part of the callback URL it heartbeats with. */
export function portalHost(agentUrl: string): string {
  let u: URL;
  try { u = new URL(agentUrl); } catch { throw new Error(`the agent's callback URL ${JSON.stringify(agentUrl)} is not a URL`); }
  return u.hostname.replace(/^\[(.*)\]$/, '$1');
}

interface LocalImage {
  /** Raw bytes to write. */
  raw: string;
  size: number;
  /** Digest of the raw bytes (what the read-back must match). */
  algo: DigestAlgo;
  hex: string;
}

/** Downloads the image into `dir` checking its checksum on the way, and makes it raw (qemu-img) when it is not. */
async function fetchImage(ctx: ConductorContext, n: NodeTask['node'], dir: string): Promise<LocalImage> {
  const ii = n.instance_info;
  const expected = expectedChecksum(ii);
  const source = String(ii.image_source);
  const file = join(dir, 'image');
  const origin = await openOrigin(source, { allowLoopback: ctx.config.deploy.image_cache_allow_loopback,
    timeoutS: ctx.config.image_cache.download_timeout });
  const h = createHash(expected.algo);
  await pipeline(origin.body, new Transform({ transform(chunk: Buffer, _e, cb) { h.update(chunk); cb(null, chunk); } }),
    createWriteStream(file, { mode: 0o600 }));
  const got = h.digest('hex');
  if (got !== expected.hex.toLowerCase()) {
    throw new Error(`Image ${source} failed to verify against checksum: expected ${expected.algo} ${expected.hex}, got ${got}`);
  }
  const declared = typeof ii.image_disk_format === 'string' ? ii.image_disk_format : undefined;
  const format = declared ?? (JSON.parse((await run('qemu-img', ['info', '--output=json', file], { quiet: true })).stdout) as
    { format: string }).format;
  if (format === 'raw') return { raw: file, size: (await stat(file)).size, algo: expected.algo, hex: expected.hex.toLowerCase() };
  if (!/^[a-z0-9]+$/.test(format)) throw new InvalidParameterValue(`unknown image_disk_format ${JSON.stringify(format)}`);
  const raw = join(dir, 'image.raw');
  await run('qemu-img', ['convert', '-f', format, '-O', 'raw', file, raw], { timeoutMs: IO_TIMEOUT_MS });
  await rm(file, { force: true });
  return { raw, size: (await stat(raw)).size, algo: 'sha256', hex: await fileDigest(raw, 'sha256') };
}

async function stopTarget(ctx: ConductorContext, task: NodeTask): Promise<void> {
  try {
    const res = await agentClient(ctx).command(agentEndpoint(task), 'iscsi.stop_iscsi_target', {}, { wait: true });
    if (res.command_status === 'FAILED') throw new Error(commandErrorText(res));
  } catch (e) {
    // The deploy's outcome stands; the target dies with the ramdisk at the next power-off anyway.
    ctx.log.warn({ node: task.node.uuid, err: errorMessage(e) }, 'could not stop the iSCSI target on the agent');
  }
}

/** deploy.write_image of the iscsi deploy (out-of-band: runs in the conductor, nothing waits on the agent). */
export async function iscsiWriteImage(ctx: ConductorContext, task: NodeTask): Promise<void> {
  const n = task.node;
  validateIscsi(n);
  const base = join(resolve(ctx.config.data_dir), 'iscsi');
  await mkdir(base, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(base, `${n.uuid}-`));
  try {
    const started = Date.now();
    const image = await fetchImage(ctx, n, dir);
    const fetched = Date.now();
    const ep = agentEndpoint(task);
    const target: IscsiTarget = { host: portalHost(ep.url), port: portalPort(n.driver_info), iqn: newIqn(n.uuid), lun: 1,
      username: chapUsername(n.uuid), password: newChapSecret() };
    await task.updateInternalInfo({ iscsi_target_iqn: target.iqn, iscsi_chap_username: target.username,
      iscsi_chap_password: target.password });
    try {
      let res: CommandResult;
      try {
        res = await agentClient(ctx).command(ep, 'iscsi.start_iscsi_target', { iqn: target.iqn, portal_port: target.port,
          wipe_disk_metadata: true, username: target.username, password: target.password }, { wait: true });
      } catch (e) {
        throw new Error(`The agent could not start the iSCSI target: ${errorMessage(e)}`);
      }
      if (res.command_status === 'FAILED') throw new Error(`The agent could not start the iSCSI target: ${commandErrorText(res)}`);
      await writeRawImage(target, image.raw, IO_TIMEOUT_MS);
      const written = Date.now();
      const back = await readBackDigest(target, image.size, image.algo, IO_TIMEOUT_MS);
      if (back !== image.hex) {
        throw new Error(`Checksum mismatch after writing the image over iSCSI to ${iscsiDisplayUrl(target)}: expected ` +
          `${image.algo} ${image.hex}, read back ${back}`);
      }
      ctx.log.info({ node: n.uuid, target: iscsiDisplayUrl(target), bytes: image.size, fetch_ms: fetched - started,
        write_ms: written - fetched, verify_ms: Date.now() - written }, 'image written over iSCSI and verified');
    } finally {
      await stopTarget(ctx, task);
      await task.updateInternalInfo({ iscsi_chap_password: undefined });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The direct deploy's flow with write_image done from the conductor. */
export const iscsiDeployFlow: StepFlow = {
  ...deployFlow,
  outOfBand: { ...deployFlow.outOfBand, 'deploy.write_image': (ctx, task) => iscsiWriteImage(ctx, task) },
};

/** The `iscsi` deploy interface of one conductor. */
export function createIscsiDeploy(ctx: ConductorContext): DeployInterface {
  return createDirectDeploy(ctx, {
    name: 'iscsi', flow: iscsiDeployFlow, validate: validateIscsi,
    properties: { iscsi_portal_port: 'Port the deploy ramdisk\'s iSCSI target listens on (default 3260). Optional.' },
  });
}
