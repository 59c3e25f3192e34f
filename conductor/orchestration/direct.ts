/**
 * The `direct` deploy interface: deploy and cleaning driven through the agent, exactly as Ironic's agent deploy
 *. deploy()/clean() boot the ramdisk and return 'wait'; heartbeats then carry the step plan
 * forward (heartbeat.ts). The out-of-band deploy steps live here.
 */
import { errorMessage } from '../../common/errors.js';
import type { ConductorContext } from '../context.js';
import type { DeployInterface, NodeTask } from '../drivers/index.js';
import { InvalidParameterValue } from '../errors.js';
import { nodePowerAction } from '../services/power.js';
import { commandErrorText } from '../agent-client.js';
import { agentClient, agentEndpoint, agentNodeDict, agentPortDicts } from './agent-node.js';
import { bootModeOf, buildImageInfo, isPartitionImage, validateInstanceInfo, type InstanceInfoPolicy } from './image-info.js';
import { allowedFileDirs } from '../file-access.js';
import { imageDownloadSource, resolveImage } from './image-source.js';
import { isFastTrack } from '../fast-track.js';
import { BIOS_OUT_OF_BAND } from './bios-steps.js';
import { runFrom, type Pending, type StepFlow } from './step-runner.js';
import { DIRECT_DEPLOY_STEPS, type Step } from './steps.js';

export function imagePolicy(ctx: ConductorContext): InstanceInfoPolicy {
  return { allowMd5: ctx.config.agent.allow_md5_checksum, allowedFileDirs: allowedFileDirs(ctx.config) };
}

