#!/usr/bin/env node
/**
 * The Node host's command line: runs an exposure:connector component (the
 * same .wasm `connector-host` runs) through jco, with the same configuration
 * file and the same security model.
 *
 *   node hosts/node/connector.mjs read --component FILE --config FILE --stream NAME
 *   node hosts/node/connector.mjs info --component FILE
 *
 * `read` prints the stream's records as JSON lines in key order; messages go
 * to stderr. It holds at most about `--buffer-mib` (64) MiB of records and
 * sorts a longer stream through temporary files (lib/spool.mjs). Exit
 * status as `connector-host`'s: 0 done, 2 a configuration problem, 75 a
 * temporary failure (rate limits, unavailability: try again later), 1
 * anything else.
 */

import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig } from './lib/config.mjs';
import { loadComponent, defaultCacheDir } from './lib/component.mjs';
import { credentialFromConfig } from './lib/credential.mjs';
import { egressPolicy } from './lib/egress.mjs';
import { configFailure, EXIT_OTHER, Failure } from './lib/failure.mjs';
import { Origin } from './lib/origin.mjs';
import { readStream } from './lib/read.mjs';
import { connectorImports } from './lib/sandbox.mjs';
import { KeyedSpool } from './lib/spool.mjs';

const USAGE = `usage:
  node connector.mjs read --component FILE --config FILE --stream NAME [--buffer-mib N] [--cache-dir DIR] [--verbose]
  node connector.mjs info --component FILE [--cache-dir DIR]`;

/** Text from a component, made safe for a terminal: one line, no control characters. */
function printable(text) {
  return String(text).replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ');
}

/** The host's log: warnings and errors always, the rest with `--verbose`. */
function makeLog(verbose, who) {
  return (level, message) => {
    if (!verbose && (level === 'debug' || level === 'info')) return;
    process.stderr.write(`${who}: ${level}: ${printable(message)}\n`);
  };
}

/** An instance whose requests all go to `origin` (none when `origin` is null). */
async function instance(component, { origin, credential, limits, log }) {
  const egress = egressPolicy({
    origin,
    credential,
    limits,
    log,
  });
  const { imports, stderrTail } = connectorImports({ log, egress });
  const exports = await component.instantiate(imports);
  const source = exports[`exposure:connector/source@${component.contract}`] ?? exports.source;
  return { source, egress, stderrTail };
}

/** The origin the component may contact: its one endpoint setting's value. */
function endpointOrigin(info, settings) {
  const endpoints = info.settings.filter((s) => s.endpoint);
  if (endpoints.length !== 1) {
    throw configFailure(`the component \`${info.name}\` declares ${endpoints.length} endpoint settings; a connector must mark exactly one setting as its endpoint (the origin it may contact), so this host cannot tell where it may connect`);
  }
  const [endpoint] = endpoints;
  const given = settings.findLast(([name]) => name === endpoint.name)?.[1]?.trim();
  const value = given || endpoint.defaultValue;
  if (!value) {
    throw configFailure(`[settings] has no \`${endpoint.name}\`, the connector's endpoint: ${endpoint.description} Set it, e.g. ${endpoint.name} = "source.example.com"`);
  }
  try {
    return Origin.parse(endpoint.name, value);
  } catch (e) {
    throw configFailure(e.message);
  }
}

/** `[network]` keys this host cannot honour are refused, not ignored. */
function checkNetwork(network) {
  for (const key of ['https_proxy', 'client_cert_file']) {
    if (network[key]) {
      throw configFailure(`[network] ${key} is supported by connector-host, not by the Node host; run connector-host for this endpoint, or remove ${key}`);
    }
  }
}

/**
 * `[network] tls_ca_file`: Node reads extra CA certificates only at start
 * (`NODE_EXTRA_CA_CERTS`), so the host runs itself once more with it set.
 * Returns the child's exit status, or `null` when this process is the one
 * to do the work.
 */
function withCaFile(network) {
  const file = network.tls_ca_file;
  if (!file || process.env.NODE_EXTRA_CA_CERTS === file) return null;
  try {
    accessSync(file, constants.R_OK);
  } catch (e) {
    throw configFailure(`cannot read [network] tls_ca_file ${file}: ${e.code}`);
  }
  const child = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, NODE_EXTRA_CA_CERTS: file },
  });
  return child.status ?? EXIT_OTHER;
}

