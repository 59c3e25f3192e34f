/**
 * VIFs (Ironic 1.28): attach / list / detach as the node's network interface does it.
 *
 * `flat` (Ironic's VIFPortIDMixin): a VIF is stored in a port's or portgroup's `internal_info.tenant_vif_port_id`;
 * attach picks a free port-like object (portgroups before ports, PXE-enabled ports first; a portgroup whose member
 * already carries a VIF is skipped in favour of its free members; empty portgroups never), or the one named by
 * `port_uuid` / `portgroup_uuid` (1.67). There is no Networking service here, so the VIF's physical networks are
 * the empty set (every port's physical network is allowed) and no Neutron port is updated or bound, as Ironic
 * behaves standalone.
 *
 * `noop`: attach and detach do nothing, list is always empty (Ironic's NoopNetwork).
 */
import type { ConductorContext } from '../context.js';
import { InvalidParameterValue, IronicError } from '../errors.js';
import { isUuid } from '../locks.js';
import type { NodeTask } from '../drivers/index.js';
import { listPortgroups, updatePortgroup, type PortgroupRecord } from '../store/portgroups.js';
import type { PortRecord } from '../store/types.js';

export const TENANT_VIF_KEY = 'tenant_vif_port_id';
/** Ironic's utils.is_valid_logical_name. */
const NAME_RE = /^[A-Za-z0-9\-._~]{1,255}$/;

type PortLike = { kind: 'port'; obj: PortRecord } | { kind: 'portgroup'; obj: PortgroupRecord };

function vifOf(o: { internal_info: Record<string, unknown> }): string | undefined {
  const v = o.internal_info[TENANT_VIF_KEY];
  return typeof v === 'string' ? v : undefined;
}

function isNoop(task: NodeTask): boolean {
  return task.node.network_interface === 'noop';
}

/** A VIF id as Ironic's args.uuid_or_name checks it. */
export function checkVifId(id: unknown, field = 'id'): string {
  if (typeof id !== 'string' || !(isUuid(id) || NAME_RE.test(id))) {
    throw new InvalidParameterValue(`Expected UUID or name for ${field}: ${typeof id === 'string' ? id : JSON.stringify(id)}`);
  }
  return id;
}

async function portgroupsOf(ctx: ConductorContext, nodeUuid: string): Promise<PortgroupRecord[]> {
  return listPortgroups(ctx.store.sql, { node_uuid: nodeUuid }, () => new Error('no marker'));
}

export async function listVifs(ctx: ConductorContext, ident: string): Promise<{ id: string }[]> {
  return ctx.tasks.withNodeTask(ident, { exclusive: false, purpose: 'list vifs' }, async (task) => {
    if (isNoop(task)) return [];
    const ports = task.ports;
    const groups = await portgroupsOf(ctx, task.node.uuid);
    // Ports first, then portgroups, as VIFPortIDMixin.vif_list.
    return [...ports, ...groups].map(vifOf).filter((v): v is string => v !== undefined).map((id) => ({ id }));
  });
}

function alreadyAttached(vif: string, p: PortLike): IronicError {
  return new IronicError(`Unable to attach VIF because VIF ${vif} is already attached to Ironic ` +
    `${p.kind === 'port' ? 'Port' : 'Portgroup'} ${p.obj.uuid}`, 409, 'VifAlreadyAttached');
}

