/**
 * Deploy templates (API 1.55): validation as Ironic's TEMPLATE_SCHEMA (name a trait: CUSTOM_... or a standard
 * one; 1+ steps of {interface: power|management|deploy|bios|raid, step, args, priority >= 0}; no two steps with
 * the same interface and step), and the deploy-time lookup of the templates matching a node's instance traits.
 */
import { randomUUID } from 'node:crypto';
import type { ConductorContext } from '../context.js';
import { Conflict, InvalidParameterValue, NotFound } from '../errors.js';
import { isUuid } from '../locks.js';
import {
  createDeployTemplate, deleteDeployTemplate, deployTemplatesByNames, getDeployTemplate, updateDeployTemplate,
  type DeployTemplateFields, type DeployTemplateRecord, type DeployTemplateStep,
} from '../store/deploy-templates.js';
import { DuplicateError, type Json, type NodeRecord } from '../store/types.js';
import { applyJsonPatch, type PatchOp } from './jsonpatch.js';
import { isValidTrait } from './traits.js';

export const DEPLOY_STEP_INTERFACES = ['power', 'management', 'deploy', 'bios', 'raid'] as const;
const TEMPLATE_KEYS = ['description', 'extra', 'name', 'steps', 'uuid'];
const STEP_KEYS = ['args', 'interface', 'priority', 'step'];
export const TEMPLATE_PATCHABLE = ['extra', 'name', 'steps', 'description'];

function schemaError(msg: string): InvalidParameterValue {
  return new InvalidParameterValue(`Schema error for template: ${msg}`);
}

function validateStep(raw: unknown): DeployTemplateStep {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw schemaError(`${JSON.stringify(raw)} is not of type 'object'`);
  const s = raw as Record<string, unknown>;
  for (const k of STEP_KEYS) if (!(k in s)) throw schemaError(`'${k}' is a required property`);
  const extra = Object.keys(s).filter((k) => !STEP_KEYS.includes(k));
  if (extra.length) throw schemaError(`Additional properties are not allowed (${extra.map((k) => `'${k}'`).join(', ')} ${extra.length > 1 ? 'were' : 'was'} unexpected)`);
  if (typeof s.interface !== 'string' || !(DEPLOY_STEP_INTERFACES as readonly string[]).includes(s.interface)) {
    throw schemaError(`${JSON.stringify(s.interface)} is not one of ${JSON.stringify(DEPLOY_STEP_INTERFACES).replace(/"/g, "'")}`);
  }
  if (typeof s.step !== 'string' || s.step.length < 1) throw schemaError(`${JSON.stringify(s.step)} is too short`);
  if (!s.args || typeof s.args !== 'object' || Array.isArray(s.args)) throw schemaError(`${JSON.stringify(s.args)} is not of type 'object'`);
  let priority: number;
  if (typeof s.priority === 'number' && Number.isInteger(s.priority) && s.priority >= 0) priority = s.priority;
  else if (typeof s.priority === 'string' && /^[0-9]+$/.test(s.priority)) priority = Number(s.priority);
  else throw schemaError(`${JSON.stringify(s.priority)} is not valid under any of the given schemas`);
  return { interface: s.interface, step: s.step, args: s.args as Json, priority };
}

