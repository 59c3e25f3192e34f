/**
 * The `agent` RAID interface (Ironic's AgentRAID): target_raid_config is checked against Ironic's RAID schema
 * (ironic/drivers/raid_config_schema.json: the same properties, enums and required keys), the raid steps
 * (clean: create_configuration, delete_configuration; deploy: apply_configuration, delete_configuration) are the
 * agent's software-RAID steps, and what the agent reports back becomes the node's raid_config
 * (`recordRaidResult`, called by the step runner when an agent step finishes).
 *
 * Steps of an interface the node does not have are never run: `agentStepAllowed` drops the agent's raid steps
 * unless the node's raid_interface is `agent`, and `checkRequestedSteps` refuses a manual clean/deploy step for an
 * interface the node lacks before anything starts.
 */
import { z } from 'zod';
import { InvalidParameterValue } from '../errors.js';
import type { RaidInterface, NodeTask } from './index.js';

const LOGICAL_DISK_PROPERTIES: Record<string, string> = {
  raid_level: "RAID level for the logical disk. Valid values are 'JBOD', '0', '1', '2', '5', '6', '1+0', '5+0' and '6+0'. Required.",
  size_gb: "Size in GiB (Integer) for the logical disk. Use 'MAX' as size_gb if this logical disk is supposed to use the rest of the space available. Required.",
  volume_name: 'Name of the volume to be created. If this is not specified, it will be auto-generated. Optional.',
  is_root_volume: 'Specifies whether this disk is a root volume. By default, this is False. Optional.',
  share_physical_disks: 'Specifies whether other logical disks can share physical disks with this logical disk. By default, this is False. Optional.',
  disk_type: "The type of disk preferred. Valid values are 'hdd' and 'ssd'. If this is not specified, disk type will not be a selection criterion for choosing backing physical disks. Optional.",
  interface_type: "The interface type of disk. Valid values are 'sata', 'scsi' and 'sas'. If this is not specified, interface type will not be a selection criterion for choosing backing physical disks. Optional.",
  number_of_physical_disks: 'Number of physical disks to use for this logical disk. By default, the driver uses the minimum number of disks required for that RAID level. Optional.',
  controller: 'Controller to use for this logical disk. If not specified, the driver will choose a suitable RAID controller on the bare metal node. Optional.',
  physical_disks: 'The physical disks to use for this logical disk. If not specified, the driver will choose suitable physical disks to use. Optional.',
};

const LogicalDisk = z.object({
  raid_level: z.enum(['JBOD', '0', '1', '2', '5', '6', '1+0', '5+0', '6+0']),
  size_gb: z.union([z.number().int().min(0), z.literal('MAX')]),
  volume_name: z.string().optional(),
  is_root_volume: z.boolean().optional(),
  share_physical_disks: z.boolean().optional(),
  disk_type: z.enum(['hdd', 'ssd']).optional(),
  interface_type: z.enum(['sata', 'scsi', 'sas']).optional(),
  number_of_physical_disks: z.number().int().min(1).optional(),
  controller: z.string().optional(),
  physical_disks: z.union([z.array(z.string()), z.array(z.record(z.string(), z.unknown())).min(2)]).optional(),
}).strict().refine((d) => d.physical_disks === undefined || d.controller !== undefined,
  { message: "'controller' is a dependency of 'physical_disks'" });

const RaidConfig = z.object({ logical_disks: z.array(LogicalDisk).min(1) }).strict();

/** Validates against Ironic's schema and its one-root-volume rule; InvalidParameterValue names the problem. */
export function validateTargetRaidConfig(config: unknown): void {
  const r = RaidConfig.safeParse(config);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new InvalidParameterValue(`RAID config validation error: ${i ? `${i.path.join('.') || 'config'}: ${i.message}` : 'invalid'}`);
  }
  const roots = r.data.logical_disks.filter((d) => d.is_root_volume).length;
  if (roots > 1) {
    throw new InvalidParameterValue(`Raid config cannot have more than one root volume. ${roots} root volumes were specified.`);
  }
}

