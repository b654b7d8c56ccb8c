// Unit tests of lib/spool.mjs: a stream's records by key in bounded memory,
// given back in SQLite's key order, the newest record of a key winning,
// whether or not they went through temporary files.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { EXIT_OTHER, Failure } from '../lib/failure.mjs';
import { KeyedSpool } from '../lib/spool.mjs';

/** The directories the tests made, removed when they are done. */
const made = [];
after(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** A directory of the test's own, for the spool's runs. */
function parentDir() {
  const dir = mkdtempSync(join(tmpdir(), 'spool-test-'));
  made.push(dir);
  return dir;
}

/** Applies `ops` ([key, text] to set, [key, null] to delete) and reads the spool back. */
function through(ops, bufferBytes) {
  const spool = new KeyedSpool({ bufferBytes, parentDir: parentDir() });
  try {
    for (const [key, text] of ops) {
      if (text === null) spool.delete(key);
      else spool.set(key, text);
    }
    return { texts: [...spool.inKeyOrder()], runs: spool.runCount };
  } finally {
    spool.close();
  }
}

// Keys whose UTF-8 byte order (SQLite's) is not JavaScript's string order:
// U+1F600 is a surrogate pair, below U+E000 in UTF-16 units, above it in bytes.
const OPS = [
  ['b', '{"k":"b","v":1}'],
  ['a', '{"k":"a","v":1}'],
  ['\u{1F600}', '{"k":"\u{1F600}"}'],
  ['\uE000', '{"k":"\uE000"}'],
  ['a', null],
  ['c', '{"k":"c"}'],
  ['b', '{"k":"b","v":2}'],
  ['a', '{"k":"a","v":2}'],
  ['never-set', null],
  ['é', '{"k":"é"}'],
  ['c', null],
];
const EXPECTED = ['{"k":"a","v":2}', '{"k":"b","v":2}', '{"k":"é"}', '{"k":"\uE000"}', '{"k":"\u{1F600}"}'];

test('each key once, its newest record, in UTF-8 byte order, with and without temporary files', () => {
  const inMemory = through(OPS, Infinity);
  assert.deepEqual(inMemory.texts, EXPECTED);
  assert.equal(inMemory.runs, 0);
  // One run per entry: every key's newest entry is in a later file than its older ones.
  const everyEntry = through(OPS, 0);
  assert.deepEqual(everyEntry.texts, EXPECTED);
  assert.equal(everyEntry.runs, OPS.length);
  const some = through(OPS, 250);
  assert.deepEqual(some.texts, EXPECTED);
  assert.ok(some.runs > 1 && some.runs < OPS.length, `${some.runs} runs`);
  // The control: JavaScript's own order differs from the one asserted.
  assert.notDeepEqual([...EXPECTED].sort(), EXPECTED);
});

test('records with line breaks, tabs or a leading quote come back as they went in', () => {
  const odd = ['{\n  "k": "x"\n}', '{"k":"y",\r\n"t":"\\t"}', '"a string"', '{"k":"z"}\t'];
  const ops = odd.map((text, i) => [`k${i}`, text]);
  assert.deepEqual(through(ops, 0).texts, odd);
});

/** A small deterministic generator (LCG), so that a failure repeats. */
function generator(seed) {
  let state = seed >>> 0;
  return (n) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % n;
  };
}

test('random sets and deletes read back as a Map sorted by UTF-8 bytes would give them', () => {
  const next = generator(7);
  const alphabet = ['a', 'B', '0', 'é', '\uE000', '\u{1F600}', '-'];
  const ops = [];
  for (let i = 0; i < 3000; i++) {
    const key = Array.from({ length: 1 + next(3) }, () => alphabet[next(alphabet.length)]).join('');
    ops.push([key, next(5) === 0 ? null : `{"op":${i}}`]);
  }
  const model = new Map();
  for (const [key, text] of ops) {
    if (text === null) model.delete(key);
    else model.set(key, text);
  }
  const expected = [...model.keys()]
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    .map((key) => model.get(key));
  for (const bufferBytes of [Infinity, 20_000, 2_000]) {
    const { texts, runs } = through(ops, bufferBytes);
    assert.deepEqual(texts, expected, `buffer of ${bufferBytes} bytes, ${runs} runs`);
    assert.equal(runs > 0, bufferBytes !== Infinity);
  }
});

test('runs are unlinked as they are made: nothing is left under TMPDIR, however the process ends', () => {
  const parent = parentDir();
  const spool = new KeyedSpool({ bufferBytes: 0, parentDir: parent });
  try {
    spool.set('b', '{"k":"b"}');
    spool.set('a', '{"k":"a"}');
    assert.equal(spool.runCount, 2);
    // The runs are open descriptors only: a killed process leaves nothing.
    assert.deepEqual(readdirSync(parent), []);
    assert.deepEqual([...spool.inKeyOrder()], ['{"k":"a"}', '{"k":"b"}']);
  } finally {
    spool.close();
    spool.close();
  }
});

test('past maxRuns the runs are merged into one, and what they deleted stays deleted', () => {
  for (const maxRuns of [2, 3, 5]) {
    const spool = new KeyedSpool({ bufferBytes: 0, parentDir: parentDir(), maxRuns });
    try {
      for (const [key, text] of OPS) {
        if (text === null) spool.delete(key);
        else spool.set(key, text);
      }
      assert.ok(spool.runs.length < maxRuns, `${spool.runs.length} runs kept with maxRuns ${maxRuns}`);
      assert.ok(spool.runCount > OPS.length, `${spool.runCount} runs written`);
      assert.deepEqual([...spool.inKeyOrder()], EXPECTED, `maxRuns ${maxRuns}`);
    } finally {
      spool.close();
    }
  }
});

test('a temporary file that cannot be written fails the read saying where and what to do', () => {
  const parent = join(parentDir(), 'a-file');
  writeFileSync(parent, '');
  const spool = new KeyedSpool({ bufferBytes: 0, parentDir: parent });
  assert.throws(
    () => spool.set('a', '{}'),
    (e) => e instanceof Failure && e.exitCode === EXIT_OTHER && e.message.includes(parent) && e.message.includes('TMPDIR'),
  );
  // The control: the same spool with room in memory keeps the record.
  const roomy = new KeyedSpool({ bufferBytes: Infinity, parentDir: parent });
  roomy.set('a', '{}');
  assert.deepEqual([...roomy.inKeyOrder()], ['{}']);
});