async function read(args) {
  for (const flag of ['component', 'config', 'stream']) {
    if (!args[flag]) throw configFailure(`read needs --${flag}\n${USAGE}`);
  }
  const bufferMib = parseBufferMib(args['buffer-mib']);
  process.stdout.on('error', stdoutClosed);
  const config = loadConfig(args.config);
  checkNetwork(config.network);
  const relaunched = withCaFile(config.network);
  if (relaunched !== null) return relaunched;
  const log = makeLog(args.verbose, 'connector');
  const component = await loadComponent(args.component, args['cache-dir']);
  const described = await instance(component, { origin: null, credential: null, limits: config.limits, log });
  const info = described.source.info();
  const stream = info.streams.find((s) => s.name === args.stream);
  if (!stream) {
    throw configFailure(`the connector has no stream \`${args.stream}\`; its streams are: ${info.streams.map((s) => s.name).join(', ')}`);
  }
  const origin = endpointOrigin(info, config.settings);
  const credential = credentialFromConfig(config.auth, info.authMethods, process.env);
  const reader = await instance(component, { origin, credential, limits: config.limits, log });
  const started = process.hrtime.bigint();
  const records = new KeyedSpool({ bufferBytes: bufferMib * MIB });
  try {
    const { pages, retries } = await readStream({
      source: reader.source,
      settings: config.settings,
      stream,
      sync: config.sync,
      log,
      stderrTail: reader.stderrTail,
      records,
    });
    const written = await writeInKeyOrder(records);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const { requests, bytes } = reader.egress.counters;
    const sorted = records.runCount > 0 ? `, sorted through ${records.runCount} temporary files` : '';
    process.stderr.write(
      `Read ${written} records of \`${stream.name}\` from ${origin} in ${seconds.toFixed(1)} s (${config.sync.partitions} partitions, ${pages} pages, ${requests} requests, ${(bytes / 1e6).toFixed(1)} MB, ${retries} retries${sorted}).\n`,
    );
  } finally {
    records.close();
  }
  return 0;
}

/**
 * Ends the process when stdout fails, such as when its reader closed it
 * early (`| head`): one line saying so, exit 1, instead of Node's stack
 * trace for an unhandled `error` event.
 */
function stdoutClosed(e) {
  const what = e?.code === 'EPIPE' ? 'the program reading stdout closed it' : `writing to stdout failed (${e?.message ?? e})`;
  process.stderr.write(`error: ${what} before every record was written; send the records to a file or to a program that reads them all\n`);
  process.exit(EXIT_OTHER);
}

/** One mebibyte. */
const MIB = 1024 * 1024;

/** `--buffer-mib`: how much of a stream `read` holds in memory before it sorts it into temporary files. */
const DEFAULT_BUFFER_MIB = 64;

/** The `--buffer-mib` value: a positive number of MiB. */
function parseBufferMib(text) {
  if (text === undefined) return DEFAULT_BUFFER_MIB;
  const mib = Number(text);
  if (!Number.isFinite(mib) || mib <= 0) {
    throw configFailure(`--buffer-mib takes a positive number of MiB (such as 64), not \`${text}\``);
  }
  return mib;
}

/**
 * Writes the records, one JSON object per line, keys in byte order (as
 * SQLite's `ORDER BY key`), waiting when stdout's buffer is full; returns
 * how many it wrote.
 */
async function writeInKeyOrder(records) {
  let written = 0;
  const lines = [];
  const flush = async () => {
    if (!process.stdout.write(`${lines.join('\n')}\n`)) await once(process.stdout, 'drain');
    lines.length = 0;
  };
  for (const text of records.inKeyOrder()) {
    lines.push(text);
    written += 1;
    if (lines.length === 1000) await flush();
  }
  if (lines.length > 0) await flush();
  return written;
}

async function info(args) {
  if (!args.component) throw configFailure(`info needs --component\n${USAGE}`);
  const log = makeLog(args.verbose, 'connector');
  const component = await loadComponent(args.component, args['cache-dir']);
  const limits = { request_timeout_seconds: 1, max_response_mib: 1, max_requests_per_run: 0 };
  const { source } = await instance(component, { origin: null, credential: null, limits, log });
  process.stdout.write(`${JSON.stringify({ contract: component.contract, sha256: component.sha256, ...source.info() })}\n`);
  return 0;
}

async function main(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        component: { type: 'string' },
        config: { type: 'string' },
        stream: { type: 'string' },
        'buffer-mib': { type: 'string' },
        'cache-dir': { type: 'string' },
        verbose: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    throw configFailure(`${e.message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  values['cache-dir'] ??= process.env.CONNECTOR_NODE_CACHE || defaultCacheDir(process.env);
  switch (positionals[0]) {
    case 'read':
      return read(values);
    case 'info':
      return info(values);
    default:
      throw configFailure(`unknown command \`${positionals[0] ?? ''}\`\n${USAGE}`);
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  if (e instanceof Failure) {
    // The message is ours; the lines are kept, the text inside made printable.
    process.stderr.write(`error: ${e.message.split('\n').map(printable).join('\n')}\n`);
    process.exitCode = e.exitCode;
  } else {
    process.stderr.write(`error: the Node host failed unexpectedly: ${printable(e?.stack ?? e)}\n`);
    process.exitCode = EXIT_OTHER;
  }
}
