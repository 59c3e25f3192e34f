/**
 * Extensions by name and `extension.command` lookup with IPA's dispatch errors:
 * no dot → 400, unknown extension → 404, unknown command → 400, params rejected by the command's schema → 400.
 * Several modules may contribute commands to one extension (standby's power commands and its image commands).
 */
import type { z } from 'zod';
import {
  InvalidCommandError,
  InvalidCommandParamsError,
  RequestedObjectNotFoundError,
} from '../../protocol/agent-api.js';
import type { CommandDef, ExtensionCommands } from './types.js';

export interface ResolvedCommand {
  extension: string;
  command: string;
  def: CommandDef<never>;
}

export class CommandRegistry {
  private readonly extensions = new Map<string, Map<string, CommandDef<never>>>();

  /** Add commands to an extension (created on first use). A command registered twice is a programming error. */
  register(extension: string, commands: ExtensionCommands): void {
    if (!/^[A-Za-z0-9_]+$/.test(extension)) throw new Error(`bad extension name: ${extension}`);
    let map = this.extensions.get(extension);
    if (!map) {
      map = new Map();
      this.extensions.set(extension, map);
    }
    for (const [name, def] of Object.entries(commands)) {
      if (map.has(name)) throw new Error(`command ${extension}.${name} registered twice`);
      map.set(name, def);
    }
  }

  /** Extension names with their command names, sorted (for logs and tests). */
  describe(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [ext, cmds] of [...this.extensions].sort(([a], [b]) => a.localeCompare(b))) {
      out[ext] = [...cmds.keys()].sort();
    }
    return out;
  }

  has(extension: string, command?: string): boolean {
    const ext = this.extensions.get(extension);
    return ext !== undefined && (command === undefined || ext.has(command));
  }

  /** Split at the first dot (IPA's rule) without looking anything up. */
  static split(name: string): { extension: string; command: string } {
    const dot = name.indexOf('.');
    if (dot < 0) throw new InvalidCommandError('Command name must be of the form <extension>.<name>');
    return { extension: name.slice(0, dot), command: name.slice(dot + 1) };
  }

  resolve(name: string): ResolvedCommand {
    const { extension, command } = CommandRegistry.split(name);
    const ext = this.extensions.get(extension);
    if (!ext) throw new RequestedObjectNotFoundError(`Extension with id ${extension} not found.`);
    const def = ext.get(command);
    if (!def) throw new InvalidCommandError(`Unknown command: ${command}`);
    return { extension, command, def };
  }

  /** Run the command's schema over the params; the parsed value is what the command receives. */
  static validate(resolved: ResolvedCommand, params: Record<string, unknown>): unknown {
    const schema = resolved.def.params as z.ZodType | undefined;
    if (!schema) return params;
    const r = schema.safeParse(params);
    if (r.success) return r.data;
    const details = r.error.issues
      .map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message))
      .join('; ');
    throw new InvalidCommandParamsError(details);
  }
}

/** The agent's registry, filled by agent/extensions/index.ts. */
export const registry = new CommandRegistry();

/**
 * Erase a command's param type so it fits ExtensionCommands (whose defs take `never`): the registry validates
 * params with the command's own schema before run() sees them, so the erased type is safe.
 */
export function defineCommand<P>(def: CommandDef<P>): CommandDef<never> {
  return def as unknown as CommandDef<never>;
}

