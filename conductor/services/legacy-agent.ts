/**
 * The agent routes of Ironic before API 1.22, when lookup and heartbeat were vendor passthru methods of the
 * agent vendor interface: POST /v1/drivers/{driver}/vendor_passthru/lookup and
 * POST /v1/nodes/{node}/vendor_passthru/heartbeat. Their bodies (older ironic-python-agent releases) are
 * translated onto today's lookup and heartbeat, so the same token rules hold: the first lookup issues the token,
 * every heartbeat must carry it.
 */
import type { ConductorContext } from '../context.js';
import { InvalidParameterValue } from '../errors.js';
import { HeartbeatBodySchema, type HeartbeatBody } from '../../protocol/lookup.js';
import { lookup, type LookupResult } from './agent.js';

/** Lookups on the legacy route behave as at this microversion (the token is issued). */
const LEGACY_AS_MINOR = 62;
const DRIVER_NAME = /^[A-Za-z0-9_.-]{1,255}$/;

/**
 * MACs from the body: version 2 (`inventory.interfaces[].mac_address`) or version 1
 * (`hardware: [{type: "mac_address", id}]`), as the old agents sent them.
 */
export function legacyLookupMacs(body: Record<string, unknown>): string[] {
  const macs: string[] = [];
  const inv = body.inventory;
  if (inv && typeof inv === 'object' && !Array.isArray(inv)) {
    const ifaces = (inv as { interfaces?: unknown }).interfaces;
    if (Array.isArray(ifaces)) {
      for (const i of ifaces) {
        const mac = i && typeof i === 'object' ? (i as { mac_address?: unknown }).mac_address : undefined;
        if (typeof mac === 'string') macs.push(mac);
      }
    }
  }
  if (Array.isArray(body.hardware)) {
    for (const h of body.hardware) {
      if (h && typeof h === 'object' && (h as { type?: unknown }).type === 'mac_address') {
        const id = (h as { id?: unknown }).id;
        if (typeof id === 'string') macs.push(id);
      }
    }
  }
  return macs;
}

export async function legacyLookup(ctx: ConductorContext, driver: string, body: Record<string, unknown>):
  Promise<LookupResult> {
  if (!DRIVER_NAME.test(driver)) throw new InvalidParameterValue(`Invalid driver name ${JSON.stringify(driver)}.`);
  if (body.version !== undefined && body.version !== '1' && body.version !== '2') {
    throw new InvalidParameterValue(`Unknown lookup payload version: ${JSON.stringify(body.version)}`);
  }
  const nodeUuid = body.node_uuid;
  if (nodeUuid !== undefined && nodeUuid !== null && typeof nodeUuid !== 'string') {
    throw new InvalidParameterValue('"node_uuid" must be a string');
  }
  const macs = legacyLookupMacs(body);
  return lookup(ctx, macs.join(','), (nodeUuid as string | null | undefined) ?? undefined, LEGACY_AS_MINOR);
}

/** `{agent_url}` (plus the token and version a newer agent adds) → today's heartbeat body. */
export function legacyHeartbeatBody(body: Record<string, unknown>): HeartbeatBody {
  const translated: Record<string, unknown> = {
    callback_url: body.agent_url,
    agent_token: body.agent_token,
    // The old agents sent no version; "0" keeps the heartbeat acceptable without claiming features.
    agent_version: body.agent_version ?? '0',
  };
  if (body.agent_verify_ca !== undefined) translated.agent_verify_ca = body.agent_verify_ca;
  const extra = Object.keys(body).filter((k) => !['agent_url', 'agent_token', 'agent_version', 'agent_verify_ca'].includes(k));
  if (extra.length) throw new InvalidParameterValue(`Invalid heartbeat: unexpected field(s) ${extra.join(', ')}`);
  if (typeof body.agent_url !== 'string' || !body.agent_url) {
    throw new InvalidParameterValue('Invalid heartbeat: "agent_url" is required.');
  }
  const parsed = HeartbeatBodySchema.strict().safeParse(translated);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidParameterValue(`Invalid heartbeat: ${issue ? `${issue.path.join('.') || 'body'}: ${issue.message}` : 'bad body'}`);
  }
  return parsed.data as HeartbeatBody;
}
