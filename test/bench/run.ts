/**
 * `npm run bench -- NAME [args]`: runs test/bench/NAME.ts, whose default export prints its figures and, as the
 * last line, `NAME key=value ...`. Benchmarks are never part of `npm test`. A bench that fails (a baseline that
 * failed included) prints why and exits non-zero, so no ratio line is mistaken for a result.
 */
import { readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '../../common/errors.js';

const here = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(here).filter((f) => f.endsWith('.ts') && f !== 'run.ts').map((f) => f.slice(0, -3));
const [name, ...args] = process.argv.slice(2);
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <${available.join('|')}> [args]`);
  process.exit(2);
}
const mod = (await import(`./${name}.js`)) as { default: (args: string[]) => Promise<void> };
try {
  await mod.default(args);
} catch (e) {
  console.error(`bench ${name} aborted: ${errorMessage(e)}`);
  process.exit(1);
}
