#!/usr/bin/env node
// Cuts the npm workspace down to what one app needs, for the images' build stages.
//
//   node docker/workspace-tree.mjs manifests OUT
//     OUT gets package.json, package-lock.json and every workspace's package.json, unchanged:
//     what `npm ci` needs, so its layer stays cached while sources change.
//   node docker/workspace-tree.mjs production APP OUT
//     APP is a workspace package name (@chiefofstate/cos-server). OUT/manifests gets the root
//     package.json and package-lock.json and, for APP and every workspace package it depends on
//     in production (transitively), its package.json without devDependencies; OUT/dist gets
//     their built dist/ directories at the same paths. Dropping devDependencies matters:
//     workspaces are production dependencies of the root, so the lockfile never marks their
//     devDependencies as dev and `npm ci --omit=dev --workspace APP` would install them.
//
// Run from the repository root. Plain Node, no dependencies.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

/**
 * @typedef {object} Workspace
 * @property {string} name the npm package name
 * @property {string} dir relative to the root, with forward slashes
 * @property {Record<string, any>} manifest its package.json
 */

/**
 * The workspaces named by the root package.json (`dir/*` globs and plain paths).
 * @param {string} root
 * @returns {Workspace[]}
 */
export function listWorkspaces(root) {
  const rootManifest = readJson(join(root, 'package.json'));
  const patterns = Array.isArray(rootManifest.workspaces) ? rootManifest.workspaces : (rootManifest.workspaces?.packages ?? []);
  /** @type {string[]} */
  const dirs = [];
  for (const pattern of patterns) {
    if (pattern.endsWith('/*')) {
      const parent = pattern.slice(0, -2);
      if (!existsSync(join(root, parent))) continue;
      for (const entry of readdirSync(join(root, parent), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
        if (entry.isDirectory()) dirs.push(`${parent}/${entry.name}`);
      }
    } else if (pattern.includes('*')) {
      throw new Error(`unsupported workspace pattern ${pattern}: use dir/* or a plain path`);
    } else {
      dirs.push(pattern.replace(/\/$/, ''));
    }
  }
  return dirs
    .filter((dir) => existsSync(join(root, dir, 'package.json')))
    .map((dir) => {
      const manifest = readJson(join(root, dir, 'package.json'));
      return { name: manifest.name, dir, manifest };
    });
}

/**
 * APP and the workspace packages it needs at run time: production, optional and peer
 * dependencies, followed through workspace packages (their devDependencies are not).
 * @param {readonly Workspace[]} workspaces
 * @param {string} app
 * @returns {Workspace[]} in discovery order, APP first
 */
export function productionClosure(workspaces, app) {
  const byName = new Map(workspaces.map((workspace) => [workspace.name, workspace]));
  const start = byName.get(app);
  if (!start) throw new Error(`${app} is not a workspace package (known: ${[...byName.keys()].join(', ')})`);
  /** @type {Workspace[]} */
  const closure = [];
  const seen = new Set();
  const queue = [start];
  while (queue.length > 0) {
    const workspace = /** @type {Workspace} */ (queue.shift());
    if (seen.has(workspace.name)) continue;
    seen.add(workspace.name);
    closure.push(workspace);
    const { dependencies = {}, optionalDependencies = {}, peerDependencies = {} } = workspace.manifest;
    for (const name of Object.keys({ ...dependencies, ...optionalDependencies, ...peerDependencies })) {
      const dependency = byName.get(name);
      if (dependency) queue.push(dependency);
    }
  }
  return closure;
}

/**
 * @param {string} root
 * @param {string} out
 */
export function writeManifests(root, out) {
  mkdirSync(out, { recursive: true });
  for (const file of ['package.json', 'package-lock.json']) cpSync(join(root, file), join(out, file));
  for (const workspace of listWorkspaces(root)) {
    mkdirSync(join(out, workspace.dir), { recursive: true });
    cpSync(join(root, workspace.dir, 'package.json'), join(out, workspace.dir, 'package.json'));
  }
}

/**
 * @param {string} root
 * @param {string} app
 * @param {string} out
 * @returns {Workspace[]} the closure that was written
 */
export function writeProductionTree(root, app, out) {
  const closure = productionClosure(listWorkspaces(root), app);
  const missing = closure.filter((workspace) => !existsSync(join(root, workspace.dir, 'dist')));
  if (missing.length > 0) {
    throw new Error(`not built: ${missing.map((workspace) => workspace.dir).join(', ')} (build ${app} first)`);
  }
  mkdirSync(join(out, 'manifests'), { recursive: true });
  for (const file of ['package.json', 'package-lock.json']) cpSync(join(root, file), join(out, 'manifests', file));
  for (const workspace of closure) {
    const { devDependencies: _dropped, ...manifest } = workspace.manifest;
    const target = join(out, 'manifests', workspace.dir, 'package.json');
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, `${JSON.stringify(manifest, null, 2)}\n`);
    cpSync(join(root, workspace.dir, 'dist'), join(out, 'dist', workspace.dir, 'dist'), { recursive: true });
  }
  return closure;
}

/** @param {string} path */
function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** @param {readonly string[]} args */
function main(args) {
  // positionals only: an option is a usage error (parseArgs throws, main's caller reports it)
  const [command, ...rest] = parseArgs({ args: [...args], allowPositionals: true }).positionals;
  if (command === 'manifests' && rest.length === 1) {
    writeManifests(process.cwd(), /** @type {string} */ (rest[0]));
  } else if (command === 'production' && rest.length === 2) {
    const closure = writeProductionTree(process.cwd(), /** @type {string} */ (rest[0]), /** @type {string} */ (rest[1]));
    process.stdout.write(`workspace packages for ${rest[0]}: ${closure.map((workspace) => workspace.dir).join(' ')}\n`);
  } else {
    process.stderr.write('usage: workspace-tree.mjs manifests OUT | production APP OUT\n');
    process.exit(2);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`workspace-tree: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}