/** The free port-like objects for `vif` (network/common.py _get_free_portgroups_and_ports, physnets empty). */
function freePortLikes(vif: string, ports: PortRecord[], groups: PortgroupRecord[], info: Record<string, unknown>): PortLike[] {
  const free: PortLike[] = [];
  const byGroup = new Map<string | null, PortRecord[]>();
  const unusable = new Set<string | null>();
  const portUuid = typeof info.port_uuid === 'string' ? info.port_uuid : undefined;
  const pgUuid = portUuid === undefined && typeof info.portgroup_uuid === 'string' ? info.portgroup_uuid : undefined;
  for (const p of ports) {
    if (portUuid && portUuid !== p.uuid) continue;
    const attached = vifOf(p);
    if (attached === vif) throw alreadyAttached(vif, { kind: 'port', obj: p });
    if (attached !== undefined) {
      unusable.add(p.portgroup_uuid);
      continue;
    }
    if (p.portgroup_uuid === null && !pgUuid) free.push({ kind: 'port', obj: p });
    else byGroup.set(p.portgroup_uuid, [...(byGroup.get(p.portgroup_uuid) ?? []), p]);
  }
  if (!portUuid) {
    for (const g of groups) {
      if (pgUuid && pgUuid !== g.uuid) continue;
      const attached = vifOf(g);
      if (attached === vif) throw alreadyAttached(vif, { kind: 'portgroup', obj: g });
      if (attached !== undefined) continue;
      const members = byGroup.get(g.uuid) ?? [];
      if (unusable.has(g.uuid)) {
        if (!pgUuid) free.push(...members.map((obj): PortLike => ({ kind: 'port', obj })));
      } else if (members.length) {
        free.push({ kind: 'portgroup', obj: g });
      }
    }
  }
  return free;
}

export async function attachVif(ctx: ConductorContext, ident: string, info: Record<string, unknown>): Promise<void> {
  const vif = checkVifId(info.id);
  await ctx.tasks.withNodeTask(ident, { exclusive: true, purpose: 'attach vif' }, async (task) => {
    if (isNoop(task)) return;
    const ports = task.ports;
    const groups = await portgroupsOf(ctx, task.node.uuid);
    const free = freePortLikes(vif, ports, groups, info);
    if (!free.length) {
      throw new IronicError(`Unable to attach VIF ${vif}, not enough free physical ports.`, 400, 'NoFreePhysicalPorts');
    }
    // Stable sort, best first: (physnet matches: never, with no physnets) portgroups, then PXE-enabled ports.
    const rank = (p: PortLike): number => (p.kind === 'portgroup' ? 2 : 0) + (p.kind === 'portgroup' || p.obj.pxe_enabled ? 1 : 0);
    const chosen = [...free].sort((a, b) => rank(b) - rank(a))[0] as PortLike;
    const internal = { ...chosen.obj.internal_info, [TENANT_VIF_KEY]: vif };
    if (chosen.kind === 'port') await ctx.store.updatePort(chosen.obj.uuid, { internal_info: internal });
    else await updatePortgroup(ctx.store.sql, chosen.obj.uuid, { internal_info: internal });
  });
}

export async function detachVif(ctx: ConductorContext, ident: string, vifId: string): Promise<void> {
  const vif = checkVifId(vifId, 'vif_id');
  await ctx.tasks.withNodeTask(ident, { exclusive: true, purpose: 'detach vif' }, async (task) => {
    if (isNoop(task)) return;
    const ports = task.ports;
    const groups = await portgroupsOf(ctx, task.node.uuid);
    // Portgroups first, then ports, as VIFPortIDMixin._get_port_like_obj_by_vif_id.
    const g = groups.find((x) => vifOf(x) === vif);
    const p = g ? undefined : ports.find((x) => vifOf(x) === vif);
    if (!g && !p) {
      throw new IronicError(`Unable to detach VIF ${vif} from node ${task.node.uuid} because it is not attached to it.`, 400,
        'VifNotAttached');
    }
    const target = (g ?? p) as PortgroupRecord | PortRecord;
    const internal = { ...target.internal_info };
    delete internal[TENANT_VIF_KEY];
    const extra = { ...target.extra };
    delete extra.vif_port_id;
    if (g) await updatePortgroup(ctx.store.sql, g.uuid, { internal_info: internal, extra });
    else if (p) await ctx.store.updatePort(p.uuid, { internal_info: internal, extra });
  });
}

/** Ironic 1.67: a body naming both is refused before the conductor sees it. */
export function checkAttachBody(info: Record<string, unknown>, minor: number): void {
  if (minor >= 67 && 'port_uuid' in info && 'portgroup_uuid' in info) {
    throw new IronicError('Cannot specify both port_uuid and portgroup_uuid', 400, 'Invalid');
  }
}