/** TEMPLATE_VALIDATOR: the schema, then duplicate steps, then the UUID. */
export function validateTemplate(body: Record<string, unknown>): DeployTemplateFields & { uuid?: string } {
  for (const k of ['steps', 'name']) if (!(k in body)) throw schemaError(`'${k}' is a required property`);
  const extra = Object.keys(body).filter((k) => !TEMPLATE_KEYS.includes(k));
  if (extra.length) throw schemaError(`Additional properties are not allowed (${extra.map((k) => `'${k}'`).join(', ')} ${extra.length > 1 ? 'were' : 'was'} unexpected)`);
  if (!isValidTrait(body.name)) throw schemaError(`${JSON.stringify(body.name)} is not valid under any of the given schemas`);
  const d = body.description;
  if (d !== undefined && d !== null && (typeof d !== 'string' || d.length > 255)) {
    throw schemaError(typeof d === 'string' ? `'${d}' is too long` : `${JSON.stringify(d)} is not of type 'string', 'null'`);
  }
  const ex = body.extra;
  if (ex !== undefined && ex !== null && (typeof ex !== 'object' || Array.isArray(ex))) {
    throw schemaError(`${JSON.stringify(ex)} is not of type 'object', 'null'`);
  }
  if (!Array.isArray(body.steps)) throw schemaError(`${JSON.stringify(body.steps)} is not of type 'array'`);
  if (body.steps.length < 1) throw schemaError('[] is too short');
  const steps = body.steps.map(validateStep);
  const seen = new Map<string, number>();
  for (const s of steps) seen.set(`${s.interface}\u0000${s.step}`, (seen.get(`${s.interface}\u0000${s.step}`) ?? 0) + 1);
  const dups = [...seen].filter(([, n]) => n > 1).map(([k]) => {
    const [i, st] = k.split('\u0000');
    return `interface: ${String(i)}, step: ${String(st)}`;
  });
  if (dups.length) {
    throw new InvalidParameterValue('Deploy template invalid: Duplicate deploy steps. A deploy template cannot have multiple ' +
      `deploy steps with the same interface and step. Duplicates: ${dups.join('; ')}.`);
  }
  const u = body.uuid;
  if (u !== undefined && u !== null && (typeof u !== 'string' || !isUuid(u))) {
    throw new InvalidParameterValue(`Expected a UUID for uuid: ${String(u)}`);
  }
  return {
    name: body.name, description: (d as string | null | undefined) ?? null, steps, extra: (ex as Json | null | undefined) ?? {},
    ...(typeof u === 'string' ? { uuid: u.toLowerCase() } : {}),
  };
}

export async function findDeployTemplate(c: ConductorContext, ident: string): Promise<DeployTemplateRecord> {
  const t = isUuid(ident) ? await getDeployTemplate(c.store.sql, 'uuid', ident.toLowerCase())
    : await getDeployTemplate(c.store.sql, 'name', ident);
  if (!t) throw new NotFound(`Deploy template ${ident} could not be found.`);
  return t;
}

function duplicate(e: unknown, name: string, uuid: string): unknown {
  if (!(e instanceof DuplicateError)) return e;
  return e.field === 'name' ? new Conflict(`A deploy template with name ${name} already exists.`)
    : new Conflict(`A deploy template with UUID ${uuid} already exists.`);
}

export async function createTemplate(c: ConductorContext, body: Record<string, unknown>): Promise<DeployTemplateRecord> {
  const f = validateTemplate(body);
  const uuid = f.uuid ?? randomUUID();
  try {
    return await createDeployTemplate(c.store.sql, { ...f, uuid });
  } catch (e) {
    throw duplicate(e, f.name, uuid);
  }
}

export async function patchTemplate(c: ConductorContext, ident: string, ops: PatchOp[]): Promise<DeployTemplateRecord> {
  for (const op of ops) {
    const root = op.path.split('/')[1] ?? '';
    if (!TEMPLATE_PATCHABLE.includes(root)) {
      throw new InvalidParameterValue(`Cannot patch ${op.path}. Only the following can be updated: ${TEMPLATE_PATCHABLE.join(', ')}`);
    }
  }
  const t = await findDeployTemplate(c, ident);
  const doc = applyJsonPatch({ name: t.name, steps: t.steps, extra: t.extra,
    ...(t.description !== null ? { description: t.description } : {}) } as Record<string, unknown>, ops);
  const f = validateTemplate(doc);
  try {
    return await updateDeployTemplate(c.store.sql, t.uuid, f);
  } catch (e) {
    throw duplicate(e, f.name, t.uuid);
  }
}

export async function deleteTemplate(c: ConductorContext, ident: string): Promise<void> {
  const t = await findDeployTemplate(c, ident);
  if (!(await deleteDeployTemplate(c.store.sql, t.uuid))) throw new NotFound(`Deploy template ${ident} could not be found.`);
}

/** Ironic's _get_deployment_templates: the templates named by the node's instance_info.traits. */
export async function templatesForNode(c: ConductorContext, node: NodeRecord): Promise<DeployTemplateRecord[]> {
  const traits = node.instance_info.traits;
  if (!Array.isArray(traits) || traits.length === 0) return [];
  return deployTemplatesByNames(c.store.sql, traits.filter((t): t is string => typeof t === 'string'));
}