export function logicalDiskProperties(): Record<string, string> {
  return { ...LOGICAL_DISK_PROPERTIES };
}

export const agentRaid: RaidInterface & { logicalDiskProperties(): Record<string, string> } = {
  name: 'agent',
  validate() {},
  validateRaidConfig: validateTargetRaidConfig,
  logicalDiskProperties,
};

/** Interfaces whose steps an agent may offer, and the implementation a node needs for them to run. */
const AGENT_STEP_INTERFACES: Record<string, string> = { raid: 'agent' };

/** False for an agent step of an interface the node does not have through the agent (e.g. raid with no-raid). */
export function agentStepAllowed(node: Record<string, unknown>, stepInterface: string): boolean {
  const needs = AGENT_STEP_INTERFACES[stepInterface];
  return needs === undefined || node[`${stepInterface}_interface`] === needs;
}

/**
 * Before a manual clean or deploy with explicit steps: a step for an interface the node doesn't have (its
 * `<interface>_interface` is a no-* one, or raid without `agent`) is refused, so nothing starts.
 */
export function checkRequestedSteps(node: Record<string, unknown>, steps: readonly { interface?: unknown; step?: unknown }[]): void {
  for (const s of steps) {
    if (typeof s?.interface !== 'string') continue;
    const impl = node[`${s.interface}_interface`];
    if (typeof impl === 'string' && impl.startsWith('no-')) {
      throw new InvalidParameterValue(`Step ${s.interface}.${String(s.step)} refused: node ${String(node.uuid)} has no ` +
        `${s.interface} interface (${s.interface}_interface is ${impl}).`);
    }
    if (s.interface === 'raid' && typeof s.step === 'string' && s.step === 'create_configuration') {
      const target = node.target_raid_config as { logical_disks?: unknown[] } | undefined;
      if (impl === 'agent' && !(target?.logical_disks?.length)) {
        throw new InvalidParameterValue(`Step raid.create_configuration refused: node ${String(node.uuid)} has no target_raid_config ` +
          '(set one with `baremetal node set --target-raid-config`).');
      }
    }
  }
}

/**
 * After an agent step finished: create_configuration / apply_configuration record the agent's result as
 * raid_config (with last_updated, the root volume's size and RAID level in properties, as Ironic's
 * update_raid_info); delete_configuration empties it.
 */
export async function recordRaidResult(task: NodeTask, step: { interface: string; step: string },
  commandResult: Record<string, unknown> | null | undefined, kind: 'clean' | 'deploy'): Promise<void> {
  if (step.interface !== 'raid' || task.node.raid_interface !== 'agent') return;
  if (step.step === 'delete_configuration') {
    await task.save({ raid_config: {} });
    return;
  }
  if (step.step !== 'create_configuration' && step.step !== 'apply_configuration') return;
  const result = commandResult?.[`${kind}_result`];
  if (!result || typeof result !== 'object' || Array.isArray(result)) {
    throw new InvalidParameterValue(`Agent ramdisk didn't return a proper command result while building RAID on ${task.node.uuid}.`);
  }
  const current = { ...(result as Record<string, unknown>), last_updated: new Date().toISOString().replace('T', ' ').replace('Z', '') };
  const reported = (current as Record<string, unknown>).logical_disks;
  const lds = Array.isArray(reported) ? (reported as Record<string, unknown>[]) : [];
  const root = lds.find((d) => d.is_root_volume === true);
  const props = { ...task.node.properties };
  if (root) {
    if (typeof root.size_gb === 'number') props.local_gb = root.size_gb;
    const caps = typeof props.capabilities === 'string' && props.capabilities ? props.capabilities.split(',') : [];
    const kept = caps.filter((c) => !c.startsWith('raid_level:'));
    props.capabilities = [...kept, `raid_level:${String(root.raid_level)}`].join(',');
  }
  await task.save({ raid_config: current, ...(root ? { properties: props } : {}) });
}
