/**
 * A component file made runnable on Node: transpiled by jco on first use
 * (instantiation mode, so the host supplies every import) and cached by the
 * file's SHA-256, so the same bytes are transpiled once. The cache holds
 * code this process imports: its directory is created owner-only, and an
 * entry appears whole (written beside it, then renamed) or not at all.
 *
 * @module component
 */

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { transpileBytes } from '@bytecodealliance/jco-transpile';
import { configFailure } from './failure.mjs';

/** The contract version this host runs (any 0.3.x component). */
export const CONTRACT_PACKAGE = 'exposure:connector';
export const CONTRACT_MAJOR_MINOR = '0.3';

/** Where transpiled components are kept unless `--cache-dir` says otherwise. */
export function defaultCacheDir(env) {
  const base = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'exposure-connector', 'node-host');
}

/**
 * A transpiled component, ready to instantiate.
 *
 * @typedef {object} LoadedComponent
 * @property {string} sha256 the file's digest (the cache key)
 * @property {string} contract the contract version it exports, e.g. `0.3.1`
 * @property {(imports: object) => Promise<object>} instantiate a fresh instance's exports
 */

/**
 * Reads `file`, transpiles it (or takes the cached transpilation) and checks
 * it exports the contract's `source` interface at a version this host runs.
 *
 * @param {string} file the component file
 * @param {string} cacheDir the cache directory
 * @returns {Promise<LoadedComponent>}
 */
export async function loadComponent(file, cacheDir) {
  let bytes;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw configFailure(`cannot read the component file ${file}: ${e.code ?? e.message}`);
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const dir = join(cacheDir, sha256);
  if (!existsSync(join(dir, 'meta.json'))) await transpileInto(bytes, file, dir);
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  const contract = contractVersion(meta.exports, file);
  const module = await import(pathToFileURL(join(dir, 'component.mjs')).href);
  const compiled = new Map();
  const getCoreModule = (name) => {
    if (!compiled.has(name)) compiled.set(name, WebAssembly.compile(readFileSync(join(dir, basename(name)))));
    return compiled.get(name);
  };
  return {
    sha256,
    contract,
    instantiate: (imports) => module.instantiate(getCoreModule, imports),
  };
}

/** Transpiles `bytes` and writes the result to `dir`, whole or not at all. */
async function transpileInto(bytes, file, dir) {
  let result;
  try {
    result = await transpileBytes(bytes, {
      name: 'component',
      instantiation: 'async',
      emitTypescriptDeclarations: false,
      outDir: '',
    });
  } catch (e) {
    const reason = String(e?.message ?? e).split('\n')[0];
    throw configFailure(`${file} is not a WebAssembly component jco can run (${reason}); give the .wasm a connector build writes (e.g. \`connector-host component --out FILE\`)`);
  }
  mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  const staging = mkdtempSync(join(dirname(dir), '.staging-'));
  try {
    for (const [path, content] of Object.entries(result.files)) {
      // The cache is outside any package.json: `.mjs` marks the JS as a module.
      writeFileSync(join(staging, basename(path).replace(/\.js$/, '.mjs')), content);
    }
    writeFileSync(join(staging, 'meta.json'), JSON.stringify({ exports: result.exports.map(([name]) => name) }));
    renameSync(staging, dir);
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    // Another process cached the same component first: use its entry.
    if (!existsSync(join(dir, 'meta.json'))) throw e;
  }
}

/** The version of `exposure:connector/source` the component exports; refuses others. */
function contractVersion(exports, file) {
  const prefix = `${CONTRACT_PACKAGE}/source@`;
  const name = exports.find((e) => e.startsWith(prefix));
  if (!name) {
    throw configFailure(`${file} does not export \`${CONTRACT_PACKAGE}/source\`: it is not a connector component (it exports ${exports.join(', ') || 'nothing'})`);
  }
  const version = name.slice(prefix.length);
  if (!version.startsWith(`${CONTRACT_MAJOR_MINOR}.`)) {
    throw configFailure(`${file} was built for contract ${CONTRACT_PACKAGE}@${version}; this host runs ${CONTRACT_MAJOR_MINOR}.x. Rebuild the connector with an SDK of contract ${CONTRACT_MAJOR_MINOR}`);
  }
  return version;
}
