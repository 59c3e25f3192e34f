/**
 * `get_<kind>_steps` and `execute_<kind>_step` as extension commands over hardware-managers/steps.ts (kept in the
 * agent so hardware-managers/ does not import the agent's command types).
 */
import { z } from 'zod';
import { setHardwareContext } from '../../hardware-managers/context.js';
import { collectSteps, executeStep, type ExecuteParams, type StepKind } from '../../hardware-managers/steps.js';
import type { NodeInfo, PortInfo } from '../../hardware-managers/types.js';
import type { CommandDef } from '../commands/types.js';

const nodeSchema = z.record(z.string(), z.unknown());
const portsSchema = z.array(z.record(z.string(), z.unknown()));

const GetStepsParams = z.looseObject({ node: nodeSchema.optional(), ports: portsSchema.optional() });
const ExecuteStepParams = z.looseObject({
  step: z.record(z.string(), z.unknown()),
  node: nodeSchema.optional(),
  ports: portsSchema.optional(),
});

/** `get_<kind>_steps` (sync) and `execute_<kind>_step` (async) in the extension command shape. */
export function stepCommands(kind: StepKind): Record<string, CommandDef<never>> {
  const get: CommandDef<z.infer<typeof GetStepsParams>> = {
    async: false,
    params: GetStepsParams,
    async run(p) {
      const node = (p.node ?? {}) as NodeInfo;
      setHardwareContext({ node });
      return (await collectSteps(kind, node, (p.ports ?? []) as PortInfo[])) as unknown as Record<string, unknown>;
    },
  };
  const exec: CommandDef<z.infer<typeof ExecuteStepParams>> = {
    async: true,
    params: ExecuteStepParams,
    async run(p, ctx) {
      return executeStep(kind, p as ExecuteParams, ctx);
    },
  };
  return {
    [`get_${kind}_steps`]: get as unknown as CommandDef<never>,
    [`execute_${kind}_step`]: exec as unknown as CommandDef<never>,
  };
}