/** Power off, boot config for the ramdisk, PXE next boot, power on: the node comes back as an agent. */
export async function bootIntoRamdisk(ctx: ConductorContext, task: NodeTask): Promise<void> {
  const apiUrl = ctx.config.api_url ?? `${ctx.api?.scheme ?? 'http'}://${ctx.config.host}:${ctx.config.port}`;
  await nodePowerAction(task, 'power off');
  await task.driver.boot.prepareRamdisk(task.driverNode(), { apiUrl, kernelParams: [], requestId: `req-${task.node.uuid}`,
    ...(ctx.api?.caPem && apiUrl.startsWith('https:') ? { apiCaPem: ctx.api.caPem } : {}) });
  await task.driver.management.setBootDevice(task.driverNode(), 'pxe', false);
  await nodePowerAction(task, 'power on');
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/**
 * Fast-track: the agent is up and heartbeating, so nothing boots. The step waits as for a boot, and a heartbeat
 * run starts the moment this task releases the node (not on the agent's next heartbeat, nor on a lock poll): it
 * learns the agent's steps and goes on as if the ramdisk had just called back.
 */
function continueOnRunningAgent(ctx: ConductorContext, task: NodeTask): void {
  const uuid = task.node.uuid;
  ctx.log.info({ node: uuid, state: task.node.provision_state }, 'fast-track: using the running agent, no power cycle');
  task.afterRelease(() => {
    const handler = ctx.heartbeats.handler;
    if (!handler) return;
    Promise.resolve(handler(uuid, ctx)).catch((e: unknown) =>
      ctx.log.warn({ node: uuid, err: errorMessage(e) }, 'fast-track continuation failed; the next heartbeat retries'));
  });
}

const deployStep = {
  async deploy(ctx: ConductorContext, task: NodeTask): Promise<Pending> {
    if (await isFastTrack(ctx, task)) continueOnRunningAgent(ctx, task);
    else await bootIntoRamdisk(ctx, task);
    return 'boot';
  },

  async write_image(ctx: ConductorContext, task: NodeTask, step: Step): Promise<Pending> {
    const n = task.node;
    const source = String(n.instance_info.image_source);
    const image = await resolveImage(ctx, n, source);
    const imageInfo = { ...buildImageInfo(n, [image.url], ctx.config.deploy.default_boot_mode, imagePolicy(ctx)), ...image.imageInfo };
    const args: Record<string, unknown> = { ...(step.args ?? {}), image_info: imageInfo };
    if (n.instance_info.configdrive !== undefined) args.configdrive = n.instance_info.configdrive;
    const res = await agentClient(ctx).executeDeployStep(agentEndpoint(task),
      { interface: 'deploy', step: 'write_image', args, priority: step.priority },
      agentNodeDict(task, true), agentPortDicts(task),
      n.driver_internal_info.hardware_manager_version as Record<string, string> | undefined);
    if (res.command_status === 'FAILED') throw new Error(commandErrorText(res));
    return 'agent';
  },

  async prepare_instance_boot(ctx: ConductorContext, task: NodeTask): Promise<void> {
    const client = agentClient(ctx);
    const ep = agentEndpoint(task);
    const n = task.node;
    const bootMode = bootModeOf(n, ctx.config.deploy.default_boot_mode);
    const uuids = await client.getPartitionUuids(ep);
    const r = (uuids.command_result ?? {}) as Record<string, unknown>;
    await task.updateInternalInfo({ root_uuid_or_disk_id: r['root uuid'] ?? null, is_whole_disk_image: !isPartitionImage(n.instance_info) });
    if (isPartitionImage(n.instance_info) || bootMode === 'uefi') {
      const root = typeof r['root uuid'] === 'string' ? r['root uuid'] : null;
      if (isPartitionImage(n.instance_info) && !root) throw new Error('the agent reported no root partition UUID');
      const res = await client.installBootloader(ep, {
        root_uuid: root ?? '',
        efi_system_part_uuid: (r['efi system partition uuid'] as string | undefined) ?? null,
        prep_boot_part_uuid: (r['PReP Boot partition uuid'] as string | undefined) ?? null,
        target_boot_mode: bootMode,
      });
      if (res.command_status === 'FAILED') {
        throw new Error(`Failed to install a bootloader when deploying node ${n.uuid}: ${commandErrorText(res)}`);
      }
    }
    await task.driver.boot.prepareInstance(task.driverNode());
    await task.driver.management.setBootDevice(task.driverNode(), 'disk', true);
  },

  async tear_down_agent(ctx: ConductorContext, task: NodeTask): Promise<void> {
    const a = ctx.config.agent;
    try {
      await agentClient(ctx).powerOff(agentEndpoint(task));
    } catch (e) {
      ctx.log.warn({ node: task.node.uuid, err: errorMessage(e) }, 'soft power-off through the agent failed; using the BMC');
    }
    // Ironic's _wait_until_powered_off: a first look at once, then power_off_poll_attempts more, the interval apart.
    for (let i = 0; i <= a.power_off_poll_attempts; i++) {
      if (i > 0) await sleep(a.power_off_poll_interval * 1000);
      const state = await task.driver.power.getPowerState(task.driverNode()).catch(() => 'error' as const);
      if (state === 'power off') break;
    }
    await nodePowerAction(task, 'power off');
  },

  async switch_to_tenant_network(): Promise<void> {
    // Networking is flat/noop here: nothing to switch (Ironic's noop network interface does the same).
  },

  async boot_instance(_ctx: ConductorContext, task: NodeTask): Promise<void> {
    await nodePowerAction(task, 'power on');
  },
};

export const deployFlow: StepFlow = {
  kind: 'deploy',
  outOfBand: {
    ...BIOS_OUT_OF_BAND,
    'deploy.deploy': (ctx, task) => deployStep.deploy(ctx, task),
    'deploy.write_image': (ctx, task, step) => deployStep.write_image(ctx, task, step),
    'deploy.prepare_instance_boot': (ctx, task) => deployStep.prepare_instance_boot(ctx, task),
    'deploy.tear_down_agent': (ctx, task) => deployStep.tear_down_agent(ctx, task),
    'deploy.switch_to_tenant_network': () => deployStep.switch_to_tenant_network(),
    'deploy.boot_instance': (ctx, task) => deployStep.boot_instance(ctx, task),
  },
  reboot: bootIntoRamdisk,
};

export const cleanFlow: StepFlow = {
  kind: 'clean',
  outOfBand: { ...BIOS_OUT_OF_BAND },
  reboot: bootIntoRamdisk,
};

/** Power the node off after a failed deploy/clean so a half-written disk never runs; failures only logged. */
export async function powerOffAfterFailure(ctx: ConductorContext, task: NodeTask): Promise<void> {
  try {
    await nodePowerAction(task, 'power off');
  } catch (e) {
    ctx.log.warn({ node: task.node.uuid, err: errorMessage(e) }, 'could not power off the node after a failure');
  }
}

/**
 * A deploy interface built on the agent step machinery: `direct` itself, or a variant that swaps out-of-band steps
 * (the `iscsi` deploy writes the image from the conductor: orchestration/iscsi-deploy.ts).
 */
export interface AgentDeployVariant {
  name: string;
  flow: StepFlow;
  properties?: Record<string, string>;
  /** Extra checks of the node's instance_info/driver_info, at validate and at deploy start. */
  validate?(node: { instance_info: Record<string, unknown>; driver_info: Record<string, unknown> }): void;
}

/** The `direct` deploy interface of one conductor (each conductor registers its own, bound to its context). */
export function createDirectDeploy(ctx: ConductorContext,
  variant: AgentDeployVariant = { name: 'direct', flow: deployFlow }): DeployInterface {
  return {
    name: variant.name,
    properties: variant.properties ?? {},
    validate(node) {
      // Before a deploy is requested the node may have no image yet: only a present image_source is checked.
      if (node.instance_info.image_source !== undefined) {
        validateInstanceInfo(node.instance_info, imagePolicy(ctx));
        variant.validate?.(node);
      }
      imageDownloadSource(ctx, node);
    },

    async deploy(task) {
      validateInstanceInfo(task.node.instance_info, imagePolicy(ctx));
      variant.validate?.(task.node);
      imageDownloadSource(ctx, task.node);
      await task.updateInternalInfo({ deploy_steps: DIRECT_DEPLOY_STEPS, deploy_step_index: -1, deploy_pending: undefined });
      try {
        const outcome = await runFrom(ctx, task, variant.flow, 0);
        return outcome === 'wait' ? 'wait' : undefined;
      } catch (e) {
        if (ctx.config.deploy.power_off_on_deploy_failure) await powerOffAfterFailure(ctx, task);
        throw e;
      }
    },

    async tearDown(task) {
      await nodePowerAction(task, 'power off');
      await task.driver.boot.cleanUpInstance(task.driverNode());
    },

    async clean(task, opts) {
      if (opts.disableRamdisk) {
        throw new InvalidParameterValue('Cleaning without a ramdisk needs out-of-band clean steps; the direct deploy ' +
          'interface has none, so every clean step needs the agent.');
      }
      await task.updateInternalInfo({ clean_steps: undefined, clean_step_index: undefined, clean_pending: 'boot' });
      await task.save({ clean_step: {} });
      try {
        if (await isFastTrack(ctx, task)) continueOnRunningAgent(ctx, task);
        else await bootIntoRamdisk(ctx, task);
      } catch (e) {
        await powerOffAfterFailure(ctx, task);
        throw e;
      }
      return 'wait';
    },

    async abortCleaning(task) {
      await powerOffAfterFailure(ctx, task);
      await task.driver.boot.cleanUpRamdisk(task.driverNode());
    },
  };
}
