/**
 * Registers the `agent` inspect interface of one conductor (it needs the conductor's context: API URL, config)
 * and checks the built-in inspection rules once at start-up. The `redfish` one is registered with the other
 * Redfish interfaces (conductor/drivers/real.ts) to share their session pool.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, errorMessage } from '../../common/errors.js';
import { parseJsonSafe } from '../../common/safe-json.js';
import type { ConductorContext } from '../context.js';
import { createAgentInspect } from './agent-inspect.js';
import { InspectionRuleSchema } from './config.js';
import { validateRules } from './rules.js';

export function registerInspectInterfaces(ctx: ConductorContext): void {
  const ic = ctx.config.inspector;
  if (ic.rules_file) {
    let parsed: unknown;
    try {
      parsed = parseJsonSafe(readFileSync(ic.rules_file, 'utf8'), { maxDepth: 32, maxStringLength: 1 << 20 });
    } catch (e) {
      throw new ConfigError(`inspector.rules_file ${ic.rules_file}: ${errorMessage(e)}`);
    }
    const r = InspectionRuleSchema.array().safeParse(parsed);
    if (!r.success) throw new ConfigError(`inspector.rules_file ${ic.rules_file}: ${r.error.issues[0]?.message ?? 'invalid'}`);
    ic.rules.push(...r.data);
  }
  try {
    validateRules(ic.rules);
  } catch (e) {
    throw new ConfigError(errorMessage(e));
  }
  ctx.drivers.registerInterface('inspect', createAgentInspect(ctx));
}
