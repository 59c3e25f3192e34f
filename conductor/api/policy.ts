/**
 * Ironic 21.4's default API policy (ironic/common/policy.py), evaluated on Keystone credentials: the check strings
 * are carried over as predicates, one per rule name we enforce. The facts behind them:
 *
 * - Personas: SYSTEM_ADMIN = admin + system scope; SYSTEM_MEMBER = member + system scope, or the service_role rule
 *   (role `service` in the project named service_project_name); SYSTEM_READER = reader or service + system scope, or
 *   service_role. PROJECT_MEMBER/READER = the role in the node's owner or lessee project; PROJECT_OWNER_* and
 *   PROJECT_LESSEE_* = the role in that one project; SYSTEM_SERVICE = service + system; PROJECT_SERVICE = service in
 *   the owner project. Keystone puts implied roles in the token (admin implies member implies reader).
 * - With oslo.policy's enforce_new_defaults false (21.4's default) each rule also accepts its deprecated pre-RBAC
 *   rule: `rule:is_admin` (role admin or administrator in any scope, or baremetal_admin in a project named demo or
 *   baremetal of the default domain) everywhere, and `rule:is_observer` (observer or baremetal_observer there) for
 *   reads.
 * - A project-scoped caller who may not see a node gets 404 NodeNotFound for it (its existence is concealed); a
 *   system-scoped one gets 403. Seeing a node is checked before the action's own rule (403 when that fails).
 * - Lists: `list_all` (SYSTEM_READER) sees everything; otherwise `list` (API_READER: reader or service role) sees
 *   the nodes whose owner or lessee is the caller's project; asking for another project's nodes is 403.
 * - Readers who are not system readers see a node's last_error, reservation, driver_internal_info and driver_info
 *   redacted unless they are owner readers (baremetal:node:get:filter_threshold and the get:* rules).
 */
import type { KeystoneCredentials } from './keystone.js';

export interface PolicyTarget {
  owner?: string | null;
  lessee?: string | null;
  /** An allocation's owner (allocation rules). */
  allocationOwner?: string | null;
}

export interface PolicySettings {
  service_project_name: string;
  enforce_new_defaults: boolean;
}

type Check = (c: KeystoneCredentials, t: PolicyTarget, s: PolicySettings) => boolean;

const role = (c: KeystoneCredentials, r: string): boolean => c.roles.includes(r);
const inProject = (c: KeystoneCredentials, p: string | null | undefined): boolean => !!c.projectId && !!p && c.projectId === p;

const serviceRole: Check = (c, _t, s) => role(c, 'service') && c.projectName === s.service_project_name;
const systemAdmin: Check = (c) => role(c, 'admin') && c.system;
const systemMember: Check = (c, t, s) => (role(c, 'member') && c.system) || serviceRole(c, t, s);
const systemReader: Check = (c, t, s) => (role(c, 'reader') && c.system) || (role(c, 'service') && c.system) || serviceRole(c, t, s);
const systemService: Check = (c) => role(c, 'service') && c.system;
const projectService: Check = (c, t) => role(c, 'service') && inProject(c, t.owner);
const projectX = (r: string): Check => (c, t) => role(c, r) && (inProject(c, t.owner) || inProject(c, t.lessee));
const ownerX = (r: string): Check => (c, t) => role(c, r) && inProject(c, t.owner);
const lesseeX = (r: string): Check => (c, t) => role(c, r) && inProject(c, t.lessee);
const allocOwnerX = (r: string): Check => (c, t) => role(c, r) && inProject(c, t.allocationOwner);
const any = (...checks: Check[]): Check => (c, t, s) => checks.some((k) => k(c, t, s));

const SYSTEM_OR_PROJECT_MEMBER = any(systemMember, projectX('member'), systemService);
const SYSTEM_OR_PROJECT_READER = any(systemReader, projectX('reader'), projectService);
const SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN = any(systemMember, systemService, ownerX('member'), lesseeX('admin'),
  lesseeX('manager'), projectService);
const SYSTEM_ADMIN_OR_OWNER_ADMIN = any(systemAdmin, systemService, ownerX('admin'), ownerX('manager'), projectService);
const SYSTEM_MEMBER_OR_OWNER_ADMIN = any(systemMember, systemService, ownerX('admin'), ownerX('manager'), projectService);
const SYSTEM_MEMBER_OR_OWNER_MEMBER = any(systemMember, systemService, ownerX('member'), projectService);
const SYSTEM_OR_OWNER_READER = any(systemReader, systemService, ownerX('reader'), projectService);
const SYSTEM_MEMBER_OR_OWNER_LESSEE_ADMIN = any(systemMember, systemService, ownerX('admin'), ownerX('manager'),
  lesseeX('admin'), lesseeX('manager'), projectService);
const API_READER: Check = (c) => role(c, 'reader') || role(c, 'service');
const SYSTEM_ADMIN_ONLY = systemAdmin;
const PROJECT_ADMIN: Check = ownerX('admin');
const ALLOCATION_MEMBER = any(systemMember, allocOwnerX('member'));
const ALLOCATION_READER = any(systemReader, allocOwnerX('reader'));
const ALLOCATION_CREATOR: Check = (c, t, s) => systemMember(c, t, s) || role(c, 'member');

