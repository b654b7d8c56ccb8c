/**
 * Secrets: read from an environment variable or an owner-only file, never
 * from arguments, and never printed. The same rules and messages as
 * `connector-host`'s `sandbox/src/secrets.rs`.
 *
 * @module secrets
 */

import { readFileSync, statSync } from 'node:fs';
import { configFailure } from './failure.mjs';

/**
 * Reads the secret `what` from the variable `envName` or the file `file`
 * (exactly one of them).
 *
 * @param {string} what e.g. `password`, `api key`
 * @param {string|undefined} envName
 * @param {string|undefined} file
 * @param {Record<string, string|undefined>} env the environment to read
 * @returns {string} the secret
 */
export function readSecret(what, envName, file, env) {
  const key = what.replaceAll(' ', '_');
  if (envName && file) {
    throw configFailure(`[auth] names both an environment variable and a file for the ${what}; keep one`);
  }
  if (envName) {
    const value = env[envName];
    if (value === undefined) {
      throw configFailure(
        `the environment variable ${envName} (the ${what}) is not set; export it before running, e.g. \`export ${envName}=...\``,
      );
    }
    if (value === '') throw configFailure(`the environment variable ${envName} (the ${what}) is empty; set it to the ${what}`);
    return value;
  }
  if (file) return readSecretFile(what, file);
  throw configFailure(`[auth] does not say where the ${what} is: add \`${key}_env = "VARIABLE"\` or \`${key}_file = "path"\``);
}

function readSecretFile(what, path) {
  let text;
  try {
    // Group or others may read or write it: a secret there is not one.
    if ((statSync(path).mode & 0o077) !== 0) {
      throw configFailure(`the ${what} file ${path} is readable by other users; restrict it with \`chmod 600 ${path}\``);
    }
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e.exitCode) throw e;
    throw configFailure(`cannot read the ${what} file ${path}: ${e.code ?? e.message}`);
  }
  const value = text.replace(/[\r\n]+$/, '');
  if (value === '') throw configFailure(`the ${what} file ${path} is empty`);
  return value;
}
