/**
 * The configuration file `connector-host` reads (TOML), read the same way:
 * `[settings]` for the component, `[auth]` naming where the secrets are,
 * `[sync]` and `[limits]`. Unknown keys are refused, so a typo is not a
 * silently ignored setting; keys only `connector-host` uses (`database`,
 * `concurrency`, ...) are accepted and ignored. Relative paths are taken
 * relative to the file's directory.
 *
 * @module config
 */

import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { configFailure } from './failure.mjs';

/** `[sync]` keys with their defaults (`connector-host`'s). */
const SYNC_DEFAULTS = {
  page_size: 10_000,
  partitions: 4,
  concurrency: 4,
  max_attempts: 8,
  retry_base_ms: 1000,
  retry_max_ms: 60_000,
  max_retry_after_seconds: 3600,
  requests_per_hour: null,
  // Read by `connector-host worker` only (leases need PostgreSQL).
  lease_seconds: 30,
};

/** `[limits]` keys with their defaults. */
const LIMITS_DEFAULTS = {
  memory_mib: 512,
  call_timeout_seconds: 600,
  cpu_seconds_per_call: 120,
  max_response_mib: 256,
  request_timeout_seconds: 120,
  max_requests_per_run: 1_000_000,
};

const AUTH_KEYS = [
  'method',
  'username',
  'password_env',
  'password_file',
  'client_id',
  'client_secret_env',
  'client_secret_file',
  'api_key_env',
  'api_key_file',
  'token_path',
];
const AUTH_FILE_KEYS = ['password_file', 'client_secret_file', 'api_key_file'];
const NETWORK_KEYS = [
  'tls_ca_file',
  'https_proxy',
  'https_proxy_user',
  'https_proxy_password_env',
  'client_cert_file',
  'client_key_file',
];
// `database…` keys are connector-host's (this host stores nothing); accepted, unused.
const TOP_KEYS = [
  'database', 'database_password_env', 'database_ca_file',
  'connector', 'plugin', 'name', 'settings', 'auth', 'sync', 'limits', 'network', 'schedule',
];

/**
 * A validated configuration.
 *
 * @typedef {object} Config
 * @property {[string, string][]} settings the component's settings, by name
 * @property {Record<string, string>|null} auth `[auth]`, file paths resolved
 * @property {typeof SYNC_DEFAULTS} sync
 * @property {typeof LIMITS_DEFAULTS} limits
 * @property {Record<string, string>} network `[network]`, file paths resolved
 */

/**
 * Reads and validates the configuration file at `path`.
 *
 * @param {string} path
 * @returns {Config}
 */
export function loadConfig(path) {
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw configFailure(`cannot read the configuration file ${path}: ${e.message}`);
  }
  try {
    return parseConfig(text, dirname(path));
  } catch (e) {
    if (e.exitCode) throw e;
    throw configFailure(`the configuration file ${path} is not valid: ${e.message}`);
  }
}

/**
 * Parses configuration text; relative paths resolve against `base`.
 *
 * @param {string} text
 * @param {string} base
 * @returns {Config}
 */
export function parseConfig(text, base) {
  let raw;
  try {
    raw = parseToml(text);
  } catch (e) {
    // Only the line and the parser's reason: smol-toml's message quotes the
    // offending line, which could hold a secret written there by mistake.
    const reason = String(e.message).split('\n')[0];
    throw new Error(e.line ? `line ${e.line}: ${reason}` : reason);
  }
  refuseUnknown(raw, TOP_KEYS, 'the top level');
  const settings = Object.entries(table(raw, 'settings')).map(([name, value]) => [
    name,
    settingText(name, value),
  ]);
  const resolvePath = (p) => (isAbsolute(p) ? p : resolve(base, p));
  let auth = null;
  if (raw.auth !== undefined) {
    auth = { ...table(raw, 'auth') };
    refuseUnknown(auth, AUTH_KEYS, '[auth]');
    for (const [key, value] of Object.entries(auth)) {
      if (typeof value !== 'string') throw new Error(`[auth] ${key} must be a string`);
    }
    if (!auth.method) throw new Error('[auth] needs `method = "basic"` (or another method the component declares)');
    for (const key of AUTH_FILE_KEYS) if (auth[key]) auth[key] = resolvePath(auth[key]);
  }
  const sync = numbers(raw, 'sync', SYNC_DEFAULTS);
  const limits = numbers(raw, 'limits', LIMITS_DEFAULTS);
  if (sync.page_size < 1 || sync.partitions < 1 || sync.max_attempts < 1 || sync.concurrency < 1) {
    throw configFailure('[sync] page_size, partitions, concurrency and max_attempts must be at least 1');
  }
  if (sync.partitions > 256) throw configFailure('[sync] partitions must be at most 256');
  // `[schedule]` is `connector-host serve`'s; checked, not used here.
  refuseUnknown(table(raw, 'schedule'), ['every'], '[schedule]');
  const network = { ...table(raw, 'network') };
  refuseUnknown(network, NETWORK_KEYS, '[network]');
  for (const key of ['tls_ca_file', 'client_cert_file', 'client_key_file']) {
    if (network[key]) network[key] = resolvePath(network[key]);
  }
  return { settings, auth, sync, limits, network };
}

/** The table `name` of `raw` (empty when absent). */
function table(raw, name) {
  const value = raw[name];
  if (value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value) || value instanceof Date) {
    throw new Error(`\`${name}\` must be a table ([${name}])`);
  }
  return value;
}

function refuseUnknown(object, known, where) {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) {
      throw new Error(`unknown key \`${key}\` in ${where}, expected one of ${known.map((k) => `\`${k}\``).join(', ')}`);
    }
  }
}

/** A table of non-negative integers, defaults filled in. */
function numbers(raw, name, defaults) {
  const given = table(raw, name);
  refuseUnknown(given, Object.keys(defaults), `[${name}]`);
  const out = { ...defaults };
  for (const [key, value] of Object.entries(given)) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new Error(`[${name}] ${key} must be a non-negative integer`);
    }
    out[key] = value;
  }
  return out;
}

/** A setting's value as the component receives it: text. */
function settingText(name, value) {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return String(value);
  }
  throw configFailure(`setting \`${name}\` must be a string, number or boolean`);
}