/** The deprecated rules 21.4 still ORs in (enforce_new_defaults false). */
const legacyMember = (c: KeystoneCredentials): boolean =>
  (c.projectDomainId === 'default' || c.projectDomainId === null) && (c.projectName === 'demo' || c.projectName === 'baremetal');
const legacyAdmin = (c: KeystoneCredentials): boolean =>
  role(c, 'admin') || role(c, 'administrator') || (legacyMember(c) && role(c, 'baremetal_admin'));
const legacyObserver = (c: KeystoneCredentials): boolean =>
  legacyMember(c) && (role(c, 'observer') || role(c, 'baremetal_observer'));

interface RuleDef { check: Check; legacy: 'admin' | 'admin_or_observer' | 'none' }
const R = (check: Check, legacy: RuleDef['legacy'] = 'admin'): RuleDef => ({ check, legacy });
const READ = 'admin_or_observer' as const;

/** Rule name -> default check string (as a predicate) and its deprecated fallback. */
export const RULES: Readonly<Record<string, RuleDef>> = {
  'baremetal:node:create': R(any(systemAdmin, systemService)),
  'baremetal:node:create:self_owned_node': R((c) => role(c, 'admin') || role(c, 'service')),
  'baremetal:node:list': R(API_READER, READ),
  'baremetal:node:list_all': R(systemReader, READ),
  'baremetal:node:get': R(SYSTEM_OR_PROJECT_READER, READ),
  'baremetal:node:get:filter_threshold': R(systemReader, READ),
  'baremetal:node:get:last_error': R(SYSTEM_OR_OWNER_READER, READ),
  'baremetal:node:get:reservation': R(SYSTEM_OR_OWNER_READER, READ),
  'baremetal:node:get:driver_internal_info': R(SYSTEM_OR_OWNER_READER, READ),
  'baremetal:node:get:driver_info': R(SYSTEM_OR_OWNER_READER, READ),
  'baremetal:node:update:driver_info': R(SYSTEM_MEMBER_OR_OWNER_MEMBER),
  'baremetal:node:update:properties': R(SYSTEM_MEMBER_OR_OWNER_MEMBER),
  'baremetal:node:update:chassis_uuid': R(SYSTEM_ADMIN_ONLY),
  'baremetal:node:update:instance_uuid': R(SYSTEM_MEMBER_OR_OWNER_MEMBER),
  'baremetal:node:update:lessee': R(SYSTEM_MEMBER_OR_OWNER_MEMBER),
  'baremetal:node:update:owner': R(systemMember),
  'baremetal:node:update:driver_interfaces': R(SYSTEM_MEMBER_OR_OWNER_ADMIN),
  'baremetal:node:update:network_data': R(SYSTEM_MEMBER_OR_OWNER_MEMBER),
  'baremetal:node:update:conductor_group': R(systemMember),
  'baremetal:node:update:name': R(SYSTEM_MEMBER_OR_OWNER_MEMBER),
  'baremetal:node:update:retired': R(SYSTEM_MEMBER_OR_OWNER_MEMBER),
  'baremetal:node:update:shard': R(SYSTEM_ADMIN_ONLY),
  'baremetal:node:update': R(SYSTEM_OR_PROJECT_MEMBER),
  'baremetal:node:update_extra': R(SYSTEM_OR_PROJECT_MEMBER),
  'baremetal:node:update_instance_info': R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN),
  'baremetal:node:update_owner_provisioned': R(SYSTEM_ADMIN_ONLY),
  'baremetal:node:disable_cleaning': R(SYSTEM_ADMIN_ONLY),
  'baremetal:node:delete': R(SYSTEM_ADMIN_ONLY),
  'baremetal:node:delete:self_owned_node': R(PROJECT_ADMIN),
  'baremetal:node:validate': R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN),
  'baremetal:node:set_maintenance': R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN),
  'baremetal:node:clear_maintenance': R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN),
  'baremetal:node:get_boot_device': R(SYSTEM_MEMBER_OR_OWNER_ADMIN),
  'baremetal:node:set_boot_device': R(SYSTEM_MEMBER_OR_OWNER_ADMIN),
  'baremetal:node:get_indicator_state': R(SYSTEM_OR_PROJECT_READER, READ),
  'baremetal:node:set_indicator_state': R(SYSTEM_MEMBER_OR_OWNER_MEMBER),
  'baremetal:node:inject_nmi': R(SYSTEM_MEMBER_OR_OWNER_ADMIN),
  'baremetal:node:get_states': R(SYSTEM_OR_PROJECT_READER, READ),
  'baremetal:node:set_power_state': R(SYSTEM_OR_PROJECT_MEMBER),
  'baremetal:node:set_boot_mode': R(SYSTEM_OR_PROJECT_MEMBER),
  'baremetal:node:set_secure_boot': R(SYSTEM_OR_PROJECT_MEMBER),
  'baremetal:node:set_provision_state': R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN),
  'baremetal:node:set_raid_state': R(SYSTEM_MEMBER_OR_OWNER_MEMBER),
  'baremetal:node:get_console': R(SYSTEM_MEMBER_OR_OWNER_MEMBER),
  'baremetal:node:set_console_state': R(SYSTEM_MEMBER_OR_OWNER_MEMBER),
  'baremetal:node:vif:list': R(SYSTEM_OR_PROJECT_READER, READ),
  'baremetal:node:vif:attach': R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN),
  'baremetal:node:vif:detach': R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN),
  'baremetal:node:traits:list': R(SYSTEM_OR_PROJECT_READER, READ),
  'baremetal:node:traits:set': R(SYSTEM_MEMBER_OR_OWNER_ADMIN),
  'baremetal:node:traits:delete': R(SYSTEM_MEMBER_OR_OWNER_ADMIN),
  'baremetal:node:bios:get': R(SYSTEM_OR_PROJECT_READER, READ),
  'baremetal:node:history:get': R(SYSTEM_OR_OWNER_READER, READ),
  'baremetal:node:inventory:get': R(SYSTEM_OR_OWNER_READER, READ),
  'baremetal:node:vendor_passthru': R(SYSTEM_ADMIN_ONLY),
  'baremetal:shards:get': R(systemReader, READ),
  'baremetal:port:get': R(SYSTEM_OR_PROJECT_READER, READ),
  'baremetal:port:list': R(API_READER, READ),
  'baremetal:port:list_all': R(systemReader, READ),
  'baremetal:port:create': R(SYSTEM_ADMIN_OR_OWNER_ADMIN),
  'baremetal:port:delete': R(SYSTEM_ADMIN_OR_OWNER_ADMIN),
  'baremetal:port:update': R(SYSTEM_MEMBER_OR_OWNER_ADMIN),
  'baremetal:portgroup:get': R(SYSTEM_OR_PROJECT_READER, READ),
  'baremetal:portgroup:list': R(API_READER, READ),
  'baremetal:portgroup:list_all': R(systemReader, READ),
  'baremetal:portgroup:create': R(SYSTEM_ADMIN_OR_OWNER_ADMIN),
  'baremetal:portgroup:delete': R(SYSTEM_ADMIN_OR_OWNER_ADMIN),
  'baremetal:portgroup:update': R(SYSTEM_MEMBER_OR_OWNER_ADMIN),
  'baremetal:chassis:get': R(systemReader, READ),
  'baremetal:chassis:create': R(SYSTEM_ADMIN_ONLY),
  'baremetal:chassis:delete': R(SYSTEM_ADMIN_ONLY),
  'baremetal:chassis:update': R(systemMember),
  'baremetal:driver:get': R(systemReader, READ),
  'baremetal:driver:get_properties': R(systemReader, READ),
  'baremetal:driver:get_raid_logical_disk_properties': R(systemReader, READ),
  'baremetal:driver:vendor_passthru': R(SYSTEM_ADMIN_ONLY),
  'baremetal:volume:list_all': R(systemReader, READ),
  'baremetal:volume:list': R(API_READER, READ),
  'baremetal:volume:get': R(SYSTEM_OR_PROJECT_READER, READ),
  'baremetal:volume:create': R(SYSTEM_MEMBER_OR_OWNER_LESSEE_ADMIN),
  'baremetal:volume:delete': R(SYSTEM_MEMBER_OR_OWNER_LESSEE_ADMIN),
  'baremetal:volume:update': R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN),
  'baremetal:conductor:get': R(systemReader, READ),
  'baremetal:allocation:get': R(ALLOCATION_READER, READ),
  'baremetal:allocation:list': R(API_READER, READ),
  'baremetal:allocation:list_all': R(systemReader, READ),
  'baremetal:allocation:create': R(ALLOCATION_CREATOR),
  'baremetal:allocation:create_restricted': R(systemMember),
  'baremetal:allocation:delete': R(ALLOCATION_MEMBER),
  'baremetal:allocation:update': R(ALLOCATION_MEMBER),
  'baremetal:events:post': R(SYSTEM_ADMIN_ONLY),
  'baremetal:deploy_template:get': R(systemReader, READ),
  'baremetal:deploy_template:create': R(SYSTEM_ADMIN_ONLY),
  'baremetal:deploy_template:delete': R(SYSTEM_ADMIN_ONLY),
  'baremetal:deploy_template:update': R(SYSTEM_ADMIN_ONLY),
};

/** True when the rule allows these credentials on this target; an unknown rule name allows nobody. */
export function checkRule(name: string, c: KeystoneCredentials, t: PolicyTarget, s: PolicySettings): boolean {
  const rule = RULES[name];
  if (!rule) return false;
  if (rule.check(c, t, s)) return true;
  if (s.enforce_new_defaults || rule.legacy === 'none') return false;
  return legacyAdmin(c) || (rule.legacy === READ && legacyObserver(c));
}
