/**
 * ReDoS regression for the checksums-file parser (issue 13): a crafted 1 MiB line must be refused before any
 * regular expression sees it. No timing: a spy on RegExp.prototype.exec (which test/split/match all go through
 * once it is replaced) throws for inputs over the line cap, so a parser that runs a regex on the long line fails
 * at once instead of hanging.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseChecksumFile } from '../../image/checksum.js';
import { ImageDownloadError } from '../../protocol/agent-api.js';

class RegexOnLongInput extends Error {}

function withRegexGuard<T>(fn: () => T): { value: T; longest: number } {
  const original = RegExp.prototype.exec;
  let longest = 0;
  RegExp.prototype.exec = function guarded(this: RegExp, s: string) {
    longest = Math.max(longest, String(s).length);
    if (String(s).length > MAX_CHECKSUM_LINE) throw new RegexOnLongInput(`regex ${this.source} ran on ${String(s).length} chars`);
    return original.call(this, s);
  };
  try {
    return { value: fn(), longest };
  } finally {
    RegExp.prototype.exec = original;
  }
}

/** agent/image/checksum.ts MAX_CHECKSUM_LINE (not imported, so this file also runs against a parser without it). */
const MAX_CHECKSUM_LINE = 8192;
const h64 = 'ab'.repeat(32);
const MiB = 1024 * 1024;

// Each of these made the old line regexes backtrack quadratically (or worse) on one long line.
const crafted: Record<string, string> = {
  'BSD opening parens': `SHA256 ${'('.repeat(MiB)} = x\n${h64}  img.raw\n`,
  'GNU hex then no name': `${'a'.repeat(MiB)}!\n${h64}  img.raw\n`,
  'whitespace run': `${h64}${' \t'.repeat(MiB / 2)}x\n${h64}  other\n`,
};

for (const [name, text] of Object.entries(crafted)) {
  test(`checksums file with a 1 MiB line (${name}) is refused before any regex runs on it`, () => {
    const { value: err } = withRegexGuard(() => {
      try {
        parseChecksumFile(text, 'http://x/img.raw');
        return null;
      } catch (e) {
        return e;
      }
    });
    assert.ok(!(err instanceof RegexOnLongInput), String(err));
    assert.ok(err instanceof ImageDownloadError, String(err));
    assert.match(err.details, new RegExp(`line 1 is longer than ${MAX_CHECKSUM_LINE} characters`));
  });
}

test('lines up to the cap still parse, and no regex ever sees more than one line', () => {
  const longName = `${'d/'.repeat(2000)}img.raw`;
  const text = `# ${'c'.repeat(MAX_CHECKSUM_LINE - 2)}\n${h64}  ${longName}\nSHA256 (a(b)) = ${h64}\n`;
  const { value, longest } = withRegexGuard(() => parseChecksumFile(text, 'http://x/y/img.raw'));
  assert.equal(value, h64);
  assert.ok(longest <= MAX_CHECKSUM_LINE, `a regex saw ${longest} chars`);
});
